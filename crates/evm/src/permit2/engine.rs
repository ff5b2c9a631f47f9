//! Verification and settlement of Permit2 payments, shared by `exact` (Permit2 transfer method)
//! and `upto`: one [`Permit2Engine`] per chain, generic over the witness.
//!
//! Verification follows the spec's order (`scheme_exact_evm.md` §2 Phase 3,
//! `scheme_upto_evm.md` Phase 3), after the checks that decide whether the payment is even
//! addressed to this facilitator (scheme, network, spender, payee, and for `upto` the
//! witnessed facilitator): 1. signature, 2. Permit2 allowance (or a sponsoring extension),
//! 3. balance, 4. amount, 5. deadline and `validAfter`, 6. token (and the Permit2 nonce still
//! unused), 7. a dry run of the proxy call. Each failure is a [`VerifyError`] with the official
//! SDK's reason code.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::facilitator::is_transport_failure;
use alloy::consensus::Transaction as _;
use alloy::network::TransactionBuilder;
use alloy::primitives::{Address, Bytes, Signature, B256, U256};
use alloy::providers::Provider;
use alloy::rpc::types::{Filter, TransactionReceipt, TransactionRequest};
use alloy::sol_types::SolEvent;
use tollgate_proto::{PaymentPayload, PaymentRequirements, Scheme};

use super::abi::{IErc20Permit2, IPermit2};
use super::extensions::{SponsoredApproval, Sponsorship};
use super::{nonce_position, permit2_digest, Permit2Payload, Permit2Witness, PERMIT2_ADDRESS};
use crate::client::unix_now;
use crate::contracts::{IErc1271, ERC1271_MAGIC_VALUE};
use crate::domain::parse_address;
use crate::facilitator::{EvmChain, SettleError, Settlement, VerifyError};
use crate::reason::EvmReason;

/// Extra gas over the estimate of a proxy settlement.
const GAS_MARGIN_PERCENT: u64 = 15;

/// Tunables of the Permit2 paths.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Permit2Config {
    /// A `deadline` closer than this is refused (settlement takes a block or two).
    pub deadline_margin: Duration,
    /// Accept `eip2612GasSponsoring`: submit the payer's EIP-2612 permit for Permit2 inside
    /// the proxy's `settleWithPermit`. Costs nothing beyond the settlement's own gas.
    pub sponsor_eip2612: bool,
    /// Accept `erc20ApprovalGasSponsoring`: fund the payer's gas for its signed approval if
    /// needed (at most `gas × maxFeePerGas` of that transaction), broadcast it, then settle.
    /// Off by default: the facilitator pays for someone else's transaction, and the funding,
    /// the approval and the settlement are three transactions, not one atomic bundle.
    pub sponsor_erc20_approval: bool,
}

impl Default for Permit2Config {
    fn default() -> Self {
        Self {
            deadline_margin: Duration::from_secs(6),
            sponsor_eip2612: true,
            sponsor_erc20_approval: false,
        }
    }
}

/// What a verification compares the requirements' `amount` with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AmountRule {
    /// `amount` must equal the permitted amount (`exact`; `upto` at `/verify`, where it is the
    /// maximum).
    Equal,
    /// `amount` is the charge and must not exceed the permitted maximum (`upto` at `/settle`).
    AtMost,
}

/// A Permit2 payment that passed verification, ready to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedPermit2<W> {
    /// The signed payload.
    pub payload: Permit2Payload<W>,
    /// The token.
    pub asset: Address,
    /// What the settlement moves (the charge): the requirements' amount.
    pub amount: U256,
    /// What stands in for a missing Permit2 approval, if anything.
    pub sponsorship: Option<Sponsorship>,
}

/// Verifies and settles Permit2 payments on one chain, through the chain's shared signer pool.
#[derive(Clone)]
pub struct Permit2Engine {
    chain: EvmChain,
    config: Permit2Config,
    /// Addresses seen with code (tokens, proxies): code does not disappear.
    deployed: Arc<Mutex<HashSet<Address>>>,
}

impl std::fmt::Debug for Permit2Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Permit2Engine")
            .field("chain", &self.chain)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

fn contract_rpc(context: &'static str, e: alloy::contract::Error) -> VerifyError {
    VerifyError::rpc(context, e)
}

impl Permit2Engine {
    /// The Permit2 paths on `chain`.
    pub fn new(chain: &EvmChain, config: Permit2Config) -> Self {
        Self {
            chain: chain.clone(),
            config,
            deployed: Default::default(),
        }
    }

