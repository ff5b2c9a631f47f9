//! Permit2 and the x402 Permit2 proxies at their canonical addresses, on anvil and on the
//! devnet: payments signed with alloy's EIP-712 move exactly the signed amount to the signed
//! payee, and every refusal reverts on chain and moves nothing.
//!
//! Each scenario runs on both backends (`<scenario>::anvil`, `<scenario>::devnet`), whatever
//! `TOLLGATE_TEST_CHAIN` says, because the point is that both hold the same contracts.

use alloy::network::TransactionBuilder;
use alloy::primitives::{Address, Bytes, B256, U256};
use alloy::providers::Provider;
use alloy::rpc::types::TransactionRequest;
use alloy::signers::{local::PrivateKeySigner, SignerSync};
use alloy::sol_types::{SolCall, SolValue};
use tollgate_testkit::artifacts;
use tollgate_testkit::chain::{INITIAL_PERMIT_TOKEN, INITIAL_USDT, PERMIT_TOKEN_EIP712};
use tollgate_testkit::permit2::{
    eip2612_signing_hash, exact_signing_hash, permit2_domain, revert_name, upto_signing_hash,
    EIP2612Permit, Eip2612Approval, ExactWitness, IErc2612, IPermit2, ITestToken,
    IX402ExactPermit2Proxy, IX402UptoPermit2Proxy, PermitTransferFrom, TokenPermissions,
    UptoWitness,
};
use tollgate_testkit::{TestChain, EXACT_PERMIT2_PROXY, PERMIT2, UPTO_PERMIT2_PROXY};

/// Runs `scenario` once on anvil and once on the devnet.
macro_rules! on_both_backends {
    ($scenario:ident) => {
        mod $scenario {
            #[tokio::test]
            async fn anvil() {
                super::$scenario(tollgate_testkit::TestChain::start_anvil().await.unwrap()).await
            }

            #[tokio::test]
            async fn devnet() {
                super::$scenario(tollgate_testkit::TestChain::start_devnet().await.unwrap()).await
            }
        }
    };
}

const PAYER: usize = 1;
const PAYEE: usize = 2;
/// Submits settlements; the facilitator named in `upto` witnesses.
const FACILITATOR: usize = 0;
/// Anyone else.
const STRANGER: usize = 5;

fn addr(i: usize) -> Address {
    TestChain::address(i)
}

/// 65-byte `r ‖ s ‖ v` signature of `digest` by dev account `index`.
fn sign(index: usize, digest: B256) -> Bytes {
    sign_with(&TestChain::signer(index), digest)
}

fn sign_with(signer: &PrivateKeySigner, digest: B256) -> Bytes {
    Bytes::from(signer.sign_hash_sync(&digest).unwrap().as_bytes().to_vec())
}

/// The latest block's timestamp: deadlines are judged by the chain's clock.
async fn chain_now(chain: &TestChain) -> u64 {
    chain
        .provider()
        .get_block_by_number(alloy::eips::BlockNumberOrTag::Latest)
        .await
        .unwrap()
        .unwrap()
        .header
        .timestamp
}

fn permit(token: Address, amount: u64, nonce: U256, deadline: u64) -> PermitTransferFrom {
    PermitTransferFrom {
        permitted: TokenPermissions {
            token,
            amount: U256::from(amount),
        },
        nonce,
        deadline: U256::from(deadline),
    }
}

fn exact_call(p: &PermitTransferFrom, owner: Address, w: &ExactWitness, sig: Bytes) -> Bytes {
    IX402ExactPermit2Proxy::settleCall {
        permit: p.clone(),
        owner,
        witness: w.clone(),
        signature: sig,
    }
    .abi_encode()
    .into()
}

fn upto_call(
    p: &PermitTransferFrom,
    amount: u64,
    owner: Address,
    w: &UptoWitness,
    sig: Bytes,
) -> Bytes {
    IX402UptoPermit2Proxy::settleCall {
        permit: p.clone(),
        amount: U256::from(amount),
        owner,
        witness: w.clone(),
        signature: sig,
    }
    .abi_encode()
    .into()
}

/// Balances of (token, holder) pairs.
async fn balances(chain: &TestChain, watched: &[(Address, Address)]) -> Vec<U256> {
    let mut out = Vec::new();
    for (token, who) in watched {
        out.push(chain.token_balance(*token, *who).await.unwrap());
    }
    out
}

