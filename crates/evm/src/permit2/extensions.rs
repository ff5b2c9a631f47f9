//! The Permit2 gas-sponsoring extensions: how a payer without a Permit2 approval pays anyway.
//!
//! - `eip2612GasSponsoring`: the token has EIP-2612 `permit`; the payer signs a permit for
//!   Permit2 and the facilitator submits it inside the proxy's `settleWithPermit`.
//! - `erc20ApprovalGasSponsoring`: the payer signs (but does not send) an `approve(Permit2, …)`
//!   transaction; the facilitator funds the payer's gas if needed, broadcasts it, then settles.
//!
//! Both travel in `PaymentPayload.extensions[key].info`. The client side builds them
//! ([`sign_eip2612_permit`], [`sign_erc20_approval`], [`attach`]); the facilitator side reads
//! and checks them ([`Sponsorship::from_payment`]) before the engine uses them.

use alloy::consensus::transaction::SignerRecoverable;
use alloy::consensus::{Transaction as _, TxEnvelope};
use alloy::eips::eip2718::Decodable2718;
use alloy::network::{EthereumWallet, TransactionBuilder};
use alloy::primitives::{Address, Bytes, B256, U256};
use alloy::providers::{Provider, ProviderBuilder};
use alloy::rpc::types::TransactionRequest;
use alloy::signers::Signer;
use alloy::sol_types::{eip712_domain, SolCall, SolStruct};
use serde::{Deserialize, Serialize};
use tollgate_proto::PaymentPayload;

use super::abi::{IErc20Permit2, Permit};
use super::PERMIT2_ADDRESS;
use crate::payload::decimal;
use crate::reason::EvmReason;

/// `extensions` key of the EIP-2612 sponsoring extension.
pub const EIP2612_GAS_SPONSORING: &str = "eip2612GasSponsoring";
/// `extensions` key of the ERC-20 approval sponsoring extension.
pub const ERC20_APPROVAL_GAS_SPONSORING: &str = "erc20ApprovalGasSponsoring";

/// Gas limit of the payer's sponsored approval transaction (the official SDK's).
pub const ERC20_APPROVE_GAS_LIMIT: u64 = 70_000;

/// `eip2612GasSponsoring.info`: an EIP-2612 permit letting Permit2 spend the payer's token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Eip2612Info {
    /// The token owner (the payer).
    pub from: Address,
    /// The token.
    pub asset: Address,
    /// Must be the canonical Permit2 contract.
    pub spender: Address,
    /// Approved amount.
    #[serde(with = "decimal")]
    pub amount: U256,
    /// The owner's EIP-2612 nonce on the token.
    #[serde(with = "decimal")]
    pub nonce: U256,
    /// Unix seconds after which the permit is void.
    #[serde(with = "decimal")]
    pub deadline: U256,
    /// 65-byte `r ‖ s ‖ v`.
    pub signature: Bytes,
    /// Schema version (`"1"`).
    pub version: String,
}

/// `erc20ApprovalGasSponsoring.info`: a signed, unsent `approve(Permit2, amount)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Erc20ApprovalInfo {
    /// The payer.
    pub from: Address,
    /// The token.
    pub asset: Address,
    /// Must be the canonical Permit2 contract.
    pub spender: Address,
    /// Approved amount.
    #[serde(with = "decimal")]
    pub amount: U256,
    /// The RLP (EIP-2718) encoded signed transaction.
    pub signed_transaction: Bytes,
    /// Schema version (`"1"`).
    pub version: String,
}

/// An EIP-2612 signature split as the proxies take it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SplitPermit {
    /// Approved amount.
    pub value: U256,
    /// Deadline.
    pub deadline: U256,
    /// `r`.
    pub r: B256,
    /// `s`.
    pub s: B256,
    /// `v` (27 or 28).
    pub v: u8,
}

/// A checked sponsored approval transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SponsoredApproval {
    /// The raw signed transaction, as broadcast.
    pub raw: Bytes,
    /// Its hash.
    pub hash: B256,
    /// The payer.
    pub from: Address,
    /// Most wei it can cost the payer (`gas × maxFeePerGas`).
    pub max_cost: U256,
    /// The approved amount.
    pub amount: U256,
    /// Its nonce.
    pub nonce: u64,
}

