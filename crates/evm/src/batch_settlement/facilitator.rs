//! `batch-settlement` as a facilitator runs it ([`SchemeFacilitator`]).
//!
//! `/verify` takes the client's `deposit`, `voucher` and `refund` payloads and checks every rule
//! of the spec's "Verification Rules" (each refusal with its
//! `invalid_batch_settlement_evm_*` code), answering with the channel's on-chain state in
//! `extra`. A client's `refund` request without the receiver authorizer's signature, from a
//! seller that completes it before settling, is checked as its voucher (terms, signature,
//! funds, something left to refund) when this facilitator does not sign refunds itself.
//! `/settle` takes `deposit` (the deposit transaction through the canonical collector),
//! `claim` (`claimWithSignature`), `settle` (the sweep to the receiver) and the server-completed
//! `refund` (its claim and `refundWithSignature` in one `multicall`), each simulated before it is
//! sent, and reports what moved (`amount`) and the channel's state after (`extra.channelState`).
//!
//! Deposits and refunds are payments in the facilitator's ledger (keyed by the deposit's
//! EIP-3009 or Permit2 nonce, and by the refund nonce), settled once. Claims and sweeps are
//! not: the contract makes their repetition harmless (cumulative claims skip rows already
//! applied; a sweep moves only what is claimed and unsettled, to the receiver fixed in the
//! contract), so they are [repeatable](SchemeFacilitator::repeatable) and a server may retry
//! one after a lost response.

use std::time::Duration;

use alloy::network::TransactionBuilder;
use alloy::primitives::{keccak256, Address, Bytes, B256, U256};
use alloy::providers::Provider;
use alloy::rpc::types::{TransactionReceipt, TransactionRequest};
use alloy::signers::local::PrivateKeySigner;
use alloy::sol_types::{eip712_domain, SolCall, SolEvent, SolValue};
use tollgate_core::{
    BoxFuture, PaymentIdentity, SchemeError, SchemeFacilitator, Settled, Verified,
};
use tollgate_proto::{
    AtomicAmount, ErrorReason, PaymentPayload, PaymentRequirements, Scheme, SupportedKind,
    X402Version,
};

use super::abi::IBatchSettlement;
use super::reason::BatchReason;
use super::{
    channel_id, claim_batch_digest, erc3009_deposit_nonce, refund_digest, voucher_digest,
    BatchPayload, ChannelConfig, ChannelSnapshot, ClaimPayload, ClaimRow, DepositAuthorization,
    DepositPayload, RefundPayload, SettlePayload, SignedVoucher, VoucherError, VoucherVerifier,
    BATCH_SETTLEMENT, ERC3009_DEPOSIT_COLLECTOR, PERMIT2_DEPOSIT_COLLECTOR,
};
use crate::client::unix_now;
use crate::contracts::{IEip3009Token, IErc1271, ERC1271_MAGIC_VALUE};
use crate::domain::parse_address;
use crate::facilitator::{is_transport_failure, EvmChain};
use crate::plug::tx_hash;

/// Gas headroom over the node's estimate for channel transactions.
const GAS_MARGIN_PERCENT: u64 = 25;
/// A deposit authorization must stay valid this long after verification, so the deposit can
/// land before it expires.
const VALID_BEFORE_MARGIN_SECS: u64 = 6;

/// The key `/supported` announces as `extra.receiverAuthorizer`: servers that delegate claim
/// and refund authorization to the facilitator name it in their channels, and the facilitator
/// signs `ClaimBatch` for them — and `Refund` only when [`ReceiverAuthorizer::signing_refunds`]
/// says the facilitator's `/settle` is reachable by the seller alone.
///
/// Why refunds need that: a refund returns whatever is *unclaimed*, including vouchers the
/// server holds and has not claimed yet. If anyone could have the facilitator sign a refund,
/// a payer could use the service and then refund itself ahead of the server's claim. A claim
/// is safe to sign for anyone: it only moves value the payer signed for to the receiver fixed
/// in the channel.
#[derive(Clone)]
pub struct ReceiverAuthorizer {
    key: PrivateKeySigner,
    sign_refunds: bool,
}

impl ReceiverAuthorizer {
    /// The authorizer with this key; it signs claims, never refunds.
    pub fn new(key: PrivateKeySigner) -> Self {
        Self {
            key,
            sign_refunds: false,
        }
    }

    /// Also signs refunds: only for a facilitator whose `/settle` only the seller can call
    /// (an API key), since a refund signed for anyone would let a payer take back value the
    /// server has served but not claimed yet.
    pub fn signing_refunds(mut self) -> Self {
        self.sign_refunds = true;
        self
    }

    /// Its address.
    pub fn address(&self) -> Address {
        self.key.address()
    }
}

impl std::fmt::Debug for ReceiverAuthorizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReceiverAuthorizer")
            .field("address", &self.key.address())
            .field("sign_refunds", &self.sign_refunds)
            .finish()
    }
}

/// `batch-settlement` on one EVM network, as the facilitator runs it. Built on the network's
/// shared [`EvmChain`], so its transactions take nonces from the same signer pool as `exact`.
#[derive(Debug, Clone)]
pub struct BatchSettlementEvmFacilitator {
    chain: EvmChain,
    chain_id: u64,
    authorizer: Option<ReceiverAuthorizer>,
}

