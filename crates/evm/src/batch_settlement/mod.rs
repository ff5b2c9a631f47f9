//! The `batch-settlement` scheme on EVM: unidirectional payment channels in the canonical
//! `x402BatchSettlement` contract (`specs/schemes/batch-settlement/scheme_batch_settlement_evm.md`).
//!
//! A payer deposits once into a channel and then signs one off-chain cumulative voucher per
//! request; the server checks each voucher locally (a signature recovery, no chain read when the
//! channel names an EOA `payerAuthorizer`) and claims the latest voucher of many channels in one
//! transaction. This module is the scheme's chain half:
//!
//! - [`abi`] — the contract's ABI and the scheme's EIP-712 types (one set of Rust types);
//! - [`types`] — the wire types: [`ChannelConfig`], [`SignedVoucher`], the payload kinds
//!   ([`BatchPayload`]), [`ChannelSnapshot`];
//! - here — the channel id and the digests ([`channel_id`], [`voucher_digest`],
//!   [`refund_digest`], [`claim_batch_digest`]), signing ([`sign_voucher`], [`sign_refund`],
//!   [`sign_claim_batch`], [`sign_erc3009_deposit`], [`sign_permit2_deposit`]), the collectors'
//!   `collectorData` ([`Erc3009DepositAuthorization::collector_data`],
//!   [`Permit2DepositAuthorization::collector_data`]) and the local voucher check
//!   ([`VoucherVerifier`]).
//!
//! ```
//! use alloy::primitives::{address, B256};
//! use alloy::signers::local::PrivateKeySigner;
//! use tollgate_evm::batch_settlement::{channel_id, sign_voucher, ChannelConfig, VoucherVerifier};
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let payer = PrivateKeySigner::random();
//! let config = ChannelConfig {
//!     payer: payer.address(),
//!     payer_authorizer: payer.address(),
//!     receiver: address!("0x209693Bc6afc0C5328bA36FaF03C514EF312287C"),
//!     receiver_authorizer: address!("0x857b06519E91e3A54538791bDbb0E22373e36b66"),
//!     token: address!("0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913"),
//!     withdraw_delay: 900,
//!     salt: B256::ZERO,
//! };
//! let id = channel_id(&config, 8453);
//! // The payer signs cumulative ceilings: 1,000, then 2,000, ...
//! let voucher = sign_voucher(&payer, id, 2_000, 8453).await.unwrap();
//! // The server checks it with one signature recovery, no chain read.
//! VoucherVerifier::new(8453).verify(&config, &voucher).unwrap();
//! # });
//! ```

pub mod abi;
pub mod channels;
pub mod facilitator;
pub mod payer;
pub mod reason;
pub mod server;
pub mod session;
pub mod types;

use alloy::primitives::{address, keccak256, Address, Bytes, B256, U256};
use alloy::signers::Signer;
use alloy::sol_types::{eip712_domain, Eip712Domain, SolStruct, SolValue};

use crate::signature::recover_signer;

pub use facilitator::{BatchSettlementEvmFacilitator, ReceiverAuthorizer, VerifiedBatch};
pub use payer::{ChannelPayError, ChannelPayer, ChannelPayment, DepositMade, PayerChannel};
pub use reason::BatchReason;
pub use server::BatchSettlementEvmServer;
pub use session::{BatchSettlementEvmClient, DEFAULT_DEPOSIT_REQUESTS};
pub use types::{
    BatchPayload, ChannelConfig, ChannelSnapshot, ClaimPayload, ClaimRow, ClaimVoucher, Deposit,
    DepositAuthorization, DepositPayload, DepositWitness, Erc3009DepositAuthorization,
    Permit2DepositAuthorization, RefundPayload, SettlePayload, SignedVoucher, VoucherPayload,
    VoucherState,
};

/// The scheme's wire name.
pub const SCHEME: &str = "batch-settlement";

/// The canonical `x402BatchSettlement` (the same address on every chain).
pub const BATCH_SETTLEMENT: Address = address!("0x4020074e9dF2ce1deE5A9C1b5c3f541D02a10003");
/// The canonical `ERC3009DepositCollector`.
pub const ERC3009_DEPOSIT_COLLECTOR: Address =
    address!("0x4020806089470a89826cB9fB1f4059150b550004");
/// The canonical `Permit2DepositCollector`.
pub const PERMIT2_DEPOSIT_COLLECTOR: Address =
    address!("0x4020425FAf3B746C082C2f942b4E5159887B0005");

/// The shortest withdraw delay the contract accepts: 15 minutes.
pub const MIN_WITHDRAW_DELAY: u64 = 900;
/// The longest withdraw delay the contract accepts: 30 days.
pub const MAX_WITHDRAW_DELAY: u64 = 2_592_000;