/// Sends `data` to `to` from dev account `from` and requires success.
async fn send_ok(chain: &TestChain, from: usize, to: Address, data: Bytes) {
    let tx = TransactionRequest::default().with_to(to).with_input(data);
    let receipt = chain
        .provider_for(from)
        .unwrap()
        .send_transaction(tx)
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    assert!(receipt.status(), "transaction reverted: {receipt:?}");
}

/// `data` to `to` from dev account `from` is refused with `expected`: `eth_call` reverts with
/// that error, and the same transaction, mined anyway with a fixed gas limit, reverts and
/// leaves every watched balance as it was.
async fn assert_refused(
    chain: &TestChain,
    from: usize,
    to: Address,
    data: Bytes,
    expected: &str,
    watched: &[(Address, Address)],
) {
    let provider = chain.provider_for(from).unwrap();
    let tx = TransactionRequest::default()
        .with_from(addr(from))
        .with_to(to)
        .with_input(data);
    let err = provider
        .call(tx.clone())
        .await
        .expect_err(&format!("expected a revert with {expected}"));
    let revert = err
        .as_error_resp()
        .and_then(|e| e.as_revert_data())
        .unwrap_or_else(|| panic!("no revert data in {err}"));
    assert_eq!(
        revert_name(&revert),
        Some(expected),
        "revert data {revert} (expected {expected})"
    );

    let before = balances(chain, watched).await;
    let receipt = provider
        .send_transaction(tx.with_gas_limit(1_000_000))
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    assert!(!receipt.status(), "{expected}: the transaction succeeded");
    assert_eq!(
        balances(chain, watched).await,
        before,
        "{expected}: funds moved"
    );
}

// ------------------------------------------------------------------------------------------
// Typed data: ours is the official SDK's.
// ------------------------------------------------------------------------------------------

/// Digests of fixed messages computed with viem's `hashTypedData` and `@x402/evm` 2.27.0's
/// `permit2WitnessTypes` / `uptoPermit2WitnessTypes` (and EIP-2612's `Permit`): if ours
/// differed, the official SDK's signatures would not verify here, nor ours there.
#[test]
fn typed_data_matches_the_official_sdk() {
    let p = permit(
        Address::repeat_byte(0x11),
        123_456,
        U256::from(0xabcdef0123456789u64),
        1_740_672_154,
    );
    let exact = exact_signing_hash(
        84532,
        &p,
        EXACT_PERMIT2_PROXY,
        &ExactWitness {
            to: Address::repeat_byte(0x22),
            validAfter: U256::from(1_740_672_089u64),
        },
    );
    assert_eq!(
        exact.to_string(),
        "0xa99b148eca0a07c53b9007ff83aca08e29b42f218676a54b2de83a431a9abca4"
    );
    let upto = upto_signing_hash(
        31337,
        &p,
        UPTO_PERMIT2_PROXY,
        &UptoWitness {
            to: Address::repeat_byte(0x22),
            facilitator: Address::repeat_byte(0x33),
            validAfter: U256::from(7),
        },
    );
    assert_eq!(
        upto.to_string(),
        "0x4cd2b34dd520b84e42333bb09e22d8ec77090f386fd99f016ebb91268d271fdb"
    );
    let permit = eip2612_signing_hash(
        31337,
        Address::repeat_byte(0x44),
        "Permit USD",
        "1",
        &Eip2612Approval {
            owner: Address::repeat_byte(0x55),
            spender: PERMIT2,
            value: U256::from(1000),
            nonce: U256::from(3),
            deadline: U256::from(99),
        },
    );
    assert_eq!(
        permit.to_string(),
        "0xcb2e4c780052f0bcbb119d380cf85ac5c67374250658c7aa058a2c8228d9d7a6"
    );
}

// ------------------------------------------------------------------------------------------
// What the rig sets up
// ------------------------------------------------------------------------------------------