/// What `verify` found, kept for `submit`.
#[derive(Debug, Clone)]
enum Checked {
    Deposit {
        payload: DepositPayload,
        collector: Address,
        collector_data: Bytes,
    },
    Voucher,
    /// A client's refund request, not completed by the seller (no receiver-authorizer
    /// signature, and this facilitator does not sign refunds): valid to verify, never sent.
    RefundRequest,
    Refund {
        payload: RefundPayload,
        claim_signature: Option<Bytes>,
        refund_signature: Bytes,
        amount: u128,
        nonce: U256,
    },
    Claim {
        rows: Vec<ClaimRow>,
        signature: Bytes,
    },
    Settle(SettlePayload),
}

/// A verified `batch-settlement` payload, with the channel's state when it concerns one.
#[derive(Debug, Clone)]
pub struct VerifiedBatch {
    checked: Checked,
    snapshot: Option<ChannelSnapshot>,
}

fn refuse(reason: BatchReason, message: impl Into<String>) -> SchemeError {
    SchemeError::payment(reason.into(), message)
}

fn read_failed(reason: BatchReason, what: &str, e: impl std::fmt::Display) -> SchemeError {
    SchemeError::unavailable(reason.into(), format!("{what}: {e}"))
}

/// A refund request settled as the client sent it, by a facilitator that does not sign refunds.
fn refund_not_completed() -> SchemeError {
    refuse(
        BatchReason::RefundPayload,
        "refundAuthorizerSignature is required: this facilitator signs refunds only for an authenticated seller",
    )
}

fn parse(payment: &PaymentPayload) -> Result<BatchPayload, SchemeError> {
    super::parse_payload(payment).map_err(|(reason, message)| refuse(reason, message))
}

impl BatchSettlementEvmFacilitator {
    /// `batch-settlement` on `chain`; `authorizer` is the receiver authorizer it offers servers
    /// (announced in `/supported`), if any.
    pub fn on_chain(chain: &EvmChain, authorizer: Option<ReceiverAuthorizer>) -> Self {
        Self {
            chain_id: chain.network().eip155_chain_id().unwrap_or_default(),
            chain: chain.clone(),
            authorizer,
        }
    }

    /// The receiver authorizer it announces, if any.
    pub fn receiver_authorizer(&self) -> Option<Address> {
        self.authorizer.as_ref().map(ReceiverAuthorizer::address)
    }

    fn contract(
        &self,
    ) -> IBatchSettlement::IBatchSettlementInstance<&alloy::providers::DynProvider> {
        IBatchSettlement::new(BATCH_SETTLEMENT, self.chain.provider())
    }

    /// The channel's on-chain state.
    async fn read_channel(&self, id: B256) -> Result<ChannelSnapshot, SchemeError> {
        let c = self.contract();
        let failed = |e| {
            read_failed(
                BatchReason::ChannelStateReadFailed,
                "reading the channel",
                e,
            )
        };
        let (state, pending, nonce) = tokio::try_join!(
            async { c.channels(id).call().await.map_err(failed) },
            async { c.pendingWithdrawals(id).call().await.map_err(failed) },
            async { c.refundNonce(id).call().await.map_err(failed) },
        )?;
        Ok(ChannelSnapshot {
            channel_id: id,
            balance: state.balance,
            total_claimed: state.totalClaimed,
            withdraw_requested_at: pending.initiatedAt.to::<u64>(),
            refund_nonce: nonce,
            charged_cumulative_amount: None,
        })
    }

    /// Rules 1–5 ([`super::check_terms`]).
    fn check_terms(
        &self,
        config: &ChannelConfig,
        voucher: &SignedVoucher,
        requirements: &PaymentRequirements,
    ) -> Result<B256, SchemeError> {
        super::check_terms(config, voucher, requirements, self.chain_id)
            .map_err(|(reason, message)| refuse(reason, message))
    }

    /// Rule 6: the voucher is signed by the payer authorizer (ECDSA, locally) or, without one,
    /// by the payer (EIP-1271 when it has code).
    async fn check_voucher_signature(
        &self,
        config: &ChannelConfig,
        voucher: &SignedVoucher,
    ) -> Result<(), SchemeError> {
        let verifier = VoucherVerifier::new(self.chain_id);
        match verifier.verify_signature(config, voucher) {
            Ok(()) => Ok(()),
            Err(VoucherError::NeedsChain) => {
                let digest = voucher_digest(
                    voucher.channel_id,
                    voucher.max_claimable_amount,
                    self.chain_id,
                );
                if self
                    .valid_signature(config.payer, digest, &voucher.signature)
                    .await?
                {
                    Ok(())
                } else {
                    Err(refuse(
                        BatchReason::VoucherSignature,
                        format!(
                            "voucher signature is not valid for the payer {}",
                            config.payer
                        ),
                    ))
                }
            }
            Err(e) => Err(refuse(BatchReason::VoucherSignature, e.to_string())),
        }
    }