    /// The chain.
    pub fn chain(&self) -> &EvmChain {
        &self.chain
    }

    /// The configuration.
    pub fn config(&self) -> &Permit2Config {
        &self.config
    }

    /// Runs every check of the spec's list against `payment` (see the module documentation),
    /// comparing the requirements' amount by `rule`. Reads the chain, never writes to it.
    pub async fn verify<W: Permit2Witness>(
        &self,
        payment: &PaymentPayload,
        requirements: &PaymentRequirements,
        rule: AmountRule,
    ) -> Result<VerifiedPermit2<W>, VerifyError> {
        let result = self.verify_inner::<W>(payment, requirements, rule).await;
        match &result {
            Ok(v) => {
                tracing::debug!(payer = %v.payload.permit2_authorization.from, scheme = %W::SCHEME, "Permit2 payment verified")
            }
            Err(e) => {
                tracing::info!(reason = %e.reason(), error = %e, scheme = %W::SCHEME, "Permit2 payment rejected")
            }
        }
        result
    }

    async fn verify_inner<W: Permit2Witness>(
        &self,
        payment: &PaymentPayload,
        requirements: &PaymentRequirements,
        rule: AmountRule,
    ) -> Result<VerifiedPermit2<W>, VerifyError> {
        let payload = Permit2Payload::<W>::from_payment(payment)
            .map_err(|e| VerifyError::InvalidPayload(e.to_string()))?;
        let auth = &payload.permit2_authorization;
        let upto = W::SCHEME == Scheme::Upto;

        // Is this payment addressed to this scheme, chain, proxy, payee and facilitator?
        if payment.accepted.scheme != W::SCHEME || requirements.scheme != W::SCHEME {
            let (payload_scheme, required) = (
                payment.accepted.scheme.to_string(),
                requirements.scheme.to_string(),
            );
            return Err(if upto {
                VerifyError::Refused {
                    reason: EvmReason::InvalidUptoEvmScheme,
                    message: format!("scheme mismatch: payload is for {payload_scheme:?}, requirements for {required:?}; expected \"upto\""),
                }
            } else {
                VerifyError::SchemeMismatch {
                    payload: payload_scheme,
                    requirements: required,
                }
            });
        }
        if payment.accepted.network != requirements.network {
            let (p, r) = (
                payment.accepted.network.to_string(),
                requirements.network.to_string(),
            );
            return Err(if upto {
                VerifyError::Refused {
                    reason: EvmReason::InvalidUptoEvmNetworkMismatch,
                    message: format!("network mismatch: payload is for {p}, requirements for {r}"),
                }
            } else {
                VerifyError::NetworkMismatch {
                    payload: p,
                    requirements: r,
                }
            });
        }
        if &requirements.network != self.chain.network() {
            return Err(VerifyError::UnsupportedNetwork {
                requested: requirements.network.to_string(),
                served: self.chain.network().to_string(),
            });
        }
        let chain_id = requirements.network.eip155_chain_id().ok_or_else(|| {
            VerifyError::InvalidRequirements(format!("{} is not eip155", requirements.network))
        })?;
        let asset = parse_address(&requirements.asset).map_err(|reason| {
            VerifyError::InvalidRequirements(format!(
                "asset {:?} is not an address: {reason}",
                requirements.asset
            ))
        })?;
        if auth.spender != W::PROXY {
            return Err(VerifyError::Permit2Spender {
                expected: W::PROXY,
                got: auth.spender,
            });
        }
        let pay_to = parse_address(&requirements.pay_to).map_err(|reason| {
            VerifyError::InvalidRequirements(format!(
                "payTo {:?} is not an address: {reason}",
                requirements.pay_to
            ))
        })?;
        let accepted_pay_to = parse_address(&payment.accepted.pay_to).ok();
        if auth.witness.to() != pay_to || accepted_pay_to != Some(pay_to) {
            let got = if auth.witness.to() != pay_to {
                auth.witness.to().to_string()
            } else {
                payment.accepted.pay_to.clone()
            };
            return Err(VerifyError::Permit2Recipient {
                expected: requirements.pay_to.clone(),
                got,
            });
        }
        if let Some(facilitator) = auth.witness.sender() {
            if !self.chain.signer_addresses().contains(&facilitator) {
                return Err(VerifyError::Refused {
                    reason: EvmReason::UptoFacilitatorMismatch,
                    message: format!(
                        "the payment may only be settled by {facilitator}, which is not a signer of this facilitator"
                    ),
                });
            }
        }
        if !self.has_code(asset).await? {
            return Err(VerifyError::AssetNotDeployed { asset });
        }

        // 1. The signature.
        let digest = permit2_digest(auth, chain_id);
        self.check_signature(auth.from, digest, &payload.signature)
            .await?;

        let charge = requirements.amount.get();
        let now = unix_now();
        let margin = self.config.deadline_margin.as_secs();
        let token = IErc20Permit2::new(asset, self.chain.provider());

        // 2. Permit2 may move the charge, or an extension makes it so.
        let allowance = token
            .allowance(auth.from, PERMIT2_ADDRESS)
            .call()
            .await
            .map_err(|e| contract_rpc("Permit2 allowance", e))?;
        let mut sponsorship = None;
        if allowance < charge {
            sponsorship = self
                .sponsorship(payment, auth.from, asset, charge, now)
                .await?;
            if let Some(Sponsorship::Eip2612(p)) = &sponsorship {
                // The proxies submit the permit only for exactly the permitted amount.
                if p.value != auth.permitted.amount {
                    return Err(VerifyError::Refused {
                        reason: EvmReason::Permit22612AmountMismatch,
                        message: format!(
                            "the EIP-2612 permit approves {}, the payment permits {}",
                            p.value, auth.permitted.amount
                        ),
                    });
                }
            }
            if sponsorship.is_none() {
                return Err(VerifyError::Permit2AllowanceRequired {
                    payer: auth.from,
                    allowance,
                    required: charge,
                });
            }
        }

        // 3. Funds.
        let balance = token
            .balanceOf(auth.from)
            .call()
            .await
            .map_err(|e| contract_rpc("balanceOf", e))?;
        if balance < charge {
            return Err(VerifyError::Permit2InsufficientBalance {
                payer: auth.from,
                balance,
                required: charge,
            });
        }

        // 4. The amount.
        let permitted = auth.permitted.amount;
        match rule {
            AmountRule::Equal => {
                for offered in [permitted, payment.accepted.amount.get()] {
                    if offered != charge {
                        return Err(VerifyError::Permit2AmountMismatch {
                            expected: charge,
                            got: offered,
                        });
                    }
                }
                if charge.is_zero() {
                    // Anyone can sign a permit of nothing with a fresh key; not a payment.
                    return Err(VerifyError::InvalidRequirements(
                        "amount is 0: authorising nothing is not a payment".into(),
                    ));
                }
            }
            AmountRule::AtMost => {
                if charge > permitted {
                    return Err(VerifyError::SettlementExceedsAmount {
                        maximum: permitted,
                        requested: charge,
                    });
                }
                if payment.accepted.amount.get() != permitted {
                    return Err(VerifyError::Permit2AmountMismatch {
                        expected: payment.accepted.amount.get(),
                        got: permitted,
                    });
                }
            }
        }

        // 5. The time window.
        if auth.deadline < U256::from(now.saturating_add(margin)) {
            return Err(VerifyError::Permit2DeadlineExpired {
                deadline: auth.deadline,
                now,
                margin_secs: margin,
            });
        }
        if auth.witness.valid_after() > U256::from(now) {
            return Err(VerifyError::Permit2NotYetValid {
                valid_after: auth.witness.valid_after(),
                now,
            });
        }

        // 6. Token (the network was checked first: nothing else is comparable without it).
        if auth.permitted.token != asset {
            return Err(VerifyError::Permit2TokenMismatch {
                expected: asset,
                got: auth.permitted.token,
            });
        }
        match parse_address(&payment.accepted.asset) {
            Ok(a) if a == asset => {}
            _ => {
                return Err(VerifyError::AssetMismatch {
                    payload: payment.accepted.asset.clone(),
                    requirements: requirements.asset.clone(),
                })
            }
        }
        if self
            .nonce_used(auth.from, auth.nonce)
            .await
            .map_err(|e| VerifyError::rpc("Permit2 nonceBitmap", e))?
        {
            return Err(VerifyError::Permit2NonceUsed {
                payer: auth.from,
                nonce: auth.nonce,
            });
        }

        // 7. A dry run of the proxy call. Nothing to run for a zero charge (no transaction
        // follows), nor before a sponsored approval lands (the transfer needs it first; the
        // approval's own fields were checked).
        let relayed = matches!(sponsorship, Some(Sponsorship::Erc20Approval(_)));
        if !charge.is_zero() && !relayed {
            let permit = match &sponsorship {
                Some(Sponsorship::Eip2612(p)) => Some(p),
                _ => None,
            };
            let data = W::settle_calldata(&payload, charge, permit);
            let from = auth
                .witness
                .sender()
                .unwrap_or_else(|| self.chain.primary_signer());
            let tx = TransactionRequest::default()
                .with_from(from)
                .with_to(W::PROXY)
                .with_input(data);
            if let Err(e) = self.chain.provider().call(tx).await {
                if is_transport_failure(&e) {
                    return Err(VerifyError::rpc("Permit2 settlement simulation", e));
                }
                if !self.has_code(W::PROXY).await? {
                    return Err(VerifyError::Permit2ProxyNotDeployed { proxy: W::PROXY });
                }
                return Err(VerifyError::Permit2SimulationFailed(e.to_string()));
            }
        }

        Ok(VerifiedPermit2 {
            payload: payload.clone(),
            asset,
            amount: charge,
            sponsorship,
        })
    }