/// The scheme's EIP-712 domain on `chain_id`: `{name: "x402 Batch Settlement", version: "1"}`
/// with the canonical contract as verifying contract.
pub fn domain(chain_id: u64) -> Eip712Domain {
    eip712_domain! {
        name: "x402 Batch Settlement",
        version: "1",
        chain_id: chain_id,
        verifying_contract: BATCH_SETTLEMENT,
    }
}

/// The EIP-712 digest of `value` under [`domain`]`(chain_id)`:
/// `keccak256(0x1901 ‖ domainSeparator ‖ hashStruct(value))`, the separator computed once per
/// thread and chain rather than for every voucher a paywall checks.
fn signing_hash<S: SolStruct>(value: &S, chain_id: u64) -> B256 {
    thread_local! {
        static SEPARATOR: std::cell::Cell<Option<(u64, B256)>> = const { std::cell::Cell::new(None) };
    }
    let separator = SEPARATOR.with(|cached| match cached.get() {
        Some((id, separator)) if id == chain_id => separator,
        _ => {
            let separator = domain(chain_id).separator();
            cached.set(Some((chain_id, separator)));
            separator
        }
    });
    let mut bytes = [0u8; 66];
    bytes[..2].copy_from_slice(&[0x19, 0x01]);
    bytes[2..34].copy_from_slice(separator.as_slice());
    bytes[34..].copy_from_slice(value.eip712_hash_struct().as_slice());
    keccak256(bytes)
}

/// The channel id of `config` on `chain_id`: its EIP-712 hash under [`domain`], as the
/// contract's `getChannelId` computes it.
pub fn channel_id(config: &ChannelConfig, chain_id: u64) -> B256 {
    signing_hash(&config.to_abi(), chain_id)
}

/// The digest a payer signs for a voucher with cumulative ceiling `max_claimable`.
pub fn voucher_digest(channel_id: B256, max_claimable: u128, chain_id: u64) -> B256 {
    signing_hash(
        &abi::Voucher {
            channelId: channel_id,
            maxClaimableAmount: max_claimable,
        },
        chain_id,
    )
}

/// The digest a receiver authorizer signs for `refundWithSignature`.
pub fn refund_digest(channel_id: B256, nonce: U256, amount: u128, chain_id: u64) -> B256 {
    signing_hash(
        &abi::Refund {
            channelId: channel_id,
            nonce,
            amount,
        },
        chain_id,
    )
}

/// The digest a receiver authorizer signs for `claimWithSignature` over `rows`.
pub fn claim_batch_digest(rows: &[ClaimRow], chain_id: u64) -> B256 {
    let batch = abi::ClaimBatch {
        claims: rows
            .iter()
            .map(|row| abi::ClaimEntry {
                channelId: channel_id(&row.voucher.channel, chain_id),
                maxClaimableAmount: row.voucher.max_claimable_amount,
                totalClaimed: row.total_claimed,
            })
            .collect(),
    };
    signing_hash(&batch, chain_id)
}

/// Signs a voucher for `channel_id` with cumulative ceiling `max_claimable`.
pub async fn sign_voucher<S: Signer + Send + Sync + ?Sized>(
    signer: &S,
    channel_id: B256,
    max_claimable: u128,
    chain_id: u64,
) -> Result<SignedVoucher, alloy::signers::Error> {
    let signature = signer
        .sign_hash(&voucher_digest(channel_id, max_claimable, chain_id))
        .await?;
    Ok(SignedVoucher {
        channel_id,
        max_claimable_amount: max_claimable,
        signature: Bytes::from(signature.as_bytes().to_vec()),
    })
}

/// Signs a `Refund` (receiver authorizer).
pub async fn sign_refund<S: Signer + Send + Sync + ?Sized>(
    signer: &S,
    channel_id: B256,
    nonce: U256,
    amount: u128,
    chain_id: u64,
) -> Result<Bytes, alloy::signers::Error> {
    let signature = signer
        .sign_hash(&refund_digest(channel_id, nonce, amount, chain_id))
        .await?;
    Ok(Bytes::from(signature.as_bytes().to_vec()))
}

/// Signs a `ClaimBatch` over `rows` (receiver authorizer).
pub async fn sign_claim_batch<S: Signer + Send + Sync + ?Sized>(
    signer: &S,
    rows: &[ClaimRow],
    chain_id: u64,
) -> Result<Bytes, alloy::signers::Error> {
    let signature = signer
        .sign_hash(&claim_batch_digest(rows, chain_id))
        .await?;
    Ok(Bytes::from(signature.as_bytes().to_vec()))
}