    /// Whether `signature` is `signer`'s over `digest`: EIP-1271 when it has code, else ECDSA.
    async fn valid_signature(
        &self,
        signer: Address,
        digest: B256,
        signature: &Bytes,
    ) -> Result<bool, SchemeError> {
        let code = self
            .chain
            .provider()
            .get_code_at(signer)
            .await
            .map_err(|e| read_failed(BatchReason::RpcReadFailed, "eth_getCode", e))?;
        if code.is_empty() {
            // As the token and the channel contract check an EOA: 65 bytes, low `s`.
            return Ok(super::recover_strict(signature, &digest, false) == Some(signer));
        }
        let wallet = IErc1271::new(signer, self.chain.provider());
        match wallet
            .isValidSignature(digest, signature.clone())
            .call()
            .await
        {
            Ok(magic) => Ok(magic.0 == ERC1271_MAGIC_VALUE),
            // The node did not answer: nothing is decided about the signature (a revert or a
            // malformed answer of the wallet is its refusal).
            Err(alloy::contract::Error::TransportError(e)) if is_transport_failure(&e) => Err(
                read_failed(BatchReason::RpcReadFailed, "EIP-1271 isValidSignature", e),
            ),
            Err(_) => Ok(false),
        }
    }

    /// Rules 7, 9, 10 against the channel's state (`extra` credited by a deposit).
    fn check_funds(
        kind: &str,
        voucher: &SignedVoucher,
        snapshot: &ChannelSnapshot,
        extra: u128,
    ) -> Result<(), SchemeError> {
        let balance = snapshot.balance.saturating_add(extra);
        if balance == 0 {
            return Err(refuse(
                BatchReason::ChannelNotFound,
                format!("channel {} has no balance", snapshot.channel_id),
            ));
        }
        if voucher.max_claimable_amount > balance {
            return Err(refuse(
                BatchReason::CumulativeExceedsBalance,
                format!(
                    "voucher ceiling {} exceeds the channel balance {balance}",
                    voucher.max_claimable_amount
                ),
            ));
        }
        let below = match kind {
            "voucher" => voucher.max_claimable_amount <= snapshot.total_claimed,
            _ => voucher.max_claimable_amount < snapshot.total_claimed,
        };
        if below {
            return Err(refuse(
                BatchReason::CumulativeBelowClaimed,
                format!(
                    "voucher ceiling {} is not above the claimed {}",
                    voucher.max_claimable_amount, snapshot.total_claimed
                ),
            ));
        }
        Ok(())
    }

    async fn verify_deposit(
        &self,
        payload: DepositPayload,
        requirements: &PaymentRequirements,
    ) -> Result<VerifiedBatch, SchemeError> {
        let config = &payload.channel_config;
        let id = self.check_terms(config, &payload.voucher, requirements)?;
        self.check_voucher_signature(config, &payload.voucher)
            .await?;
        let amount = payload.deposit.amount;
        if amount == 0 {
            return Err(refuse(
                BatchReason::DepositPayload,
                "deposit amount is zero",
            ));
        }
        let now = unix_now();
        let (collector, collector_data) = match &payload.deposit.authorization {
            DepositAuthorization::Erc3009(auth) => {
                if auth.valid_after > U256::from(now) {
                    return Err(refuse(
                        BatchReason::ValidAfter,
                        format!("authorization is valid only after {}", auth.valid_after),
                    ));
                }
                if auth.valid_before <= U256::from(now + VALID_BEFORE_MARGIN_SECS) {
                    return Err(refuse(
                        BatchReason::ValidBefore,
                        format!("authorization expired at {}", auth.valid_before),
                    ));
                }
                let (Some(name), Some(version)) = (
                    requirements.extra_str("name"),
                    requirements.extra_str("version"),
                ) else {
                    return Err(refuse(
                        BatchReason::MissingEip712Domain,
                        "extra.name and extra.version (the token's EIP-712 domain) are required",
                    ));
                };
                let domain = eip712_domain! {
                    name: name.to_owned(),
                    version: version.to_owned(),
                    chain_id: self.chain_id,
                    verifying_contract: config.token,
                };
                let digest = super::Erc3009DepositTerms {
                    channel_id: id,
                    from: config.payer,
                    amount,
                    valid_after: auth.valid_after.saturating_to(),
                    valid_before: auth.valid_before.saturating_to(),
                    salt: auth.salt,
                }
                .digest(&domain);
                if !self
                    .valid_signature(config.payer, digest, &auth.signature)
                    .await?
                {
                    return Err(refuse(
                        BatchReason::ReceiveAuthorizationSignature,
                        "the ReceiveWithAuthorization signature is not the payer's",
                    ));
                }
                let token = IEip3009Token::new(config.token, self.chain.provider());
                let nonce = erc3009_deposit_nonce(id, auth.salt);
                let used = token
                    .authorizationState(config.payer, nonce)
                    .call()
                    .await
                    .map_err(|e| {
                        read_failed(BatchReason::RpcReadFailed, "authorizationState", e)
                    })?;
                if used {
                    return Err(refuse(
                        BatchReason::DepositPayload,
                        "this deposit authorization was already used",
                    ));
                }
                (ERC3009_DEPOSIT_COLLECTOR, auth.collector_data())
            }
            DepositAuthorization::Permit2(auth) => {
                if auth.spender != PERMIT2_DEPOSIT_COLLECTOR {
                    return Err(refuse(
                        BatchReason::Permit2InvalidSpender,
                        format!(
                            "spender {} is not the Permit2 deposit collector",
                            auth.spender
                        ),
                    ));
                }
                if auth.permitted.amount != U256::from(amount)
                    || auth.permitted.token != config.token
                    || auth.from != config.payer
                    || auth.witness.channel_id != id
                {
                    return Err(refuse(
                        BatchReason::Permit2AmountMismatch,
                        "the Permit2 authorization is not for this deposit (amount, token, owner or channel)",
                    ));
                }
                if auth.deadline <= U256::from(now + VALID_BEFORE_MARGIN_SECS) {
                    return Err(refuse(
                        BatchReason::Permit2DeadlineExpired,
                        format!("Permit2 deadline {} has passed", auth.deadline),
                    ));
                }
                let digest = auth.digest(self.chain_id);
                if !self
                    .valid_signature(config.payer, digest, &auth.signature)
                    .await?
                {
                    return Err(refuse(
                        BatchReason::Permit2InvalidSignature,
                        "the Permit2 signature is not the payer's",
                    ));
                }
                let allowance =
                    crate::permit2::abi::IErc20Permit2::new(config.token, self.chain.provider())
                        .allowance(config.payer, crate::permit2::PERMIT2_ADDRESS)
                        .call()
                        .await
                        .map_err(|e| read_failed(BatchReason::RpcReadFailed, "allowance", e))?;
                if allowance < U256::from(amount) {
                    return Err(refuse(
                        BatchReason::Permit2AllowanceRequired,
                        format!("the payer's Permit2 allowance {allowance} is below {amount}"),
                    ));
                }
                (PERMIT2_DEPOSIT_COLLECTOR, auth.collector_data(Bytes::new()))
            }
        };
        let token = IEip3009Token::new(config.token, self.chain.provider());
        let (held, snapshot) = tokio::try_join!(
            async {
                token
                    .balanceOf(config.payer)
                    .call()
                    .await
                    .map_err(|e| read_failed(BatchReason::RpcReadFailed, "balanceOf", e))
            },
            self.read_channel(id),
        )?;
        if held < U256::from(amount) {
            return Err(refuse(
                BatchReason::InsufficientBalance,
                format!("the payer holds {held}, the deposit is {amount}"),
            ));
        }
        Self::check_funds("deposit", &payload.voucher, &snapshot, amount)?;
        // The deposit exactly as it will be sent, simulated.
        let call = IBatchSettlement::depositCall {
            config: config.to_abi(),
            amount,
            collector,
            collectorData: collector_data.clone(),
        };
        self.simulate(call.abi_encode(), BatchReason::DepositSimulationFailed)
            .await?;
        Ok(VerifiedBatch {
            checked: Checked::Deposit {
                payload,
                collector,
                collector_data,
            },
            snapshot: Some(snapshot),
        })
    }