    /// Only the signature of `payment` against its own terms: for a repeated settlement whose
    /// authorization is already spent (a full verification would fail on the nonce).
    pub async fn verify_signature<W: Permit2Witness>(
        &self,
        payment: &PaymentPayload,
        requirements: &PaymentRequirements,
    ) -> Result<(), VerifyError> {
        let payload = Permit2Payload::<W>::from_payment(payment)
            .map_err(|e| VerifyError::InvalidPayload(e.to_string()))?;
        let chain_id = requirements.network.eip155_chain_id().ok_or_else(|| {
            VerifyError::InvalidRequirements(format!("{} is not eip155", requirements.network))
        })?;
        let auth = &payload.permit2_authorization;
        self.check_signature(
            auth.from,
            permit2_digest(auth, chain_id),
            &payload.signature,
        )
        .await
    }

    /// A sponsoring extension the facilitator accepts, checked; `None` when the payment
    /// brings none (or only ones this facilitator does not sponsor).
    async fn sponsorship(
        &self,
        payment: &PaymentPayload,
        payer: Address,
        asset: Address,
        charge: U256,
        now: u64,
    ) -> Result<Option<Sponsorship>, VerifyError> {
        let refused = |e: super::extensions::ExtensionError| VerifyError::Refused {
            reason: e.reason,
            message: e.message,
        };
        if self.config.sponsor_eip2612 {
            if let Some(s) = Sponsorship::eip2612(
                payment,
                payer,
                asset,
                now,
                self.config.deadline_margin.as_secs(),
            )
            .map_err(refused)?
            {
                return Ok(Some(s));
            }
        }
        if self.config.sponsor_erc20_approval {
            if let Some(s) = Sponsorship::erc20_approval(payment, payer, asset).map_err(refused)? {
                if let Sponsorship::Erc20Approval(a) = &s {
                    if a.amount < charge {
                        return Err(VerifyError::Permit2AllowanceRequired {
                            payer,
                            allowance: a.amount,
                            required: charge,
                        });
                    }
                    let nonce = self
                        .chain
                        .provider()
                        .get_transaction_count(payer)
                        .pending()
                        .await
                        .map_err(|e| VerifyError::rpc("payer nonce", e))?;
                    if a.nonce != nonce {
                        return Err(VerifyError::Refused {
                            reason: EvmReason::Erc20ApprovalTxFailed,
                            message: format!(
                                "the signed approval has nonce {}, the payer's next is {nonce}",
                                a.nonce
                            ),
                        });
                    }
                }
                return Ok(Some(s));
            }
        }
        Ok(None)
    }