/// The EIP-3009 nonce of a deposit into `channel_id` with `salt`:
/// `keccak256(abi.encode(channelId, uint256(salt)))`, as the ERC-3009 collector recomputes it.
pub fn erc3009_deposit_nonce(channel_id: B256, salt: B256) -> B256 {
    keccak256((channel_id, U256::from_be_bytes(salt.0)).abi_encode())
}

/// The ERC-3009 deposit's terms, before signing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Erc3009DepositTerms {
    /// The channel funded.
    pub channel_id: B256,
    /// The payer.
    pub from: Address,
    /// Atomic units.
    pub amount: u128,
    /// Unix seconds from which the authorization is valid.
    pub valid_after: u64,
    /// Unix seconds until which it is valid.
    pub valid_before: u64,
    /// Random salt (hashed with the channel id into the EIP-3009 nonce).
    pub salt: B256,
}

impl Erc3009DepositTerms {
    /// The `ReceiveWithAuthorization` digest under the token's EIP-712 `token_domain`.
    pub fn digest(&self, token_domain: &Eip712Domain) -> B256 {
        abi::ReceiveWithAuthorization {
            from: self.from,
            to: ERC3009_DEPOSIT_COLLECTOR,
            value: U256::from(self.amount),
            validAfter: U256::from(self.valid_after),
            validBefore: U256::from(self.valid_before),
            nonce: erc3009_deposit_nonce(self.channel_id, self.salt),
        }
        .eip712_signing_hash(token_domain)
    }
}

/// Signs an ERC-3009 deposit (the payer's `ReceiveWithAuthorization` to the collector).
pub async fn sign_erc3009_deposit<S: Signer + Send + Sync + ?Sized>(
    signer: &S,
    terms: &Erc3009DepositTerms,
    token_domain: &Eip712Domain,
) -> Result<Erc3009DepositAuthorization, alloy::signers::Error> {
    let signature = signer.sign_hash(&terms.digest(token_domain)).await?;
    Ok(Erc3009DepositAuthorization {
        valid_after: U256::from(terms.valid_after),
        valid_before: U256::from(terms.valid_before),
        salt: terms.salt,
        signature: Bytes::from(signature.as_bytes().to_vec()),
    })
}

impl Erc3009DepositAuthorization {
    /// The collector's `collectorData`:
    /// `abi.encode(validAfter, validBefore, uint256(salt), signature)`.
    pub fn collector_data(&self) -> Bytes {
        (
            self.valid_after,
            self.valid_before,
            U256::from_be_bytes(self.salt.0),
            self.signature.clone(),
        )
            .abi_encode_params()
            .into()
    }
}

impl Permit2DepositAuthorization {
    /// The EIP-712 digest the payer signs (Permit2's domain on `chain_id`).
    pub fn digest(&self, chain_id: u64) -> B256 {
        abi::PermitWitnessTransferFrom {
            permitted: abi::TokenPermissions {
                token: self.permitted.token,
                amount: self.permitted.amount,
            },
            spender: self.spender,
            nonce: self.nonce,
            deadline: self.deadline,
            witness: abi::DepositWitness {
                channelId: self.witness.channel_id,
            },
        }
        .eip712_signing_hash(&crate::permit2::permit2_domain(chain_id))
    }

    /// The collector's `collectorData`: `abi.encode(nonce, deadline, signature, eip2612)`,
    /// where `eip2612` is the optional EIP-2612 approval of Permit2
    /// (`abi.encode(value, deadline, v, r, s)`), empty when absent.
    pub fn collector_data(&self, eip2612: Bytes) -> Bytes {
        (self.nonce, self.deadline, self.signature.clone(), eip2612)
            .abi_encode_params()
            .into()
    }
}

/// Signs a Permit2 deposit of `amount` of `token` into `channel_id` by `signer`, with the
/// Permit2 deposit collector as spender.
pub async fn sign_permit2_deposit<S: Signer + Send + Sync + ?Sized>(
    signer: &S,
    channel_id: B256,
    token: Address,
    amount: u128,
    nonce: U256,
    deadline: u64,
    chain_id: u64,
) -> Result<Permit2DepositAuthorization, alloy::signers::Error> {
    let mut auth = Permit2DepositAuthorization {
        from: signer.address(),
        permitted: crate::permit2::TokenPermissions {
            token,
            amount: U256::from(amount),
        },
        spender: PERMIT2_DEPOSIT_COLLECTOR,
        nonce,
        deadline: U256::from(deadline),
        witness: DepositWitness { channel_id },
        signature: Bytes::new(),
    };
    let signature = signer.sign_hash(&auth.digest(chain_id)).await?;
    auth.signature = Bytes::from(signature.as_bytes().to_vec());
    Ok(auth)
}