    async fn verify_voucher(
        &self,
        payload: super::VoucherPayload,
        requirements: &PaymentRequirements,
    ) -> Result<VerifiedBatch, SchemeError> {
        let config = &payload.channel_config;
        let id = self.check_terms(config, &payload.voucher, requirements)?;
        self.check_voucher_signature(config, &payload.voucher)
            .await?;
        let snapshot = self.read_channel(id).await?;
        Self::check_funds("voucher", &payload.voucher, &snapshot, 0)?;
        Ok(VerifiedBatch {
            checked: Checked::Voucher,
            snapshot: Some(snapshot),
        })
    }

    async fn verify_refund(
        &self,
        payload: RefundPayload,
        requirements: &PaymentRequirements,
    ) -> Result<VerifiedBatch, SchemeError> {
        let config = &payload.channel_config;
        let id = self.check_terms(config, &payload.voucher, requirements)?;
        self.check_voucher_signature(config, &payload.voucher)
            .await?;
        let snapshot = self.read_channel(id).await?;
        Self::check_funds("refund", &payload.voucher, &snapshot, 0)?;
        if payload.amount == Some(0) {
            return Err(refuse(
                BatchReason::RefundAmountInvalid,
                "refund amount is zero",
            ));
        }
        // What the claim rows (if any) will have claimed when the refund runs.
        let claimed_after = payload
            .claims
            .iter()
            .flatten()
            .filter(|row| channel_id(&row.voucher.channel, self.chain_id) == id)
            .map(|row| row.total_claimed)
            .fold(snapshot.total_claimed, u128::max);
        let available = snapshot.balance.saturating_sub(claimed_after);
        if available == 0 {
            return Err(refuse(
                BatchReason::RefundNoBalance,
                format!("channel {id} has nothing unclaimed to refund"),
            ));
        }
        // This facilitator completes the refund itself only when it signs refunds *as this
        // channel's* receiver authorizer; a channel whose seller holds its own authorizer key
        // is completed (and signed) by that seller.
        let signs_for_channel = self
            .authorizer
            .as_ref()
            .is_some_and(|a| a.sign_refunds && a.address() == config.receiver_authorizer);
        if payload.refund_authorizer_signature.is_none() && !signs_for_channel {
            // The client's request as its seller forwards it to `/verify` before completing
            // it (the spec's cooperative refund flow): the voucher, the terms and the funds
            // are checked, and the channel's state returned so the seller can complete it
            // (refund nonce, claims, its signatures). It cannot be sent as it is.
            return Ok(VerifiedBatch {
                checked: Checked::RefundRequest,
                snapshot: Some(snapshot),
            });
        }
        let amount = payload.amount.unwrap_or(available).min(available);
        let nonce = payload.refund_nonce.unwrap_or(snapshot.refund_nonce);
        if nonce != snapshot.refund_nonce {
            return Err(refuse(
                BatchReason::RefundPayload,
                format!(
                    "refund nonce {nonce} is not the channel's {}",
                    snapshot.refund_nonce
                ),
            ));
        }
        let refund_signature = match &payload.refund_authorizer_signature {
            Some(sig) => sig.clone(),
            None if self.authorizer.as_ref().is_some_and(|a| a.sign_refunds) => {
                self.sign_as(
                    config.receiver_authorizer,
                    refund_digest(id, nonce, amount, self.chain_id),
                )
                .await?
            }
            None => return Err(refund_not_completed()),
        };
        let claim_signature = match payload.claims.as_deref() {
            None | Some([]) => None,
            Some(rows) => Some(match &payload.claim_authorizer_signature {
                Some(sig) => sig.clone(),
                None => {
                    self.sign_as(
                        config.receiver_authorizer,
                        claim_batch_digest(rows, self.chain_id),
                    )
                    .await?
                }
            }),
        };
        let checked = Checked::Refund {
            payload,
            claim_signature,
            refund_signature,
            amount,
            nonce,
        };
        self.simulate(
            Self::calldata(&checked),
            BatchReason::RefundSimulationFailed,
        )
        .await?;
        Ok(VerifiedBatch {
            checked,
            snapshot: Some(snapshot),
        })
    }