async fn canonical_contracts_and_tokens(chain: TestChain) {
    let provider = chain.provider();
    for (address, artifact) in [
        (PERMIT2, artifacts::PERMIT2),
        (EXACT_PERMIT2_PROXY, artifacts::EXACT_PERMIT2_PROXY),
        (UPTO_PERMIT2_PROXY, artifacts::UPTO_PERMIT2_PROXY),
    ] {
        assert_eq!(
            provider.get_code_at(address).await.unwrap(),
            artifact.deployed_bytecode().unwrap(),
            "{} at {address}",
            artifact.name
        );
    }
    let permit2 = IPermit2::new(PERMIT2, provider);
    assert_eq!(
        permit2.DOMAIN_SEPARATOR().call().await.unwrap(),
        permit2_domain(chain.chain_id()).separator()
    );
    let exact = IX402ExactPermit2Proxy::new(EXACT_PERMIT2_PROXY, provider);
    assert_eq!(exact.PERMIT2().call().await.unwrap(), PERMIT2);
    assert_eq!(
        exact.WITNESS_TYPE_STRING().call().await.unwrap(),
        "Witness witness)TokenPermissions(address token,uint256 amount)Witness(address to,uint256 validAfter)"
    );
    assert_eq!(
        exact.WITNESS_TYPEHASH().call().await.unwrap(),
        alloy::primitives::keccak256("Witness(address to,uint256 validAfter)")
    );
    let upto = IX402UptoPermit2Proxy::new(UPTO_PERMIT2_PROXY, provider);
    assert_eq!(upto.PERMIT2().call().await.unwrap(), PERMIT2);
    assert_eq!(
        upto.WITNESS_TYPE_STRING().call().await.unwrap(),
        "Witness witness)TokenPermissions(address token,uint256 amount)Witness(address to,address facilitator,uint256 validAfter)"
    );

    for (token, symbol, initial) in [
        (chain.usdt, "USDT", INITIAL_USDT),
        (chain.permit_token, "PUSD", INITIAL_PERMIT_TOKEN),
    ] {
        let erc20 = ITestToken::new(token, provider);
        assert_eq!(erc20.symbol().call().await.unwrap(), symbol);
        assert_eq!(erc20.decimals().call().await.unwrap(), 6);
        assert_eq!(
            erc20.totalSupply().call().await.unwrap(),
            U256::from(initial) * U256::from(9)
        );
        for i in 1..10 {
            assert_eq!(
                chain.token_balance(token, addr(i)).await.unwrap(),
                U256::from(initial)
            );
            assert_eq!(
                chain.permit2_allowance(token, addr(i)).await.unwrap(),
                U256::ZERO
            );
        }
    }
    assert_eq!(
        ITestToken::new(chain.usdt, provider)
            .name()
            .call()
            .await
            .unwrap(),
        "Tether USD"
    );
    // The USDT-like token has no EIP-3009 and no EIP-2612: calls to either revert.
    for data in [
        tollgate_testkit::chain::ITestUsdc::authorizationStateCall {
            authorizer: addr(1),
            nonce: B256::ZERO,
        }
        .abi_encode(),
        IErc2612::noncesCall { owner: addr(1) }.abi_encode(),
    ] {
        let tx = TransactionRequest::default()
            .with_to(chain.usdt)
            .with_input(data);
        assert!(provider.call(tx).await.is_err());
    }
    let permit_token = IErc2612::new(chain.permit_token, provider);
    assert_eq!(
        permit_token.version().call().await.unwrap(),
        PERMIT_TOKEN_EIP712.1
    );
    assert_eq!(
        ITestToken::new(chain.permit_token, provider)
            .name()
            .call()
            .await
            .unwrap(),
        PERMIT_TOKEN_EIP712.0
    );
    // Same deployer, same nonces: the tokens land at the same addresses on both backends.
    let other = match chain.backend() {
        tollgate_testkit::Backend::Anvil => TestChain::start_devnet().await.unwrap(),
        tollgate_testkit::Backend::Devnet => TestChain::start_anvil().await.unwrap(),
    };
    assert_eq!(
        (other.usdc, other.usdt, other.permit_token),
        (chain.usdc, chain.usdt, chain.permit_token)
    );
}
on_both_backends!(canonical_contracts_and_tokens);

// ------------------------------------------------------------------------------------------
// exact
// ------------------------------------------------------------------------------------------