    async fn has_code(&self, address: Address) -> Result<bool, VerifyError> {
        if self
            .deployed
            .lock()
            .map(|s| s.contains(&address))
            .unwrap_or(false)
        {
            return Ok(true);
        }
        let code = self
            .chain
            .provider()
            .get_code_at(address)
            .await
            .map_err(|e| VerifyError::rpc("contract code", e))?;
        if code.is_empty() {
            return Ok(false);
        }
        if let Ok(mut s) = self.deployed.lock() {
            s.insert(address);
        }
        Ok(true)
    }

    /// As Permit2 checks it: ECDSA recovery for an account without code (65 bytes, or 64 in
    /// EIP-2098 form), EIP-1271 `isValidSignature` for a contract.
    async fn check_signature(
        &self,
        from: Address,
        digest: B256,
        signature: &Bytes,
    ) -> Result<(), VerifyError> {
        let invalid = VerifyError::Permit2Signature { payer: from };
        let code = self
            .chain
            .provider()
            .get_code_at(from)
            .await
            .map_err(|e| VerifyError::rpc("payer code", e))?;
        if code.is_empty() {
            let parsed = match signature.len() {
                65 => Signature::try_from(signature.as_ref()).ok(),
                64 => Some(Signature::from_erc2098(signature.as_ref())),
                _ => None,
            };
            return match parsed.and_then(|s| s.recover_address_from_prehash(&digest).ok()) {
                Some(recovered) if recovered == from => Ok(()),
                _ => Err(invalid),
            };
        }
        let wallet = IErc1271::new(from, self.chain.provider());
        match wallet
            .isValidSignature(digest, signature.clone())
            .call()
            .await
        {
            Ok(magic) if magic.0 == ERC1271_MAGIC_VALUE => Ok(()),
            Ok(_) => Err(invalid),
            Err(alloy::contract::Error::TransportError(e)) if is_transport_failure(&e) => {
                Err(VerifyError::rpc("EIP-1271 isValidSignature", e))
            }
            Err(_) => Err(invalid),
        }
    }