/// What a payment brings to stand in for a missing Permit2 approval.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sponsorship {
    /// An EIP-2612 permit for Permit2, submitted inside `settleWithPermit`.
    Eip2612(SplitPermit),
    /// A signed approval transaction the facilitator broadcasts before settling.
    Erc20Approval(SponsoredApproval),
}

/// A sponsoring extension that does not hold up, with the official SDK's reason code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ExtensionError {
    /// The reason code.
    pub reason: EvmReason,
    /// What is wrong.
    pub message: String,
}

fn refuse(reason: EvmReason, message: impl Into<String>) -> ExtensionError {
    ExtensionError {
        reason,
        message: message.into(),
    }
}

fn info_of(payment: &PaymentPayload, key: &str) -> Option<serde_json::Value> {
    payment
        .extensions
        .as_ref()
        .and_then(|e| e.get(key))
        .and_then(|x| x.get("info"))
        .cloned()
}

impl Sponsorship {
    /// The EIP-2612 extension of `payment`, checked against the payer, the token and the
    /// Permit2 address (its signature is proven by the simulation of `settleWithPermit`).
    /// `Ok(None)` when the payment carries none.
    pub fn eip2612(
        payment: &PaymentPayload,
        payer: Address,
        token: Address,
        now: u64,
        margin_secs: u64,
    ) -> Result<Option<Self>, ExtensionError> {
        let Some(info) = info_of(payment, EIP2612_GAS_SPONSORING) else {
            return Ok(None);
        };
        let info: Eip2612Info = serde_json::from_value(info).map_err(|e| {
            refuse(
                EvmReason::InvalidEip2612ExtensionFormat,
                format!("eip2612GasSponsoring.info: {e}"),
            )
        })?;
        if info.from != payer {
            return Err(refuse(
                EvmReason::Eip2612FromMismatch,
                format!("the permit's owner {} is not the payer {payer}", info.from),
            ));
        }
        if info.asset != token {
            return Err(refuse(
                EvmReason::Eip2612AssetMismatch,
                format!("the permit is for {}, the payment for {token}", info.asset),
            ));
        }
        if info.spender != PERMIT2_ADDRESS {
            return Err(refuse(
                EvmReason::Eip2612SpenderNotPermit2,
                format!("the permit approves {}, not Permit2", info.spender),
            ));
        }
        if info.deadline < U256::from(now.saturating_add(margin_secs)) {
            return Err(refuse(
                EvmReason::Eip2612DeadlineExpired,
                format!("the permit expires at {}", info.deadline),
            ));
        }
        if info.signature.len() != 65 {
            return Err(refuse(
                EvmReason::InvalidEip2612ExtensionFormat,
                format!(
                    "the permit signature has {} bytes, not 65",
                    info.signature.len()
                ),
            ));
        }
        let sig = &info.signature;
        let v = if sig[64] < 27 { sig[64] + 27 } else { sig[64] };
        Ok(Some(Self::Eip2612(SplitPermit {
            value: info.amount,
            deadline: info.deadline,
            r: B256::from_slice(&sig[..32]),
            s: B256::from_slice(&sig[32..64]),
            v,
        })))
    }