async fn exact_moves_exactly_the_signed_amount(chain: TestChain) {
    chain
        .approve_permit2(PAYER, chain.usdt, U256::MAX)
        .await
        .unwrap();
    let now = chain_now(&chain).await;
    let watched = [
        (chain.usdt, addr(PAYER)),
        (chain.usdt, addr(PAYEE)),
        (chain.usdt, addr(STRANGER)),
    ];
    let before = balances(&chain, &watched).await;

    // A nonce in a word other than 0, to exercise the bitmap's word position.
    let nonce = (U256::from(1) << 200) + U256::from(7);
    let p = permit(chain.usdt, 1_250_000, nonce, now + 300);
    let w = ExactWitness {
        to: addr(PAYEE),
        validAfter: U256::ZERO,
    };
    let sig = sign(
        PAYER,
        exact_signing_hash(chain.chain_id(), &p, EXACT_PERMIT2_PROXY, &w),
    );
    assert!(!chain.permit2_nonce_used(addr(PAYER), nonce).await.unwrap());
    // Anyone may submit an exact payment: the stranger pays the gas, gains nothing.
    send_ok(
        &chain,
        STRANGER,
        EXACT_PERMIT2_PROXY,
        exact_call(&p, addr(PAYER), &w, sig.clone()),
    )
    .await;
    let after = balances(&chain, &watched).await;
    assert_eq!(after[0], before[0] - U256::from(1_250_000));
    assert_eq!(after[1], before[1] + U256::from(1_250_000));
    assert_eq!(after[2], before[2]);
    assert!(chain.permit2_nonce_used(addr(PAYER), nonce).await.unwrap());
    assert!(!chain
        .permit2_nonce_used(addr(PAYER), nonce + U256::from(1))
        .await
        .unwrap());

    // The same signature again: the nonce is spent.
    assert_refused(
        &chain,
        STRANGER,
        EXACT_PERMIT2_PROXY,
        exact_call(&p, addr(PAYER), &w, sig),
        "InvalidNonce",
        &watched,
    )
    .await;

    // An EIP-2098 compact (64-byte) signature is accepted as well.
    let p = permit(chain.usdt, 10, U256::from(8), now + 300);
    let digest = exact_signing_hash(chain.chain_id(), &p, EXACT_PERMIT2_PROXY, &w);
    let compact = TestChain::signer(PAYER)
        .sign_hash_sync(&digest)
        .unwrap()
        .as_erc2098();
    send_ok(
        &chain,
        FACILITATOR,
        EXACT_PERMIT2_PROXY,
        exact_call(&p, addr(PAYER), &w, Bytes::from(compact.to_vec())),
    )
    .await;
    let last = balances(&chain, &watched).await;
    assert_eq!(last[1], after[1] + U256::from(10));
}
on_both_backends!(exact_moves_exactly_the_signed_amount);

async fn exact_refusals_move_nothing(chain: TestChain) {
    chain
        .approve_permit2(PAYER, chain.usdt, U256::MAX)
        .await
        .unwrap();
    let now = chain_now(&chain).await;
    let id = chain.chain_id();
    let watched = [
        (chain.usdt, addr(PAYER)),
        (chain.usdt, addr(PAYEE)),
        (chain.usdt, addr(3)),
        (chain.usdt, addr(4)),
    ];
    let w = ExactWitness {
        to: addr(PAYEE),
        validAfter: U256::ZERO,
    };
    let refused = |data: Bytes, expected: &'static str| {
        let chain = &chain;
        let watched = &watched;
        async move {
            assert_refused(
                chain,
                FACILITATOR,
                EXACT_PERMIT2_PROXY,
                data,
                expected,
                watched,
            )
            .await
        }
    };

    // The facilitator substitutes another payee: the witness no longer matches the signature.
    let p = permit(chain.usdt, 1000, U256::from(1), now + 300);
    let sig = sign(PAYER, exact_signing_hash(id, &p, EXACT_PERMIT2_PROXY, &w));
    let redirected = ExactWitness {
        to: addr(3),
        validAfter: U256::ZERO,
    };
    refused(
        exact_call(&p, addr(PAYER), &redirected, sig.clone()),
        "InvalidSigner",
    )
    .await;
    // … or a larger amount.
    let more = permit(chain.usdt, 1001, U256::from(1), now + 300);
    refused(
        exact_call(&more, addr(PAYER), &w, sig.clone()),
        "InvalidSigner",
    )
    .await;
    // … or claims someone else's funds with the payer's signature.
    refused(exact_call(&p, addr(3), &w, sig.clone()), "InvalidSigner").await;
    // Expired deadline.
    let expired = permit(chain.usdt, 1000, U256::from(2), now - 1);
    let sig = sign(
        PAYER,
        exact_signing_hash(id, &expired, EXACT_PERMIT2_PROXY, &w),
    );
    refused(
        exact_call(&expired, addr(PAYER), &w, sig),
        "SignatureExpired",
    )
    .await;
    // validAfter in the future.
    let early = ExactWitness {
        to: addr(PAYEE),
        validAfter: U256::from(now + 3600),
    };
    let p = permit(chain.usdt, 1000, U256::from(3), now + 7200);
    let sig = sign(
        PAYER,
        exact_signing_hash(id, &p, EXACT_PERMIT2_PROXY, &early),
    );
    refused(exact_call(&p, addr(PAYER), &early, sig), "PaymentTooEarly").await;
    // Signed for another spender (the upto proxy): not valid for the exact proxy.
    let p = permit(chain.usdt, 1000, U256::from(4), now + 300);
    let sig = sign(PAYER, exact_signing_hash(id, &p, UPTO_PERMIT2_PROXY, &w));
    refused(exact_call(&p, addr(PAYER), &w, sig), "InvalidSigner").await;
    // Signed by someone other than the owner.
    let sig = sign(3, exact_signing_hash(id, &p, EXACT_PERMIT2_PROXY, &w));
    refused(exact_call(&p, addr(PAYER), &w, sig), "InvalidSigner").await;
    // A signature of neither 65 nor 64 bytes.
    refused(
        exact_call(&p, addr(PAYER), &w, Bytes::from(vec![1u8; 66])),
        "InvalidSignatureLength",
    )
    .await;
    // Zero amount: refused rather than burning the nonce.
    let zero = permit(chain.usdt, 0, U256::from(5), now + 300);
    let sig = sign(
        PAYER,
        exact_signing_hash(id, &zero, EXACT_PERMIT2_PROXY, &w),
    );
    refused(exact_call(&zero, addr(PAYER), &w, sig), "InvalidAmount").await;
    // A payer who never approved Permit2: the token refuses the transfer.
    let p = permit(chain.usdt, 1000, U256::from(6), now + 300);
    let sig = sign(4, exact_signing_hash(id, &p, EXACT_PERMIT2_PROXY, &w));
    refused(exact_call(&p, addr(4), &w, sig), "Error(string)").await;
    // More than the payer holds.
    let p = permit(chain.usdt, INITIAL_USDT + 1, U256::from(7), now + 300);
    let sig = sign(PAYER, exact_signing_hash(id, &p, EXACT_PERMIT2_PROXY, &w));
    refused(exact_call(&p, addr(PAYER), &w, sig), "Error(string)").await;
    // A nonce the payer invalidated before it was used.
    let p = permit(chain.usdt, 1000, U256::from(300), now + 300);
    let sig = sign(PAYER, exact_signing_hash(id, &p, EXACT_PERMIT2_PROXY, &w));
    send_ok(
        &chain,
        PAYER,
        PERMIT2,
        IPermit2::invalidateUnorderedNoncesCall {
            wordPos: U256::from(1),
            mask: U256::from(1) << 44,
        }
        .abi_encode()
        .into(),
    )
    .await;
    assert!(chain
        .permit2_nonce_used(addr(PAYER), U256::from(300))
        .await
        .unwrap());
    refused(exact_call(&p, addr(PAYER), &w, sig), "InvalidNonce").await;

    // None of the refused nonces 1–7 was spent.
    for n in 1..=7u64 {
        assert!(!chain
            .permit2_nonce_used(addr(PAYER), U256::from(n))
            .await
            .unwrap());
    }
}
on_both_backends!(exact_refusals_move_nothing);

