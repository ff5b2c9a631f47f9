//! `exact` on Solana against the embedded devnet (litesvm running the real SPL Token,
//! Token-2022, Memo and ATA programs): every check of the sponsor's verifier by its reason
//! code, with nothing moving when a check fails; settlement through Tollgate's facilitator
//! (ledger and all) for SPL Token and Token-2022; concurrent distinct payments; one payment
//! settled concurrently moving money once; replays.

use std::sync::Arc;

use base64::Engine as _;
use serde_json::json;
use solana_address::Address;
use solana_hash::Hash;
use solana_instruction::{AccountMeta, Instruction};
use solana_keypair::Keypair;
use solana_message::{v0, VersionedMessage};
use solana_signature::Signature;
use solana_signer::Signer;
use solana_transaction::versioned::VersionedTransaction;
use tollgate_core::{NetworkPattern, SchemeFacilitator};
use tollgate_facilitator::{Facilitator, Outcome};
use tollgate_proto::{
    ErrorReason, FacilitatorRequest, PaymentPayload, PaymentRequirements, SettleResponse,
};
use tollgate_svm::programs::{self, TransferChecked};
use tollgate_svm::{ExactSvmClient, ExactSvmFacilitator, SvmFacilitatorConfig, SvmReason};
use tollgate_svm_devnet::SvmDevnet;

const PRICE: u64 = 10_000; // 0.01 USDC

struct Rig {
    devnet: SvmDevnet,
    scheme: Arc<ExactSvmFacilitator>,
    facilitator: Facilitator,
    fee_payer: Keypair,
    payer: Keypair,
    payee: Address,
}

impl Rig {
    async fn start() -> Rig {
        let devnet = SvmDevnet::start().await.expect("devnet starts");
        let scheme = Arc::new(
            ExactSvmFacilitator::connect(
                devnet.url(),
                vec![devnet.keypair(0)],
                SvmFacilitatorConfig::default(),
            )
            .await
            .expect("facilitator connects"),
        );
        assert_eq!(scheme.network().as_str(), devnet.caip2());
        let facilitator = Facilitator::builder()
            .scheme(
                NetworkPattern::One(scheme.network().clone()),
                scheme.clone() as Arc<dyn SchemeFacilitator>,
            )
            .chain(scheme.clone())
            .in_memory_ledger()
            .build()
            .await
            .expect("facilitator builds");
        Rig {
            fee_payer: devnet.keypair(0),
            payer: devnet.keypair(1),
            payee: devnet.accounts()[2].address,
            devnet,
            scheme,
            facilitator,
        }
    }

    fn requirements(&self, mint: Address, amount: u64, memo: Option<&str>) -> PaymentRequirements {
        let mut extra = json!({"feePayer": self.fee_payer.pubkey().to_string()});
        if let Some(memo) = memo {
            extra["memo"] = json!(memo);
        }
        serde_json::from_value(json!({
            "scheme": "exact",
            "network": self.devnet.caip2(),
            "amount": amount.to_string(),
            "asset": mint.to_string(),
            "payTo": self.payee.to_string(),
            "maxTimeoutSeconds": 60,
            "extra": extra,
        }))
        .unwrap()
    }

    fn token_program(&self, mint: &Address) -> Address {
        if *mint == self.devnet.token2022_mint() {
            programs::TOKEN_2022_PROGRAM
        } else {
            programs::TOKEN_PROGRAM
        }
    }

    fn transfer(&self, mint: Address, to: &Address, amount: u64) -> TransferChecked {
        let program = self.token_program(&mint);
        let ata = |who: &Address| programs::associated_token_address(who, &mint, &program).unwrap();
        TransferChecked {
            program,
            source: ata(&self.payer.pubkey()),
            mint,
            destination: ata(to),
            authority: self.payer.pubkey(),
            amount,
            decimals: 6,
        }
    }

    /// The instructions a standard wallet sends.
    fn standard(&self, mint: Address, amount: u64, memo: &[u8]) -> Vec<Instruction> {
        vec![
            programs::set_compute_unit_limit(20_000),
            programs::set_compute_unit_price(1),
            self.transfer(mint, &self.payee, amount).instruction(),
            programs::memo(memo),
        ]
    }

    async fn blockhash(&self) -> Hash {
        self.scheme.rpc().latest_blockhash().await.unwrap().0
    }