    /// The ERC-20 approval extension of `payment`: the signed transaction decoded, its signer
    /// recovered, and every field checked (the payer's, to the token, `approve(Permit2, n)`).
    /// The nonce against the chain is the engine's to check. `Ok(None)` when absent.
    pub fn erc20_approval(
        payment: &PaymentPayload,
        payer: Address,
        token: Address,
    ) -> Result<Option<Self>, ExtensionError> {
        use EvmReason as R;
        let Some(info) = info_of(payment, ERC20_APPROVAL_GAS_SPONSORING) else {
            return Ok(None);
        };
        let info: Erc20ApprovalInfo = serde_json::from_value(info).map_err(|e| {
            refuse(
                R::InvalidErc20ApprovalExtensionFormat,
                format!("erc20ApprovalGasSponsoring.info: {e}"),
            )
        })?;
        if info.from != payer {
            return Err(refuse(
                R::Erc20ApprovalFromMismatch,
                format!("the approval is from {}, the payer is {payer}", info.from),
            ));
        }
        if info.asset != token {
            return Err(refuse(
                R::Erc20ApprovalAssetMismatch,
                format!(
                    "the approval is for {}, the payment for {token}",
                    info.asset
                ),
            ));
        }
        if info.spender != PERMIT2_ADDRESS {
            return Err(refuse(
                R::Erc20ApprovalSpenderNotPermit2,
                format!("the approval names {}, not Permit2", info.spender),
            ));
        }
        let raw = info.signed_transaction.clone();
        let envelope = TxEnvelope::decode_2718(&mut raw.as_ref()).map_err(|e| {
            refuse(
                R::Erc20ApprovalTxParseFailed,
                format!("signed transaction: {e}"),
            )
        })?;
        if envelope.to() != Some(token) {
            return Err(refuse(
                R::Erc20ApprovalTxWrongTarget,
                format!(
                    "the transaction calls {:?}, not the token {token}",
                    envelope.to()
                ),
            ));
        }
        let input = envelope.input();
        if input.len() < 4 || input[..4] != IErc20Permit2::approveCall::SELECTOR {
            return Err(refuse(
                R::Erc20ApprovalTxWrongSelector,
                "the transaction does not call approve(address,uint256)",
            ));
        }
        let call = IErc20Permit2::approveCall::abi_decode(input).map_err(|e| {
            refuse(
                R::Erc20ApprovalTxInvalidCalldata,
                format!("approve calldata: {e}"),
            )
        })?;
        if call.spender != PERMIT2_ADDRESS {
            return Err(refuse(
                R::Erc20ApprovalTxWrongSpender,
                format!("the transaction approves {}, not Permit2", call.spender),
            ));
        }
        let signer = envelope.recover_signer().map_err(|e| {
            refuse(
                R::Erc20ApprovalTxInvalidSignature,
                format!("cannot recover the signer: {e}"),
            )
        })?;
        if signer != payer {
            return Err(refuse(
                R::Erc20ApprovalTxSignerMismatch,
                format!("the transaction is signed by {signer}, not the payer {payer}"),
            ));
        }
        let max_cost = U256::from(envelope.gas_limit()) * U256::from(envelope.max_fee_per_gas());
        Ok(Some(Self::Erc20Approval(SponsoredApproval {
            hash: *envelope.tx_hash(),
            raw,
            from: signer,
            max_cost,
            amount: call.amount,
            nonce: envelope.nonce(),
        })))
    }
}

/// Signs an EIP-2612 permit letting Permit2 spend `amount` of `token` (whose EIP-712 domain is
/// `name`/`version`) until `deadline`, reading the chain id and the owner's permit nonce from
/// `rpc_url`. The result goes into a payment with [`attach`]. The proxies require `amount` to
/// be the payment's permitted amount.
pub async fn sign_eip2612_permit<S: Signer + Send + Sync>(
    signer: &S,
    rpc_url: &str,
    token: Address,
    name: &str,
    version: &str,
    amount: U256,
    deadline: U256,
) -> Result<Eip2612Info, String> {
    let url = rpc_url.parse().map_err(|e| format!("RPC URL: {e}"))?;
    let provider = ProviderBuilder::new()
        .disable_recommended_fillers()
        .connect_http(url);
    let owner = signer.address();
    let chain_id = provider
        .get_chain_id()
        .await
        .map_err(|e| format!("reading the chain id: {e}"))?;
    let nonce = IErc20Permit2::new(token, &provider)
        .nonces(owner)
        .call()
        .await
        .map_err(|e| format!("reading the token's permit nonce: {e}"))?;
    let domain = eip712_domain! {
        name: name.to_owned(),
        version: version.to_owned(),
        chain_id: chain_id,
        verifying_contract: token,
    };
    let hash = Permit {
        owner,
        spender: PERMIT2_ADDRESS,
        value: amount,
        nonce,
        deadline,
    }
    .eip712_signing_hash(&domain);
    let signature = signer
        .sign_hash(&hash)
        .await
        .map_err(|e| format!("signing the permit: {e}"))?;
    Ok(Eip2612Info {
        from: owner,
        asset: token,
        spender: PERMIT2_ADDRESS,
        amount,
        nonce,
        deadline,
        signature: Bytes::from(signature.as_bytes().to_vec()),
        version: "1".to_owned(),
    })
}