    async fn verify_claim(&self, payload: ClaimPayload) -> Result<VerifiedBatch, SchemeError> {
        let Some(first) = payload.claims.first() else {
            return Err(refuse(
                BatchReason::ClaimPayload,
                "a claim needs at least one row",
            ));
        };
        let authorizer = first.voucher.channel.receiver_authorizer;
        for row in &payload.claims {
            if row.voucher.channel.receiver_authorizer != authorizer {
                return Err(refuse(
                    BatchReason::AuthorizerAddressMismatch,
                    "every claim row must have the same receiver authorizer",
                ));
            }
            if row.total_claimed > row.voucher.max_claimable_amount {
                return Err(refuse(
                    BatchReason::ClaimPayload,
                    format!(
                        "claimed {} exceeds the voucher ceiling {}",
                        row.total_claimed, row.voucher.max_claimable_amount
                    ),
                ));
            }
        }
        let signature = match &payload.claim_authorizer_signature {
            Some(sig) => sig.clone(),
            None => {
                self.sign_as(
                    authorizer,
                    claim_batch_digest(&payload.claims, self.chain_id),
                )
                .await?
            }
        };
        let checked = Checked::Claim {
            rows: payload.claims,
            signature,
        };
        self.simulate(Self::calldata(&checked), BatchReason::ClaimSimulationFailed)
            .await?;
        Ok(VerifiedBatch {
            checked,
            snapshot: None,
        })
    }

    async fn verify_settle(&self, payload: SettlePayload) -> Result<VerifiedBatch, SchemeError> {
        let due = self
            .contract()
            .receivers(payload.receiver, payload.token)
            .call()
            .await
            .map_err(|e| read_failed(BatchReason::RpcReadFailed, "receivers", e))?;
        if due.totalClaimed == due.totalSettled {
            return Err(refuse(
                BatchReason::NothingToSettle,
                format!(
                    "nothing claimed and unsettled for {} in {}",
                    payload.receiver, payload.token
                ),
            ));
        }
        let checked = Checked::Settle(payload);
        self.simulate(
            Self::calldata(&checked),
            BatchReason::SettleSimulationFailed,
        )
        .await?;
        Ok(VerifiedBatch {
            checked,
            snapshot: None,
        })
    }

    /// Signs `digest` with the facilitator's receiver authorizer, which must be `expected`.
    async fn sign_as(&self, expected: Address, digest: B256) -> Result<Bytes, SchemeError> {
        use alloy::signers::Signer;
        match &self.authorizer {
            Some(a) if a.address() == expected => {
                let sig = a.key.sign_hash(&digest).await.map_err(|e| {
                    SchemeError::unavailable(ErrorReason::UnexpectedSettleError, e.to_string())
                })?;
                Ok(Bytes::from(sig.as_bytes().to_vec()))
            }
            Some(a) => Err(refuse(
                BatchReason::AuthorizerAddressMismatch,
                format!(
                    "the channel's receiver authorizer {expected} is not this facilitator's {} and no authorizer signature was given",
                    a.address()
                ),
            )),
            None => Err(refuse(
                BatchReason::AuthorizerNotConfigured,
                "no authorizer signature was given and this facilitator has no receiver authorizer",
            )),
        }
    }