/// A contract wallet pays: Permit2 asks the wallet (EIP-1271) instead of ecrecover.
async fn exact_from_an_eip1271_wallet(chain: TestChain) {
    let owner = 8;
    let wallet = chain.deploy_wallet_1271(addr(owner)).await.unwrap();
    chain
        .mint_token(chain.usdt, wallet, U256::from(5000))
        .await
        .unwrap();
    let approve = ITestToken::approveCall {
        spender: PERMIT2,
        value: U256::MAX,
    }
    .abi_encode();
    let execute = (chain.usdt, U256::ZERO, Bytes::from(approve)).abi_encode_params();
    let mut data = alloy::primitives::keccak256("execute(address,uint256,bytes)")[..4].to_vec();
    data.extend_from_slice(&execute);
    send_ok(&chain, owner, wallet, data.into()).await;

    let now = chain_now(&chain).await;
    let w = ExactWitness {
        to: addr(PAYEE),
        validAfter: U256::ZERO,
    };
    let p = permit(chain.usdt, 4000, U256::from(1), now + 300);
    let digest = exact_signing_hash(chain.chain_id(), &p, EXACT_PERMIT2_PROXY, &w);
    let watched = [(chain.usdt, wallet), (chain.usdt, addr(PAYEE))];
    // Someone else's key: the wallet says no.
    assert_refused(
        &chain,
        FACILITATOR,
        EXACT_PERMIT2_PROXY,
        exact_call(&p, wallet, &w, sign(3, digest)),
        "InvalidContractSignature",
        &watched,
    )
    .await;
    let before = balances(&chain, &watched).await;
    send_ok(
        &chain,
        FACILITATOR,
        EXACT_PERMIT2_PROXY,
        exact_call(&p, wallet, &w, sign(owner, digest)),
    )
    .await;
    let after = balances(&chain, &watched).await;
    assert_eq!(after[0], before[0] - U256::from(4000));
    assert_eq!(after[1], before[1] + U256::from(4000));
}
on_both_backends!(exact_from_an_eip1271_wallet);