    /// Compiles `instructions` with the facilitator as fee payer and signs with `signers`
    /// (the fee payer's slot left empty).
    async fn tx(&self, instructions: &[Instruction], signers: &[&Keypair]) -> String {
        let blockhash = self.blockhash().await;
        encode(sign(
            &self.fee_payer.pubkey(),
            instructions,
            signers,
            blockhash,
        ))
    }

    fn payment(&self, requirements: &PaymentRequirements, transaction: &str) -> PaymentPayload {
        serde_json::from_value(json!({
            "x402Version": 2,
            "accepted": requirements,
            "payload": {"transaction": transaction},
        }))
        .unwrap()
    }

    fn balances(&self) -> [u64; 5] {
        let usdc = self.devnet.usdc_mint();
        let t22 = self.devnet.token2022_mint();
        [
            self.devnet.token_balance(&self.payer.pubkey(), &usdc),
            self.devnet.token_balance(&self.payee, &usdc),
            self.devnet.token_balance(&self.payer.pubkey(), &t22),
            self.devnet.token_balance(&self.payee, &t22),
            self.devnet.lamports(&self.fee_payer.pubkey()),
        ]
    }

    async fn settle(
        &self,
        payment: &PaymentPayload,
        requirements: &PaymentRequirements,
    ) -> Outcome<SettleResponse> {
        self.facilitator
            .settle(&FacilitatorRequest::V2 {
                payment_payload: payment.clone(),
                payment_requirements: requirements.clone(),
            })
            .await
    }

    /// A payment refused with `reason` by /verify and by /settle, with no balance moving.
    async fn refused(
        &self,
        requirements: &PaymentRequirements,
        transaction: &str,
        reason: impl Into<ErrorReason>,
    ) {
        let reason = reason.into();
        let before = self.balances();
        let payment = self.payment(requirements, transaction);
        let verified = self
            .facilitator
            .verify(&FacilitatorRequest::V2 {
                payment_payload: payment.clone(),
                payment_requirements: requirements.clone(),
            })
            .await;
        let body = verified.body();
        assert!(
            !body.is_valid,
            "verified a payment that should fail with {reason}"
        );
        assert_eq!(
            body.invalid_reason.as_ref(),
            Some(&reason),
            "{:?}",
            body.invalid_message
        );
        let settled = self.settle(&payment, requirements).await;
        let body = settled.body();
        assert!(
            !body.success,
            "settled a payment that should fail with {reason}"
        );
        assert_eq!(
            body.error_reason.as_ref(),
            Some(&reason),
            "{:?}",
            body.error_message
        );
        assert_eq!(self.balances(), before, "{reason}: something moved");
    }
}

fn sign(
    fee_payer: &Address,
    instructions: &[Instruction],
    signers: &[&Keypair],
    blockhash: Hash,
) -> VersionedTransaction {
    let message = VersionedMessage::V0(
        v0::Message::try_compile(fee_payer, instructions, &[], blockhash).unwrap(),
    );
    let bytes = message.serialize();
    let required = usize::from(message.header().num_required_signatures);
    let mut signatures = vec![Signature::default(); required];
    for signer in signers {
        let i = message
            .static_account_keys()
            .iter()
            .position(|k| *k == signer.pubkey())
            .expect("signer is in the message");
        signatures[i] = signer.sign_message(&bytes);
    }
    VersionedTransaction {
        signatures,
        message,
    }
}