    /// Whether Permit2 has recorded `nonce` of `owner` as used.
    pub async fn nonce_used(&self, owner: Address, nonce: U256) -> Result<bool, String> {
        let (word, bit) = nonce_position(nonce);
        let bitmap = IPermit2::new(PERMIT2_ADDRESS, self.chain.provider())
            .nonceBitmap(owner, word)
            .call()
            .await
            .map_err(|e| e.to_string())?;
        Ok(bitmap.bit(bit))
    }

    /// Sends the settlement (after the sponsored approval, if any) and returns its hash without
    /// waiting; `None` when the charge is zero and nothing is sent. An `upto` settlement goes
    /// out from the facilitator address its payer signed for.
    pub async fn submit<W: Permit2Witness>(
        &self,
        verified: &VerifiedPermit2<W>,
    ) -> Result<Option<B256>, SettleError> {
        if verified.amount.is_zero() {
            return Ok(None);
        }
        let sender = verified.payload.permit2_authorization.witness.sender();
        if let Some(Sponsorship::Erc20Approval(approval)) = &verified.sponsorship {
            self.relay_approval(approval).await?;
        }
        let permit = match &verified.sponsorship {
            Some(Sponsorship::Eip2612(p)) => Some(p),
            _ => None,
        };
        let data = W::settle_calldata(&verified.payload, verified.amount, permit);
        let tx = TransactionRequest::default()
            .with_to(W::PROXY)
            .with_input(data);
        let hash = match sender {
            Some(from) => self.chain.send_from(from, tx, GAS_MARGIN_PERCENT).await?,
            None => self.chain.send(tx, GAS_MARGIN_PERCENT).await?,
        };
        tracing::info!(tx_hash = %hash, scheme = %W::SCHEME, amount = %verified.amount, "Permit2 settlement submitted");
        Ok(Some(hash))
    }

    /// Funds the payer's gas if short, broadcasts its signed approval and waits for it.
    async fn relay_approval(&self, approval: &SponsoredApproval) -> Result<(), SettleError> {
        let provider = self.chain.provider();
        let balance = provider
            .get_balance(approval.from)
            .await
            .map_err(|e| SettleError::Submit(format!("payer balance: {e}")))?;
        if balance < approval.max_cost {
            let deficit = approval.max_cost - balance;
            let fund = TransactionRequest::default()
                .with_to(approval.from)
                .with_value(deficit);
            let hash = self.chain.send(fund, 0).await?;
            let receipt = self.chain.wait_receipt(hash).await?;
            if !receipt.status() {
                return Err(SettleError::Sponsorship(format!(
                    "gas funding {hash} of {} reverted",
                    approval.from
                )));
            }
            tracing::info!(payer = %approval.from, wei = %deficit, "funded the payer's approval gas");
        }
        if let Err(e) = provider.send_raw_transaction(&approval.raw).await {
            // Already in the mempool (a retry) is fine; anything else is not.
            if !e.to_string().to_ascii_lowercase().contains("already known") {
                return Err(SettleError::Sponsorship(format!(
                    "broadcasting the approval: {e}"
                )));
            }
        }
        let receipt = self.chain.wait_receipt(approval.hash).await?;
        if !receipt.status() {
            return Err(SettleError::Sponsorship(format!(
                "approval {} reverted",
                approval.hash
            )));
        }
        Ok(())
    }