// ------------------------------------------------------------------------------------------
// upto
// ------------------------------------------------------------------------------------------

async fn upto_settles_at_most_the_maximum(chain: TestChain) {
    chain
        .approve_permit2(PAYER, chain.usdt, U256::MAX)
        .await
        .unwrap();
    let now = chain_now(&chain).await;
    let id = chain.chain_id();
    let watched = [
        (chain.usdt, addr(PAYER)),
        (chain.usdt, addr(PAYEE)),
        (chain.usdt, addr(FACILITATOR)),
    ];
    let w = UptoWitness {
        to: addr(PAYEE),
        facilitator: addr(FACILITATOR),
        validAfter: U256::ZERO,
    };

    // Below the maximum: exactly the settled amount moves.
    let p = permit(chain.usdt, 1_000_000, U256::from(1), now + 300);
    let sig = sign(PAYER, upto_signing_hash(id, &p, UPTO_PERMIT2_PROXY, &w));
    let before = balances(&chain, &watched).await;
    send_ok(
        &chain,
        FACILITATOR,
        UPTO_PERMIT2_PROXY,
        upto_call(&p, 370_000, addr(PAYER), &w, sig.clone()),
    )
    .await;
    let after = balances(&chain, &watched).await;
    assert_eq!(after[0], before[0] - U256::from(370_000));
    assert_eq!(after[1], before[1] + U256::from(370_000));
    assert_eq!(after[2], before[2]);
    // The rest of the maximum is gone with the nonce: no second settlement.
    assert_refused(
        &chain,
        FACILITATOR,
        UPTO_PERMIT2_PROXY,
        upto_call(&p, 630_000, addr(PAYER), &w, sig),
        "InvalidNonce",
        &watched,
    )
    .await;

    // At the maximum.
    let p = permit(chain.usdt, 1_000_000, U256::from(2), now + 300);
    let sig = sign(PAYER, upto_signing_hash(id, &p, UPTO_PERMIT2_PROXY, &w));
    send_ok(
        &chain,
        FACILITATOR,
        UPTO_PERMIT2_PROXY,
        upto_call(&p, 1_000_000, addr(PAYER), &w, sig),
    )
    .await;
    let last = balances(&chain, &watched).await;
    assert_eq!(last[0], after[0] - U256::from(1_000_000));
    assert_eq!(last[1], after[1] + U256::from(1_000_000));
}
on_both_backends!(upto_settles_at_most_the_maximum);