    /// The transaction's calldata (to the settlement contract).
    fn calldata(checked: &Checked) -> Vec<u8> {
        match checked {
            Checked::Deposit {
                payload,
                collector,
                collector_data,
            } => IBatchSettlement::depositCall {
                config: payload.channel_config.to_abi(),
                amount: payload.deposit.amount,
                collector: *collector,
                collectorData: collector_data.clone(),
            }
            .abi_encode(),
            Checked::Voucher | Checked::RefundRequest => Vec::new(),
            Checked::Refund {
                payload,
                claim_signature,
                refund_signature,
                amount,
                nonce,
            } => {
                let refund = IBatchSettlement::refundWithSignatureCall {
                    config: payload.channel_config.to_abi(),
                    amount: *amount,
                    nonce: *nonce,
                    receiverAuthorizerSignature: refund_signature.clone(),
                }
                .abi_encode();
                match (payload.claims.as_deref(), claim_signature) {
                    (Some(rows), Some(sig)) if !rows.is_empty() => {
                        let claim = IBatchSettlement::claimWithSignatureCall {
                            voucherClaims: rows.iter().map(ClaimRow::to_abi).collect(),
                            authorizerSignature: sig.clone(),
                        }
                        .abi_encode();
                        IBatchSettlement::multicallCall {
                            data: vec![claim.into(), refund.into()],
                        }
                        .abi_encode()
                    }
                    _ => refund,
                }
            }
            Checked::Claim { rows, signature } => IBatchSettlement::claimWithSignatureCall {
                voucherClaims: rows.iter().map(ClaimRow::to_abi).collect(),
                authorizerSignature: signature.clone(),
            }
            .abi_encode(),
            Checked::Settle(p) => IBatchSettlement::settleCall {
                receiver: p.receiver,
                token: p.token,
            }
            .abi_encode(),
        }
    }

    /// `eth_call` of `data` from the primary signer; a revert is the payment's fault.
    async fn simulate(&self, data: Vec<u8>, reason: BatchReason) -> Result<(), SchemeError> {
        let tx = TransactionRequest::default()
            .with_from(self.chain.primary_signer())
            .with_to(BATCH_SETTLEMENT)
            .with_input(data);
        match self.chain.provider().call(tx).await {
            Ok(_) => Ok(()),
            Err(e) => match e.as_error_resp().and_then(|r| r.as_revert_data()) {
                Some(revert) => Err(refuse(
                    reason,
                    format!("simulation reverted: {}", revert_name(&revert)),
                )),
                None if e.as_error_resp().is_some() => {
                    Err(refuse(reason, format!("simulation failed: {e}")))
                }
                None => Err(read_failed(BatchReason::RpcReadFailed, "eth_call", e)),
            },
        }
    }

    async fn verify_payload(
        &self,
        payment: &PaymentPayload,
        requirements: &PaymentRequirements,
        payload: BatchPayload,
    ) -> Result<VerifiedBatch, SchemeError> {
        if payment.accepted.network != requirements.network {
            return Err(refuse(
                BatchReason::NetworkMismatch,
                format!(
                    "payment is for {}, requirements for {}",
                    payment.accepted.network, requirements.network
                ),
            ));
        }
        if requirements.scheme != Scheme::BatchSettlement {
            return Err(refuse(
                BatchReason::Scheme,
                format!("scheme {} is not batch-settlement", requirements.scheme),
            ));
        }
        match payload {
            BatchPayload::Deposit(p) => self.verify_deposit(p, requirements).await,
            BatchPayload::Voucher(p) => self.verify_voucher(p, requirements).await,
            BatchPayload::Refund(p) => self.verify_refund(p, requirements).await,
            BatchPayload::Claim(p) => self.verify_claim(p).await,
            BatchPayload::Settle(p) => self.verify_settle(p).await,
        }
    }

    fn identity(payload: &BatchPayload) -> PaymentIdentity {
        let of = |asset: Address, payer: Address, id: String, valid_before: Option<u64>| {
            PaymentIdentity {
                asset: asset.to_string(),
                payer: payer.to_string(),
                id,
                valid_before,
            }
        };
        match payload {
            BatchPayload::Deposit(p) => {
                let c = &p.channel_config;
                match &p.deposit.authorization {
                    DepositAuthorization::Erc3009(a) => of(
                        c.token,
                        c.payer,
                        format!(
                            "deposit:{}",
                            erc3009_deposit_nonce(p.voucher.channel_id, a.salt)
                        ),
                        Some(a.valid_before.saturating_to()),
                    ),
                    DepositAuthorization::Permit2(a) => of(
                        c.token,
                        c.payer,
                        format!("deposit-permit2:{}", a.nonce),
                        Some(a.deadline.saturating_to()),
                    ),
                }
            }
            BatchPayload::Voucher(p) => of(
                p.channel_config.token,
                p.channel_config.payer,
                format!(
                    "voucher:{}:{}",
                    p.voucher.channel_id, p.voucher.max_claimable_amount
                ),
                None,
            ),
            BatchPayload::Refund(p) => of(
                p.channel_config.token,
                p.channel_config.payer,
                match p.refund_nonce {
                    Some(n) => format!("refund:{}:{n}", p.voucher.channel_id),
                    None => format!(
                        "refund-request:{}:{}",
                        p.voucher.channel_id, p.voucher.max_claimable_amount
                    ),
                },
                None,
            ),
            BatchPayload::Claim(p) => {
                let first = p.claims.first();
                let rows: Vec<_> = p.claims.iter().map(ClaimRow::to_abi).collect();
                of(
                    first.map(|r| r.voucher.channel.token).unwrap_or_default(),
                    first
                        .map(|r| r.voucher.channel.receiver)
                        .unwrap_or_default(),
                    format!("claim:{}", keccak256(rows.abi_encode())),
                    None,
                )
            }
            BatchPayload::Settle(p) => {
                of(p.token, p.receiver, format!("settle:{}", p.receiver), None)
            }
        }
    }