    /// Waits for `tx_hash` and checks it moved `amount` from the payer to the payee; on a
    /// receipt timeout, looks for the settlement by the Permit2 nonce instead.
    pub async fn await_settlement<W: Permit2Witness>(
        &self,
        payload: &Permit2Payload<W>,
        amount: U256,
        tx_hash: B256,
    ) -> Result<Settlement, SettleError> {
        match self.chain.wait_receipt(tx_hash).await {
            Ok(receipt) => self.check_receipt(payload, Some(amount), tx_hash, &receipt),
            Err(timeout @ SettleError::ReceiptTimeout { .. }) => {
                match self.find_settlement(payload).await {
                    Ok(Some(s)) => Ok(s),
                    _ => Err(timeout),
                }
            }
            Err(e) => Err(e),
        }
    }

    /// Finds the proxy transaction that used this payment's Permit2 nonce (a run that died
    /// between sending and recording): the nonce must be spent in Permit2's bitmap, and among
    /// the token's transfers from the payer to the payee, the one whose transaction called
    /// the proxy with this `(owner, nonce)` is it. `Ok(None)` when the nonce is unused, or was
    /// spent by something other than this proxy.
    pub async fn find_settlement<W: Permit2Witness>(
        &self,
        payload: &Permit2Payload<W>,
    ) -> Result<Option<Settlement>, SettleError> {
        let auth = &payload.permit2_authorization;
        let lookup = |e: &dyn std::fmt::Display| SettleError::Submit(e.to_string());
        if !self
            .nonce_used(auth.from, auth.nonce)
            .await
            .map_err(|e| lookup(&e))?
        {
            return Ok(None);
        }
        let provider = self.chain.provider();
        let filter = Filter::new()
            .address(auth.permitted.token)
            .event_signature(IErc20Permit2::Transfer::SIGNATURE_HASH)
            .topic1(auth.from.into_word())
            .topic2(auth.witness.to().into_word())
            .from_block(0u64);
        let logs = provider
            .get_logs(&filter)
            .await
            .map_err(|e| lookup(&format!("eth_getLogs: {e}")))?;
        let mut seen = HashSet::new();
        for tx_hash in logs.iter().filter_map(|l| l.transaction_hash) {
            if !seen.insert(tx_hash) {
                continue;
            }
            let Some(tx) = provider
                .get_transaction_by_hash(tx_hash)
                .await
                .map_err(|e| lookup(&format!("eth_getTransactionByHash: {e}")))?
            else {
                continue;
            };
            if tx.inner.to() != Some(W::PROXY) {
                continue;
            }
            if W::decode_settle(tx.inner.input()) != Some((auth.from, auth.nonce)) {
                continue;
            }
            let receipt = provider
                .get_transaction_receipt(tx_hash)
                .await
                .map_err(|e| lookup(&format!("eth_getTransactionReceipt: {e}")))?
                .ok_or_else(|| lookup(&format!("no receipt for logged tx {tx_hash}")))?;
            return self
                .check_receipt(payload, None, tx_hash, &receipt)
                .map(Some);
        }
        Ok(None)
    }

    /// The settlement `receipt` records: it succeeded and moved `amount` (any amount, when
    /// `None`) of the token from the payer to the payee.
    fn check_receipt<W: Permit2Witness>(
        &self,
        payload: &Permit2Payload<W>,
        amount: Option<U256>,
        tx_hash: B256,
        receipt: &TransactionReceipt,
    ) -> Result<Settlement, SettleError> {
        let auth = &payload.permit2_authorization;
        if !receipt.status() {
            tracing::warn!(%tx_hash, "Permit2 settlement reverted");
            return Err(SettleError::Reverted { tx_hash });
        }
        let moved = receipt.inner.logs().iter().find_map(|log| {
            if log.address() != auth.permitted.token {
                return None;
            }
            let t = log.log_decode::<IErc20Permit2::Transfer>().ok()?.inner.data;
            (t.from == auth.from
                && t.to == auth.witness.to()
                && amount.is_none_or(|a| a == t.value))
            .then_some(t.value)
        });
        let Some(value) = moved else {
            return Err(SettleError::TransferEventMismatch { tx_hash });
        };
        tracing::info!(%tx_hash, block = ?receipt.block_number, "Permit2 payment settled");
        Ok(Settlement {
            tx_hash,
            payer: auth.from,
            network: self.chain.network().clone(),
            amount: value,
            block_number: receipt.block_number,
        })
    }
}