async fn upto_refusals_move_nothing(chain: TestChain) {
    chain
        .approve_permit2(PAYER, chain.usdt, U256::MAX)
        .await
        .unwrap();
    let now = chain_now(&chain).await;
    let id = chain.chain_id();
    let watched = [
        (chain.usdt, addr(PAYER)),
        (chain.usdt, addr(PAYEE)),
        (chain.usdt, addr(STRANGER)),
    ];
    let w = UptoWitness {
        to: addr(PAYEE),
        facilitator: addr(FACILITATOR),
        validAfter: U256::ZERO,
    };
    let p = permit(chain.usdt, 1_000_000, U256::from(1), now + 300);
    let sig = sign(PAYER, upto_signing_hash(id, &p, UPTO_PERMIT2_PROXY, &w));
    let call = |amount: u64, witness: &UptoWitness| {
        upto_call(&p, amount, addr(PAYER), witness, sig.clone())
    };

    // Above the signed maximum.
    assert_refused(
        &chain,
        FACILITATOR,
        UPTO_PERMIT2_PROXY,
        call(1_000_001, &w),
        "AmountExceedsPermitted",
        &watched,
    )
    .await;
    // Zero: refused on chain (a zero charge sends no transaction at all).
    assert_refused(
        &chain,
        FACILITATOR,
        UPTO_PERMIT2_PROXY,
        call(0, &w),
        "InvalidAmount",
        &watched,
    )
    .await;
    // Someone other than the named facilitator.
    assert_refused(
        &chain,
        STRANGER,
        UPTO_PERMIT2_PROXY,
        call(1000, &w),
        "UnauthorizedFacilitator",
        &watched,
    )
    .await;
    // … who names itself in the witness: the signature no longer matches.
    let hijacked = UptoWitness {
        facilitator: addr(STRANGER),
        ..w.clone()
    };
    assert_refused(
        &chain,
        STRANGER,
        UPTO_PERMIT2_PROXY,
        call(1000, &hijacked),
        "InvalidSigner",
        &watched,
    )
    .await;
    // Another payee.
    let redirected = UptoWitness {
        to: addr(STRANGER),
        ..w.clone()
    };
    assert_refused(
        &chain,
        FACILITATOR,
        UPTO_PERMIT2_PROXY,
        call(1000, &redirected),
        "InvalidSigner",
        &watched,
    )
    .await;
    // Signed for the exact proxy as spender.
    let exact_w = ExactWitness {
        to: addr(PAYEE),
        validAfter: U256::ZERO,
    };
    let p2 = permit(chain.usdt, 1000, U256::from(2), now + 300);
    let exact_sig = sign(
        PAYER,
        exact_signing_hash(id, &p2, EXACT_PERMIT2_PROXY, &exact_w),
    );
    assert_refused(
        &chain,
        FACILITATOR,
        UPTO_PERMIT2_PROXY,
        upto_call(&p2, 1000, addr(PAYER), &w, exact_sig),
        "InvalidSigner",
        &watched,
    )
    .await;
    // Expired.
    let expired = permit(chain.usdt, 1000, U256::from(3), now - 1);
    let sig3 = sign(
        PAYER,
        upto_signing_hash(id, &expired, UPTO_PERMIT2_PROXY, &w),
    );
    assert_refused(
        &chain,
        FACILITATOR,
        UPTO_PERMIT2_PROXY,
        upto_call(&expired, 1000, addr(PAYER), &w, sig3),
        "SignatureExpired",
        &watched,
    )
    .await;
    // Not valid yet.
    let early = UptoWitness {
        validAfter: U256::from(now + 3600),
        ..w.clone()
    };
    let p4 = permit(chain.usdt, 1000, U256::from(4), now + 7200);
    let sig4 = sign(
        PAYER,
        upto_signing_hash(id, &p4, UPTO_PERMIT2_PROXY, &early),
    );
    assert_refused(
        &chain,
        FACILITATOR,
        UPTO_PERMIT2_PROXY,
        upto_call(&p4, 1000, addr(PAYER), &early, sig4),
        "PaymentTooEarly",
        &watched,
    )
    .await;
    for n in 1..=4u64 {
        assert!(!chain
            .permit2_nonce_used(addr(PAYER), U256::from(n))
            .await
            .unwrap());
    }
    // After all that, the original authorization still settles, once.
    send_ok(&chain, FACILITATOR, UPTO_PERMIT2_PROXY, call(999, &w)).await;
    assert!(chain
        .permit2_nonce_used(addr(PAYER), U256::from(1))
        .await
        .unwrap());
}
on_both_backends!(upto_refusals_move_nothing);

// ------------------------------------------------------------------------------------------
// EIP-2612 (the eip2612GasSponsoring extension)
// ------------------------------------------------------------------------------------------

/// A signed EIP-2612 approval of Permit2 by dev account `owner` on the permit token.
async fn permit_for_permit2(
    chain: &TestChain,
    owner: usize,
    value: u64,
    deadline: u64,
) -> EIP2612Permit {
    let nonce = IErc2612::new(chain.permit_token, chain.provider())
        .nonces(addr(owner))
        .call()
        .await
        .unwrap();
    let digest = eip2612_signing_hash(
        chain.chain_id(),
        chain.permit_token,
        PERMIT_TOKEN_EIP712.0,
        PERMIT_TOKEN_EIP712.1,
        &Eip2612Approval {
            owner: addr(owner),
            spender: PERMIT2,
            value: U256::from(value),
            nonce,
            deadline: U256::from(deadline),
        },
    );
    let sig = TestChain::signer(owner).sign_hash_sync(&digest).unwrap();
    EIP2612Permit {
        value: U256::from(value),
        deadline: U256::from(deadline),
        r: sig.r().into(),
        s: sig.s().into(),
        v: 27 + u8::from(sig.v()),
    }
}