/// The scheme payload of `payment`. Reads its `type` first, so a malformed payload of a known
/// kind is refused with that kind's code and an unknown kind with `payload_type`.
pub fn parse_payload(
    payment: &tollgate_proto::PaymentPayload,
) -> Result<BatchPayload, (BatchReason, String)> {
    let kind = payment
        .payload
        .get("type")
        .and_then(|t| t.as_str())
        .unwrap_or_default();
    let malformed = match kind {
        "deposit" => BatchReason::DepositPayload,
        "voucher" => BatchReason::VoucherPayload,
        "refund" => BatchReason::RefundPayload,
        "claim" => BatchReason::ClaimPayload,
        "settle" => BatchReason::SettlePayload,
        other => {
            return Err((
                BatchReason::PayloadType,
                format!("payload type {other:?} is not deposit, voucher, refund, claim or settle"),
            ))
        }
    };
    // Read in place: the gate parses a voucher at verification and again at settlement.
    <BatchPayload as serde::Deserialize>::deserialize(&payment.payload)
        .map_err(|e| (malformed, format!("{kind} payload: {e}")))
}

/// The spec's verification rules 1–5, which need no chain: `config` is the voucher's channel
/// (its EIP-712 hash on `chain_id` is the voucher's channel id) and matches the requirements —
/// token = `asset`, receiver = `payTo`, receiver authorizer = `extra.receiverAuthorizer`,
/// withdraw delay = `extra.withdrawDelay` and within 15 minutes – 30 days. Returns the channel
/// id, or the refusal's reason and message. Shared by the facilitator and the seller's
/// channel manager, so both refuse the same payloads for the same reasons.
pub fn check_terms(
    config: &ChannelConfig,
    voucher: &SignedVoucher,
    requirements: &tollgate_proto::PaymentRequirements,
    chain_id: u64,
) -> Result<B256, (BatchReason, String)> {
    let id = channel_id(config, chain_id);
    if id != voucher.channel_id {
        return Err((
            BatchReason::ChannelIdMismatch,
            format!(
                "channel config hashes to {id}, voucher names {}",
                voucher.channel_id
            ),
        ));
    }
    check_requirements(config, requirements)?;
    Ok(id)
}

/// Rules 2–5 of [`check_terms`]: the channel's token, receiver, receiver authorizer and
/// withdraw delay match the requirements. For a caller that already bound the config to its
/// channel id (a channel manager holding the config under the id it hashed to).
pub fn check_requirements(
    config: &ChannelConfig,
    requirements: &tollgate_proto::PaymentRequirements,
) -> Result<(), (BatchReason, String)> {
    use crate::domain::parse_address;
    if parse_address(&requirements.asset) != Ok(config.token) {
        return Err((
            BatchReason::TokenMismatch,
            format!(
                "channel token {} is not the asset {}",
                config.token, requirements.asset
            ),
        ));
    }
    if parse_address(&requirements.pay_to) != Ok(config.receiver) {
        return Err((
            BatchReason::ReceiverMismatch,
            format!(
                "channel receiver {} is not payTo {}",
                config.receiver, requirements.pay_to
            ),
        ));
    }
    let authorizer = requirements.extra_str("receiverAuthorizer");
    if authorizer.map(parse_address) != Some(Ok(config.receiver_authorizer)) {
        return Err((
            BatchReason::ReceiverAuthorizerMismatch,
            format!(
                "channel receiver authorizer {} is not extra.receiverAuthorizer {authorizer:?}",
                config.receiver_authorizer
            ),
        ));
    }
    let delay = requirements
        .extra
        .as_ref()
        .and_then(|e| e.get("withdrawDelay"))
        .and_then(|d| d.as_u64());
    if delay != Some(config.withdraw_delay) {
        return Err((
            BatchReason::WithdrawDelayMismatch,
            format!(
                "channel withdraw delay {} is not extra.withdrawDelay {delay:?}",
                config.withdraw_delay
            ),
        ));
    }
    if !config.withdraw_delay_in_range() {
        return Err((
            BatchReason::WithdrawDelayOutOfRange,
            format!(
                "withdraw delay {} is outside 900 s – 30 days",
                config.withdraw_delay
            ),
        ));
    }
    Ok(())
}