    /// What the receipt says moved, and the channel's state after.
    async fn settled_from(
        &self,
        payload: &BatchPayload,
        receipt: &TransactionReceipt,
    ) -> Result<Settled, SchemeError> {
        let tx = receipt.transaction_hash.to_string();
        let logs = receipt.inner.logs();
        let ours = |l: &&alloy::rpc::types::Log| l.address() == BATCH_SETTLEMENT;
        let sum = |amounts: Vec<u128>| amounts.into_iter().sum::<u128>();
        let (payer, amount, channel) = match payload {
            BatchPayload::Deposit(p) => (
                p.channel_config.payer,
                Some(p.deposit.amount),
                Some(p.voucher.channel_id),
            ),
            BatchPayload::Refund(p) => (
                p.channel_config.payer,
                Some(sum(logs
                    .iter()
                    .filter(ours)
                    .filter_map(|l| IBatchSettlement::Refunded::decode_log_data(l.data()).ok())
                    .map(|e| e.amount)
                    .collect())),
                Some(p.voucher.channel_id),
            ),
            BatchPayload::Settle(p) => (
                p.receiver,
                Some(sum(logs
                    .iter()
                    .filter(ours)
                    .filter_map(|l| IBatchSettlement::Settled::decode_log_data(l.data()).ok())
                    .map(|e| e.amount)
                    .collect())),
                None,
            ),
            BatchPayload::Claim(p) => (
                p.claims
                    .first()
                    .map(|r| r.voucher.channel.receiver)
                    .unwrap_or_default(),
                None,
                None,
            ),
            BatchPayload::Voucher(p) => (p.channel_config.payer, None, None),
        };
        let extra = match channel {
            Some(id) => {
                let snapshot = self.read_channel(id).await?;
                let mut map = serde_json::Map::new();
                map.insert("channelState".into(), snapshot.to_json_map().into());
                Some(map)
            }
            None => None,
        };
        Ok(Settled {
            transaction: tx,
            payer: payer.to_string(),
            amount: amount.map(|a| AtomicAmount(U256::from(a))),
            extra,
        })
    }
}

/// The contract error's name for a revert's data, or the raw bytes.
fn revert_name(data: &[u8]) -> String {
    use alloy::sol_types::SolInterface;
    match IBatchSettlement::IBatchSettlementErrors::abi_decode(data) {
        Ok(e) => format!("{e:?}"),
        Err(_) => alloy::hex::encode_prefixed(data),
    }
}

impl SchemeFacilitator for BatchSettlementEvmFacilitator {
    fn scheme(&self) -> Scheme {
        Scheme::BatchSettlement
    }

    fn supported(&self) -> Vec<SupportedKind> {
        let extra = self.authorizer.as_ref().map(|a| {
            let mut map = serde_json::Map::new();
            map.insert("receiverAuthorizer".into(), a.address().to_string().into());
            map
        });
        vec![SupportedKind {
            x402_version: X402Version::V2,
            scheme: Scheme::BatchSettlement,
            network: self.chain.network().clone(),
            extra,
        }]
    }

    fn signers(&self) -> Vec<(String, Vec<String>)> {
        vec![(
            "eip155:*".to_owned(),
            self.chain
                .signer_addresses()
                .iter()
                .map(|a| a.to_string())
                .collect(),
        )]
    }

    fn receipt_timeout(&self) -> Duration {
        self.chain.config().receipt_timeout
    }

    fn repeatable(&self, payment: &PaymentPayload) -> bool {
        matches!(
            payment.payload.get("type").and_then(|t| t.as_str()),
            Some("claim" | "settle")
        )
    }

    fn identify(
        &self,
        payment: &PaymentPayload,
        _requirements: &PaymentRequirements,
    ) -> Result<PaymentIdentity, SchemeError> {
        Ok(Self::identity(&parse(payment)?))
    }