async fn eip2612_permit_and_settle_with_permit(chain: TestChain) {
    let now = chain_now(&chain).await;
    let id = chain.chain_id();
    let token = IErc2612::new(chain.permit_token, chain.provider());

    // The permit itself, submitted by someone else, sets the allowance and uses the nonce.
    let owner = 6;
    let signed = permit_for_permit2(&chain, owner, 777, now + 300).await;
    let submit = |p: &EIP2612Permit| -> Bytes {
        IErc2612::permitCall {
            owner: addr(owner),
            spender: PERMIT2,
            value: p.value,
            deadline: p.deadline,
            v: p.v,
            r: p.r,
            s: p.s,
        }
        .abi_encode()
        .into()
    };
    send_ok(&chain, STRANGER, chain.permit_token, submit(&signed)).await;
    assert_eq!(
        chain
            .permit2_allowance(chain.permit_token, addr(owner))
            .await
            .unwrap(),
        U256::from(777)
    );
    assert_eq!(
        token.nonces(addr(owner)).call().await.unwrap(),
        U256::from(1)
    );
    // Replayed: the nonce moved on, so the signature recovers someone else.
    let replay = TransactionRequest::default()
        .with_to(chain.permit_token)
        .with_input(submit(&signed));
    assert!(chain.provider().call(replay).await.is_err());
    // Expired.
    let stale = permit_for_permit2(&chain, owner, 1, now - 1).await;
    let tx = TransactionRequest::default()
        .with_to(chain.permit_token)
        .with_input(submit(&stale));
    assert!(chain.provider().call(tx).await.is_err());

    // exact, settleWithPermit: a payer who never sent a transaction pays.
    let payer = 7;
    let watched = [
        (chain.permit_token, addr(payer)),
        (chain.permit_token, addr(PAYEE)),
    ];
    let w = ExactWitness {
        to: addr(PAYEE),
        validAfter: U256::ZERO,
    };
    let p = permit(chain.permit_token, 2500, U256::from(1), now + 300);
    let sig = sign(payer, exact_signing_hash(id, &p, EXACT_PERMIT2_PROXY, &w));
    let with_permit = |p2612: EIP2612Permit| -> Bytes {
        IX402ExactPermit2Proxy::settleWithPermitCall {
            permit2612: p2612,
            permit: p.clone(),
            owner: addr(payer),
            witness: w.clone(),
            signature: sig.clone(),
        }
        .abi_encode()
        .into()
    };
    // The permit's value must be the permitted amount.
    let mismatched = permit_for_permit2(&chain, payer, 2499, now + 300).await;
    assert_refused(
        &chain,
        FACILITATOR,
        EXACT_PERMIT2_PROXY,
        with_permit(mismatched),
        "Permit2612AmountMismatch",
        &watched,
    )
    .await;
    // An expired permit is skipped, and without an allowance the transfer fails.
    let expired = permit_for_permit2(&chain, payer, 2500, now - 1).await;
    assert_refused(
        &chain,
        FACILITATOR,
        EXACT_PERMIT2_PROXY,
        with_permit(expired),
        "Error(string)",
        &watched,
    )
    .await;
    let before = balances(&chain, &watched).await;
    let good = permit_for_permit2(&chain, payer, 2500, now + 300).await;
    send_ok(&chain, FACILITATOR, EXACT_PERMIT2_PROXY, with_permit(good)).await;
    let after = balances(&chain, &watched).await;
    assert_eq!(after[0], before[0] - U256::from(2500));
    assert_eq!(after[1], before[1] + U256::from(2500));
    assert_eq!(
        chain
            .permit2_allowance(chain.permit_token, addr(payer))
            .await
            .unwrap(),
        U256::ZERO,
        "the permit approved exactly the payment"
    );

    // upto, settleWithPermit: the permit approves the maximum, the settlement charges less.
    let payer = 9;
    let uw = UptoWitness {
        to: addr(PAYEE),
        facilitator: addr(FACILITATOR),
        validAfter: U256::ZERO,
    };
    let p = permit(chain.permit_token, 10_000, U256::from(1), now + 300);
    let sig = sign(payer, upto_signing_hash(id, &p, UPTO_PERMIT2_PROXY, &uw));
    let good = permit_for_permit2(&chain, payer, 10_000, now + 300).await;
    let before = chain
        .token_balance(chain.permit_token, addr(payer))
        .await
        .unwrap();
    send_ok(
        &chain,
        FACILITATOR,
        UPTO_PERMIT2_PROXY,
        IX402UptoPermit2Proxy::settleWithPermitCall {
            permit2612: good,
            permit: p,
            amount: U256::from(3700),
            owner: addr(payer),
            witness: uw,
            signature: sig,
        }
        .abi_encode()
        .into(),
    )
    .await;
    assert_eq!(
        chain
            .token_balance(chain.permit_token, addr(payer))
            .await
            .unwrap(),
        before - U256::from(3700)
    );
    assert_eq!(
        chain
            .permit2_allowance(chain.permit_token, addr(payer))
            .await
            .unwrap(),
        U256::from(6300)
    );
}
on_both_backends!(eip2612_permit_and_settle_with_permit);