/// The signer of `digest` as `x402BatchSettlement` recovers it: a 65-byte `r ‖ s ‖ v` with
/// `v` 27 or 28 (and, with `compact`, a 64-byte EIP-2098 `r ‖ vs`), low `s` only; `None` for
/// anything the contract refuses.
pub(crate) fn recover_strict(signature: &[u8], digest: &B256, compact: bool) -> Option<Address> {
    let parsed = match signature.len() {
        65 if matches!(signature[64], 27 | 28) => {
            alloy::primitives::Signature::from_raw(signature).ok()?
        }
        64 if compact => alloy::primitives::Signature::from_erc2098(signature),
        _ => return None,
    };
    if parsed.normalize_s().is_some() {
        return None;
    }
    recover_signer(&parsed, digest)
}

/// Why a voucher fails the local check. Each maps to the scheme's reason code
/// ([`VoucherError::reason`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VoucherError {
    /// The config does not hash to the voucher's channel id.
    #[error("channel config hashes to {computed}, not the voucher's channel id {claimed}")]
    ChannelIdMismatch {
        /// What the config hashes to.
        computed: B256,
        /// What the voucher names.
        claimed: B256,
    },
    /// The signature does not recover to the channel's payer authorizer.
    #[error("voucher signature is not by the payer authorizer {expected}")]
    Signature {
        /// The payer authorizer.
        expected: Address,
    },
    /// The channel has no payer authorizer: its vouchers are checked against the payer with
    /// EIP-1271 when it has code, which takes a chain read (the facilitator's `/verify`).
    #[error("channel has no payer authorizer; its vouchers need an on-chain (EIP-1271) check")]
    NeedsChain,
}

impl VoucherError {
    /// The x402 reason code.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::ChannelIdMismatch { .. } => "invalid_batch_settlement_evm_channel_id_mismatch",
            Self::Signature { .. } => "invalid_batch_settlement_evm_voucher_signature",
            Self::NeedsChain => "invalid_batch_settlement_evm_voucher_signature",
        }
    }
}

/// The server's local voucher check: the config is the voucher's channel and the signature is
/// the payer authorizer's. One keccak pass and one public-key recovery; no chain read, so a
/// paywall can take a voucher-paid request at about the cost of an unpaid one.
///
/// What it does not check, and who does: that the channel holds enough (`maxClaimableAmount ≤
/// balance`, against the mirrored on-chain state) and that the ceiling is the expected
/// cumulative amount (the channel manager's state).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VoucherVerifier {
    chain_id: u64,
}

impl VoucherVerifier {
    /// A verifier for vouchers on `chain_id`.
    pub fn new(chain_id: u64) -> Self {
        Self { chain_id }
    }

    /// Checks `voucher` against `config`.
    pub fn verify(
        &self,
        config: &ChannelConfig,
        voucher: &SignedVoucher,
    ) -> Result<(), VoucherError> {
        let computed = channel_id(config, self.chain_id);
        if computed != voucher.channel_id {
            return Err(VoucherError::ChannelIdMismatch {
                computed,
                claimed: voucher.channel_id,
            });
        }
        self.verify_signature(config, voucher)
    }

    /// Checks only the signature, for a caller that already bound `voucher.channel_id` to
    /// `config` (a channel manager holding the config under its id).
    pub fn verify_signature(
        &self,
        config: &ChannelConfig,
        voucher: &SignedVoucher,
    ) -> Result<(), VoucherError> {
        if config.payer_authorizer == Address::ZERO {
            return Err(VoucherError::NeedsChain);
        }
        let digest = voucher_digest(
            voucher.channel_id,
            voucher.max_claimable_amount,
            self.chain_id,
        );
        // The contract accepts 65-byte and EIP-2098 64-byte signatures for an EOA authorizer.
        match recover_strict(&voucher.signature, &digest, true) {
            Some(signer) if signer == config.payer_authorizer => Ok(()),
            _ => Err(VoucherError::Signature {
                expected: config.payer_authorizer,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cached_separator_digests_are_alloys_on_every_chain() {
        // Alternating chains on one thread: the cached separator must follow the chain.
        for chain_id in [8453u64, 137, 8453, 31337] {
            let voucher = abi::Voucher {
                channelId: B256::repeat_byte(7),
                maxClaimableAmount: 1_234,
            };
            assert_eq!(
                voucher_digest(B256::repeat_byte(7), 1_234, chain_id),
                voucher.eip712_signing_hash(&domain(chain_id))
            );
            let refund = abi::Refund {
                channelId: B256::repeat_byte(9),
                nonce: U256::from(3),
                amount: 55,
            };
            assert_eq!(
                refund_digest(B256::repeat_byte(9), U256::from(3), 55, chain_id),
                refund.eip712_signing_hash(&domain(chain_id))
            );
        }
    }
}