fn encode(tx: VersionedTransaction) -> String {
    base64::engine::general_purpose::STANDARD.encode(wincode::serialize(&tx).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spl_token_and_token_2022_payments_settle_and_move_exactly_the_price() {
    let rig = Rig::start().await;
    let client = ExactSvmClient::new(rig.devnet.keypair(1), rig.devnet.url());
    for mint in [rig.devnet.usdc_mint(), rig.devnet.token2022_mint()] {
        let requirements = rig.requirements(mint, PRICE, Some("invoice-42"));
        let (payment, _) = client.sign_payment(&requirements, None).await.unwrap();
        let before = rig.balances();
        let settled = rig.settle(&payment, &requirements).await;
        let Outcome::Ok(body) = &settled else {
            panic!("not settled: {:?}", settled.body());
        };
        assert!(body.success);
        assert_eq!(
            body.payer.as_deref(),
            Some(rig.payer.pubkey().to_string().as_str())
        );
        let signature: Signature = body.transaction.parse().expect("a base58 signature");
        let after = rig.balances();
        let (p, q) = if mint == rig.devnet.usdc_mint() {
            (0, 1)
        } else {
            (2, 3)
        };
        assert_eq!(before[p] - after[p], PRICE);
        assert_eq!(after[q] - before[q], PRICE);
        // The sponsor paid the fee (two signatures, 5,000 lamports each, and a priority
        // fee of at most 20,000 CU × 1 µlamport) and nothing else.
        let fee = before[4] - after[4];
        assert!(
            (10_000..=10_001).contains(&fee),
            "fee payer lost {fee} lamports"
        );
        // The signature is the transaction's id on chain.
        let status = rig
            .scheme
            .rpc()
            .signature_status(&signature)
            .await
            .unwrap()
            .unwrap();
        assert!(status.is_confirmed() && status.err.is_none());
        // Settling again answers from the ledger: nothing moves twice.
        let again = rig.settle(&payment, &requirements).await;
        assert_eq!(rig.balances(), after);
        if again.body().success {
            assert_eq!(again.body().transaction, body.transaction);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_check_refuses_by_its_reason_code_and_nothing_moves() {
    let rig = Rig::start().await;
    // /supported names the cluster with the fee payer, for v1 and v2 alike, and its signers.
    let supported = rig.facilitator.supported();
    let fee_payer = rig.fee_payer.pubkey().to_string();
    assert_eq!(supported.kinds.len(), 2, "{supported:?}");
    for kind in &supported.kinds {
        assert_eq!(kind.network.as_str(), rig.devnet.caip2());
        assert_eq!(
            kind.extra.as_ref().and_then(|e| e.get("feePayer")),
            Some(&json!(fee_payer))
        );
    }
    assert_eq!(supported.signers.get("solana:*"), Some(&vec![fee_payer]));

    let usdc = rig.devnet.usdc_mint();
    let t22 = rig.devnet.token2022_mint();
    let req = rig.requirements(usdc, PRICE, None);
    let payer = &rig.payer;

    // Wrong mint: Token-2022 tokens offered where USDC is asked.
    let tx = rig.tx(&rig.standard(t22, PRICE, b"m1"), &[payer]).await;
    rig.refused(&req, &tx, SvmReason::MintMismatch).await;

    // Wrong recipient: the payer's own account, and another owner's.
    for to in [payer.pubkey(), rig.devnet.accounts()[3].address] {
        let mut ixs = rig.standard(usdc, PRICE, b"m2");
        ixs[2] = rig.transfer(usdc, &to, PRICE).instruction();
        let tx = rig.tx(&ixs, &[payer]).await;
        rig.refused(&req, &tx, SvmReason::RecipientMismatch).await;
    }

    // Amount too low, and too high.
    for amount in [PRICE - 1, PRICE + 1] {
        let tx = rig.tx(&rig.standard(usdc, amount, b"m3"), &[payer]).await;
        rig.refused(&req, &tx, SvmReason::AmountMismatch).await;
    }

    // Two transfers: the second where only Memo or Lighthouse may stand.
    let mut ixs = rig.standard(usdc, PRICE, b"m4");
    ixs.insert(3, rig.transfer(usdc, &rig.payee, PRICE).instruction());
    let tx = rig.tx(&ixs, &[payer]).await;
    rig.refused(&req, &tx, SvmReason::UnknownFourthInstruction)
        .await;

    // The fee payer as the transfer's authority (its own tokens), and merely listed as an
    // account of the memo.
    let sponsor = &rig.fee_payer;
    let mut ixs = rig.standard(usdc, PRICE, b"m5");
    let ata = |who: &Address| {
        programs::associated_token_address(who, &usdc, &programs::TOKEN_PROGRAM).unwrap()
    };
    ixs[2] = TransferChecked {
        source: ata(&sponsor.pubkey()),
        authority: sponsor.pubkey(),
        ..rig.transfer(usdc, &rig.payee, PRICE)
    }
    .instruction();
    let tx = rig.tx(&ixs, &[]).await;
    rig.refused(&req, &tx, SvmReason::FeePayerTransferringFunds)
        .await;
    let mut ixs = rig.standard(usdc, PRICE, b"m6");
    ixs[3] = Instruction::new_with_bytes(
        programs::MEMO_PROGRAM,
        b"m6",
        vec![AccountMeta::new_readonly(sponsor.pubkey(), true)],
    );
    let tx = rig.tx(&ixs, &[payer]).await;
    rig.refused(&req, &tx, SvmReason::FeePayerTransferringFunds)
        .await;

    // An extra required signer (a memo signed by a third key).
    let third = Keypair::new();
    let mut ixs = rig.standard(usdc, PRICE, b"m7");
    ixs[3] = Instruction::new_with_bytes(
        programs::MEMO_PROGRAM,
        b"m7",
        vec![AccountMeta::new_readonly(third.pubkey(), true)],
    );
    let tx = rig.tx(&ixs, &[payer, &third]).await;
    rig.refused(&req, &tx, SvmReason::ExcessiveSigners).await;

    // Compute budget: price over the cap, limit over the cap, instructions missing.
    let mut ixs = rig.standard(usdc, PRICE, b"m8");
    ixs[1] = programs::set_compute_unit_price(5_000_001);
    let tx = rig.tx(&ixs, &[payer]).await;
    rig.refused(&req, &tx, SvmReason::ComputePriceTooHigh).await;
    let mut ixs = rig.standard(usdc, PRICE, b"m9");
    ixs[0] = programs::set_compute_unit_limit(400_001);
    let tx = rig.tx(&ixs, &[payer]).await;
    rig.refused(&req, &tx, SvmReason::ComputeLimitTooHigh).await;
    let mut ixs = rig.standard(usdc, PRICE, b"m10");
    ixs.remove(0);
    let tx = rig.tx(&ixs, &[payer]).await;
    rig.refused(&req, &tx, SvmReason::ComputeLimitInstruction)
        .await;
    let mut ixs = rig.standard(usdc, PRICE, b"m11");
    ixs.swap(0, 1);
    let tx = rig.tx(&ixs, &[payer]).await;
    rig.refused(&req, &tx, SvmReason::ComputeLimitInstruction)
        .await;

    // The seller's memo: missing, different, twice.
    let with_memo = rig.requirements(usdc, PRICE, Some("order-7"));
    let mut ixs = rig.standard(usdc, PRICE, b"order-7");
    ixs.pop();
    let tx = rig.tx(&ixs, &[payer]).await;
    rig.refused(&with_memo, &tx, SvmReason::MemoCount).await;
    let tx = rig
        .tx(&rig.standard(usdc, PRICE, b"order-8"), &[payer])
        .await;
    rig.refused(&with_memo, &tx, SvmReason::MemoMismatch).await;
    let mut ixs = rig.standard(usdc, PRICE, b"order-7");
    ixs.push(programs::memo(b"order-7"));
    let tx = rig.tx(&ixs, &[payer]).await;
    rig.refused(&with_memo, &tx, SvmReason::MemoCount).await;

    // An unknown program after the transfer (a system transfer from the payer).
    let mut ixs = rig.standard(usdc, PRICE, b"m12");
    let mut data = vec![2, 0, 0, 0];
    data.extend_from_slice(&1_000u64.to_le_bytes());
    ixs.push(Instruction::new_with_bytes(
        Address::default(),
        &data,
        vec![
            AccountMeta::new(payer.pubkey(), true),
            AccountMeta::new(rig.payee, false),
        ],
    ));
    let tx = rig.tx(&ixs, &[payer]).await;
    rig.refused(&req, &tx, SvmReason::UnknownFifthInstruction)
        .await;

    // Signatures: the payer's corrupted, missing, or made by another key.
    let good = sign(
        &sponsor.pubkey(),
        &rig.standard(usdc, PRICE, b"m13"),
        &[payer],
        rig.blockhash().await,
    );
    let mut corrupted = good.clone();
    let mut bytes: [u8; 64] = corrupted.signatures[1].into();
    bytes[10] ^= 0x40;
    corrupted.signatures[1] = Signature::from(bytes);
    rig.refused(&req, &encode(corrupted), SvmReason::SignatureInvalid)
        .await;
    let mut missing = good.clone();
    missing.signatures[1] = Signature::default();
    rig.refused(&req, &encode(missing), SvmReason::SignatureInvalid)
        .await;
    let mut foreign = good.clone();
    foreign.signatures[1] = Keypair::new().sign_message(&good.message.serialize());
    rig.refused(&req, &encode(foreign), SvmReason::SignatureInvalid)
        .await;

    // A fee payer other than the requirements', or not the facilitator's.
    let other = rig.devnet.keypair(4);
    let blockhash = rig.blockhash().await;
    let tx = encode(sign(
        &other.pubkey(),
        &rig.standard(usdc, PRICE, b"m14"),
        &[payer],
        blockhash,
    ));
    rig.refused(&req, &tx, SvmReason::FeePayerMismatch).await;
    let mut not_ours = req.clone();
    not_ours
        .extra
        .as_mut()
        .unwrap()
        .insert("feePayer".into(), json!(other.pubkey().to_string()));
    rig.refused(&not_ours, &tx, SvmReason::FeePayerNotManaged)
        .await;
    let mut no_fee_payer = req.clone();
    no_fee_payer.extra = None;
    rig.refused(&no_fee_payer, &tx, SvmReason::MissingFeePayer)
        .await;

    // Insufficient balance: more than the payer holds (the simulation's token error).
    let rich = rig.requirements(usdc, tollgate_svm_devnet::INITIAL_TOKENS * 2, None);
    let tx = rig
        .tx(
            &rig.standard(usdc, tollgate_svm_devnet::INITIAL_TOKENS * 2, b"m15"),
            &[payer],
        )
        .await;
    rig.refused(&rich, &tx, ErrorReason::InsufficientFunds)
        .await;

    // Malformed payloads: not base64, not a transaction, trailing bytes, oversized.
    let good_b64 = rig.tx(&rig.standard(usdc, PRICE, b"m16"), &[payer]).await;
    let mut trailing = base64::engine::general_purpose::STANDARD
        .decode(&good_b64)
        .unwrap();
    trailing.push(0);
    for bad in [
        "not base64!".to_owned(),
        base64::engine::general_purpose::STANDARD.encode([1u8, 2, 3]),
        base64::engine::general_purpose::STANDARD.encode(&trailing),
        base64::engine::general_purpose::STANDARD.encode(vec![0u8; 5_000]),
        good_b64.trim_end_matches('=').to_owned() + "A",
    ] {
        rig.refused(&req, &bad, SvmReason::TransactionCouldNotBeDecoded)
            .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_blockhash_and_a_replayed_transaction_are_refused() {
    let rig = Rig::start().await;
    let usdc = rig.devnet.usdc_mint();
    let req = rig.requirements(usdc, PRICE, None);
    let tx = rig
        .tx(&rig.standard(usdc, PRICE, b"late"), &[&rig.payer])
        .await;
    rig.devnet.advance_slots(151);
    rig.refused(&req, &tx, SvmReason::SimulationFailed).await;

    // Verified in time, sent too late: the cluster drops it, and the facilitator says it
    // failed as soon as the blockhash is gone rather than waiting out its receipt timeout.
    let late = rig.payment(
        &req,
        &rig.tx(&rig.standard(usdc, PRICE, b"dropped"), &[&rig.payer])
            .await,
    );
    let verified = rig
        .scheme
        .verify(&late, &req)
        .await
        .expect("valid when verified");
    rig.devnet.advance_slots(151);
    let before = rig.balances();
    let signature = rig
        .scheme
        .submit(&verified)
        .await
        .expect("the node takes it");
    let started = std::time::Instant::now();
    let err = rig
        .scheme
        .await_settlement(&late, &req, &signature)
        .await
        .unwrap_err();
    assert_eq!(err.reason, SvmReason::TransactionFailed, "{err}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "waited {:?}",
        started.elapsed()
    );
    assert_eq!(rig.balances(), before);

    // A settled transaction presented again, to this facilitator and to a second one with
    // its own (empty) ledger, as a replica that lost its database would be.
    let tx = rig
        .tx(&rig.standard(usdc, PRICE, b"once"), &[&rig.payer])
        .await;
    let payment = rig.payment(&req, &tx);
    let first = rig.settle(&payment, &req).await;
    assert!(first.body().success, "{:?}", first.body());
    let after = rig.balances();
    let again = rig.settle(&payment, &req).await;
    assert_eq!(rig.balances(), after);
    assert!(!again.body().success || again.body().transaction == first.body().transaction);
    // The recovery hook a restarted facilitator asks: the settlement is found on chain by the
    // signature recomputed from the payment alone; an unsent payment is not.
    let found = rig
        .scheme
        .find_settlement(&payment, &req)
        .await
        .unwrap()
        .expect("found on chain");
    assert_eq!(found.transaction, first.body().transaction);
    let unsent = rig.payment(
        &req,
        &rig.tx(&rig.standard(usdc, PRICE, b"unsent"), &[&rig.payer])
            .await,
    );
    assert_eq!(
        rig.scheme.find_settlement(&unsent, &req).await.unwrap(),
        None
    );

    let replica = Facilitator::builder()
        .scheme(
            NetworkPattern::One(rig.scheme.network().clone()),
            rig.scheme.clone() as Arc<dyn SchemeFacilitator>,
        )
        .in_memory_ledger()
        .build()
        .await
        .unwrap();
    let verify = replica
        .verify(&FacilitatorRequest::V2 {
            payment_payload: payment.clone(),
            payment_requirements: req.clone(),
        })
        .await;
    assert_eq!(
        verify.body().invalid_reason,
        Some(SvmReason::DuplicateSettlement.into())
    );
    let settle = replica
        .settle(&FacilitatorRequest::V2 {
            payment_payload: payment.clone(),
            payment_requirements: req.clone(),
        })
        .await;
    assert!(!settle.body().success);
    assert_eq!(rig.balances(), after);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_payments_all_confirm_and_one_payment_settled_fifty_times_moves_money_once(
) {
    let rig = Arc::new(Rig::start().await);
    let usdc = rig.devnet.usdc_mint();
    let req = rig.requirements(usdc, PRICE, None);
    let client = Arc::new(ExactSvmClient::new(rig.devnet.keypair(1), rig.devnet.url()));
    let before = rig.balances();
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let (rig, client, req) = (rig.clone(), client.clone(), req.clone());
        tasks.push(tokio::spawn(async move {
            let (payment, _) = client.sign_payment(&req, None).await.unwrap();
            rig.settle(&payment, &req).await
        }));
    }
    let mut signatures = std::collections::HashSet::new();
    for t in tasks {
        let outcome = t.await.unwrap();
        assert!(outcome.body().success, "{:?}", outcome.body());
        signatures.insert(outcome.body().transaction.clone());
    }
    assert_eq!(signatures.len(), 50);
    let after = rig.balances();
    assert_eq!(before[0] - after[0], 50 * PRICE);
    assert_eq!(after[1] - before[1], 50 * PRICE);

    // One payment, fifty concurrent settles.
    let (payment, _) = client.sign_payment(&req, None).await.unwrap();
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let (rig, payment, req) = (rig.clone(), payment.clone(), req.clone());
        tasks.push(tokio::spawn(
            async move { rig.settle(&payment, &req).await },
        ));
    }
    let mut transactions = std::collections::HashSet::new();
    for t in tasks {
        let outcome = t.await.unwrap();
        if outcome.body().success {
            transactions.insert(outcome.body().transaction.clone());
        }
    }
    assert_eq!(
        transactions.len(),
        1,
        "every success names the one transaction"
    );
    let last = rig.balances();
    assert_eq!(after[0] - last[0], PRICE, "the payment moved money once");
    assert_eq!(last[1] - after[1], PRICE);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_facilitator_answers_a_settled_payment_from_its_ledger_and_moves_nothing() {
    let rig = Rig::start().await;
    let dir = tempfile::tempdir().unwrap();
    let ledger = dir.path().join("ledger.db");
    let usdc = rig.devnet.usdc_mint();
    let req = rig.requirements(usdc, PRICE, None);
    let payment = rig.payment(
        &req,
        &rig.tx(&rig.standard(usdc, PRICE, b"durable"), &[&rig.payer])
            .await,
    );
    let build = || {
        Facilitator::builder()
            .scheme(
                NetworkPattern::One(rig.scheme.network().clone()),
                rig.scheme.clone() as Arc<dyn SchemeFacilitator>,
            )
            .ledger_path(&ledger)
            .build()
    };
    let request = FacilitatorRequest::V2 {
        payment_payload: payment.clone(),
        payment_requirements: req.clone(),
    };
    let first = build().await.unwrap();
    let settled = first.settle(&request).await;
    assert!(settled.body().success, "{:?}", settled.body());
    drop(first);
    let after = rig.balances();
    let restarted = build().await.unwrap();
    let again = restarted.settle(&request).await;
    assert_eq!(rig.balances(), after, "a restart settled the payment twice");
    assert!(!again.body().success || again.body().transaction == settled.body().transaction);
    let verify = restarted.verify(&request).await;
    assert!(
        !verify.body().is_valid,
        "a settled payment verified again after a restart"
    );
}