/// Signs (without sending) the payer's `approve(Permit2, amount)` on `token`, with the payer's
/// current nonce and the chain's current fees from `rpc_url`, for the ERC-20 approval
/// sponsoring extension.
pub async fn sign_erc20_approval<S>(
    signer: S,
    rpc_url: &str,
    chain_id: u64,
    token: Address,
    amount: U256,
) -> Result<Erc20ApprovalInfo, String>
where
    S: alloy::network::TxSigner<alloy::primitives::Signature> + Send + Sync + 'static,
{
    use alloy::eips::eip2718::Encodable2718;
    let url = rpc_url.parse().map_err(|e| format!("RPC URL: {e}"))?;
    let provider = ProviderBuilder::new()
        .disable_recommended_fillers()
        .connect_http(url);
    let from = signer.address();
    let nonce = provider
        .get_transaction_count(from)
        .pending()
        .await
        .map_err(|e| format!("nonce: {e}"))?;
    let fees = provider
        .estimate_eip1559_fees()
        .await
        .map_err(|e| format!("fees: {e}"))?;
    let tx = TransactionRequest::default()
        .with_from(from)
        .with_to(token)
        .with_input(
            IErc20Permit2::approveCall {
                spender: PERMIT2_ADDRESS,
                amount,
            }
            .abi_encode(),
        )
        .with_nonce(nonce)
        .with_chain_id(chain_id)
        .with_gas_limit(ERC20_APPROVE_GAS_LIMIT)
        .with_max_fee_per_gas(fees.max_fee_per_gas)
        .with_max_priority_fee_per_gas(fees.max_priority_fee_per_gas);
    let wallet = EthereumWallet::from(signer);
    let envelope = <TransactionRequest as alloy::network::NetworkTransactionBuilder<
        alloy::network::Ethereum,
    >>::build(tx, &wallet)
    .await
    .map_err(|e| format!("signing the approval: {e}"))?;
    Ok(Erc20ApprovalInfo {
        from,
        asset: token,
        spender: PERMIT2_ADDRESS,
        amount,
        signed_transaction: Bytes::from(envelope.encoded_2718()),
        version: "1".to_owned(),
    })
}

/// Puts an extension's `info` into `payment.extensions[key]` (replacing one already there).
pub fn attach(payment: &mut PaymentPayload, key: &str, info: &impl Serialize) {
    let info = serde_json::to_value(info).unwrap_or(serde_json::Value::Null);
    payment
        .extensions
        .get_or_insert_with(Default::default)
        .insert(key.to_owned(), serde_json::json!({ "info": info }));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_specs_eip2612_example_reads() {
        let info: Eip2612Info = serde_json::from_value(serde_json::json!({
            "from": "0x857b06519E91e3A54538791bDbb0E22373e36b66",
            "asset": "0x036CbD53842c5426634e7929541eC2318f3dCF7e",
            "spender": "0x000000000022D473030F116dDEE9F6B43aC78BA3",
            "amount": "115792089237316195423570985008687907853269984665640564039457584007913129639935",
            "nonce": "0",
            "deadline": "1740672154",
            "signature": "0x2d6a7588d6acca505cbf0d9a4a227e0c52c6c34008c8e8986a1283259764173608a2ce6496642e377d6da8dbbf5836e9bd15092f9ecab05ded3d6293af148b571c",
            "version": "1"
        }))
        .unwrap();
        assert_eq!(info.amount, U256::MAX);
        assert_eq!(info.spender, PERMIT2_ADDRESS);
    }
}