    fn verify<'a>(
        &'a self,
        payment: &'a PaymentPayload,
        requirements: &'a PaymentRequirements,
    ) -> BoxFuture<'a, Result<Verified, SchemeError>> {
        Box::pin(async move {
            let payload = parse(payment)?;
            let identity = Self::identity(&payload);
            let verified = self.verify_payload(payment, requirements, payload).await?;
            Ok(Verified {
                identity,
                proof: Box::new(verified),
            })
        })
    }

    /// As `/verify`, except that a refund request the seller has not completed (no
    /// receiver-authorizer signature, none made here) is refused before anything is reserved or sent.
    fn verify_settlement<'a>(
        &'a self,
        payment: &'a PaymentPayload,
        requirements: &'a PaymentRequirements,
    ) -> BoxFuture<'a, Result<Verified, SchemeError>> {
        Box::pin(async move {
            let verified = self.verify(payment, requirements).await?;
            if verified
                .proof
                .downcast_ref::<VerifiedBatch>()
                .is_some_and(|b| matches!(b.checked, Checked::RefundRequest))
            {
                return Err(refund_not_completed());
            }
            Ok(verified)
        })
    }

    fn verify_extra(
        &self,
        verified: &Verified,
    ) -> Option<serde_json::Map<String, serde_json::Value>> {
        let snapshot = verified
            .proof
            .downcast_ref::<VerifiedBatch>()?
            .snapshot
            .as_ref()?;
        Some(snapshot.to_json_map())
    }

    fn same_payment<'a>(
        &'a self,
        stored: &'a PaymentPayload,
        stored_pay_to: &'a str,
        presented: &'a PaymentPayload,
        requirements: &'a PaymentRequirements,
    ) -> BoxFuture<'a, Result<bool, SchemeError>> {
        Box::pin(async move {
            let (Ok(a), Ok(b)) = (parse(stored), parse(presented)) else {
                return Ok(false);
            };
            let same_payee = parse_address(stored_pay_to).is_ok()
                && parse_address(stored_pay_to) == parse_address(&requirements.pay_to);
            Ok(a == b && same_payee)
        })
    }

    fn submit<'a>(&'a self, verified: &'a Verified) -> BoxFuture<'a, Result<String, SchemeError>> {
        Box::pin(async move {
            let Some(batch) = verified.proof.downcast_ref::<VerifiedBatch>() else {
                return Err(SchemeError::unavailable(
                    ErrorReason::UnexpectedSettleError,
                    "the verified payment was not verified by the batch-settlement EVM scheme",
                ));
            };
            let reason = match &batch.checked {
                Checked::Voucher => {
                    return Err(refuse(
                        BatchReason::PayloadType,
                        "a voucher is settled by the server's claim, not by /settle",
                    ))
                }
                Checked::RefundRequest => return Err(refund_not_completed()),
                Checked::Deposit { .. } => BatchReason::DepositTransactionFailed,
                Checked::Refund { .. } => BatchReason::RefundTransactionFailed,
                Checked::Claim { .. } => BatchReason::ClaimTransactionFailed,
                Checked::Settle(_) => BatchReason::SettleTransactionFailed,
            };
            let tx = TransactionRequest::default()
                .with_to(BATCH_SETTLEMENT)
                .with_input(Self::calldata(&batch.checked));
            match self.chain.send(tx, GAS_MARGIN_PERCENT).await {
                Ok(hash) => Ok(hash.to_string()),
                Err(e) => {
                    let mut err: SchemeError = e.into();
                    if err.is_payment_fault() {
                        err.reason = reason.into();
                    }
                    Err(err)
                }
            }
        })
    }

    fn await_settlement<'a>(
        &'a self,
        payment: &'a PaymentPayload,
        _requirements: &'a PaymentRequirements,
        transaction: &'a str,
    ) -> BoxFuture<'a, Result<Settled, SchemeError>> {
        Box::pin(async move {
            let payload = parse(payment)?;
            let hash = tx_hash(transaction)?;
            let receipt = self
                .chain
                .wait_receipt(hash)
                .await
                .map_err(|e| SchemeError::from(e).with_transaction(transaction.to_owned()))?;
            if !receipt.status() {
                return Err(SchemeError::payment(
                    BatchReason::TransactionReverted.into(),
                    format!("transaction {transaction} reverted"),
                )
                .with_transaction(transaction.to_owned()));
            }
            self.settled_from(&payload, &receipt).await
        })
    }

    fn find_settlement<'a>(
        &'a self,
        payment: &'a PaymentPayload,
        _requirements: &'a PaymentRequirements,
    ) -> BoxFuture<'a, Result<Option<Settled>, SchemeError>> {
        Box::pin(async move {
            let payload = parse(payment)?;
            // Only an ERC-3009 deposit leaves a trace keyed by the payment itself (its
            // authorization nonce, logged by the token); a Permit2 deposit or a refund that
            // landed is refused again by the chain (used nonce), so it is never paid twice.
            let BatchPayload::Deposit(p) = &payload else {
                return Ok(None);
            };
            let DepositAuthorization::Erc3009(a) = &p.deposit.authorization else {
                return Ok(None);
            };
            let nonce = erc3009_deposit_nonce(p.voucher.channel_id, a.salt);
            let filter = alloy::rpc::types::Filter::new()
                .address(p.channel_config.token)
                .event_signature(IEip3009Token::AuthorizationUsed::SIGNATURE_HASH)
                .topic1(p.channel_config.payer.into_word())
                .topic2(nonce)
                .from_block(0u64);
            let logs = self
                .chain
                .provider()
                .get_logs(&filter)
                .await
                .map_err(|e| read_failed(BatchReason::RpcReadFailed, "eth_getLogs", e))?;
            let Some(hash) = logs.iter().find_map(|l| l.transaction_hash) else {
                return Ok(None);
            };
            let receipt = self
                .chain
                .provider()
                .get_transaction_receipt(hash)
                .await
                .map_err(|e| {
                    read_failed(BatchReason::RpcReadFailed, "eth_getTransactionReceipt", e)
                })?;
            match receipt {
                Some(r) if r.status() => self.settled_from(&payload, &r).await.map(Some),
                _ => Ok(None),
            }
        })
    }
}
