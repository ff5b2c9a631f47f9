//! The scheme's wire types: the channel config, the signed voucher, the five payload kinds
//! (`deposit`, `voucher`, `refund` from the client; `claim`, `settle` from the server), the
//! channel snapshot servers and facilitators report, and the payment requirements' `extra`.
//!
//! Types are strict: a payload whose `type` is not one of the five, an amount that is not a
//! canonical decimal `uint128`, a withdraw delay that does not fit `uint40`, or a deposit with
//! both or neither authorization fails to deserialize, so nothing downstream meets such a value.

use alloy::primitives::{Address, Bytes, B256, U256};
use serde::{Deserialize, Serialize};

use super::abi;

/// Serde for `u128` amounts (`uint128` on chain) as canonical decimal strings.
pub(crate) mod amount {
    use alloy::primitives::U256;
    use serde::{de::Error, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &u128, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&value.to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u128, D::Error> {
        let wide: U256 = crate::payload::decimal::deserialize(d)?;
        u128::try_from(wide).map_err(|_| D::Error::custom(format!("{wide} does not fit uint128")))
    }
}

/// Serde for an optional `u128` amount.
pub(crate) mod opt_amount {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &Option<u128>, s: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(v) => super::amount::serialize(v, s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u128>, D::Error> {
        #[derive(Deserialize)]
        struct Wrap(#[serde(with = "super::amount")] u128);
        Ok(Option::<Wrap>::deserialize(d)?.map(|w| w.0))
    }
}

/// Serde for an optional `U256` as a canonical decimal string.
mod opt_u256 {
    use alloy::primitives::U256;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &Option<U256>, s: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(v) => crate::payload::decimal::serialize(v, s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<U256>, D::Error> {
        #[derive(Deserialize)]
        struct Wrap(#[serde(with = "crate::payload::decimal")] U256);
        Ok(Option::<Wrap>::deserialize(d)?.map(|w| w.0))
    }
}

/// Serde for a `uint40` withdraw delay written as a JSON number.
mod delay {
    use serde::{de::Error, Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &u64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(*value)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        let v = u64::deserialize(d)?;
        if v >= 1 << 40 {
            return Err(D::Error::custom(format!(
                "withdrawDelay {v} does not fit uint40"
            )));
        }
        Ok(v)
    }
}

/// A channel's immutable parameters (`payload.channelConfig`). Its EIP-712 hash is the channel
/// id ([`super::channel_id`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ChannelConfig {
    /// Whose tokens fund the channel.
    pub payer: Address,
    /// The EOA that signs vouchers, or zero: vouchers are then checked against `payer`
    /// (EIP-1271 when the payer is a contract wallet, which needs a chain read).
    pub payer_authorizer: Address,
    /// Where claimed funds are settled to (`payTo`).
    pub receiver: Address,
    /// Signs claim batches and refunds (`extra.receiverAuthorizer`).
    pub receiver_authorizer: Address,
    /// The ERC-20 (`asset`).
    pub token: Address,
    /// Seconds a timed withdrawal waits (`extra.withdrawDelay`), 900 to 2,592,000.
    #[serde(with = "delay")]
    pub withdraw_delay: u64,
    /// The payer's choice, to tell apart channels with otherwise equal parameters.
    pub salt: B256,
}

impl ChannelConfig {
    /// The config as the contract's ABI struct (which is also its EIP-712 struct).
    pub fn to_abi(&self) -> abi::ChannelConfig {
        abi::ChannelConfig {
            payer: self.payer,
            payerAuthorizer: self.payer_authorizer,
            receiver: self.receiver,
            receiverAuthorizer: self.receiver_authorizer,
            token: self.token,
            // `delay::deserialize` and the constructors keep it below 2^40.
            withdrawDelay: alloy::primitives::Uint::<40, 1>::from(
                self.withdraw_delay & ((1 << 40) - 1),
            ),
            salt: self.salt,
        }
    }

    /// Whether the withdraw delay is inside the contract's bounds (15 minutes to 30 days).
    pub fn withdraw_delay_in_range(&self) -> bool {
        (super::MIN_WITHDRAW_DELAY..=super::MAX_WITHDRAW_DELAY).contains(&self.withdraw_delay)
    }
}

/// A payer-signed cumulative voucher (`payload.voucher`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SignedVoucher {
    /// The channel id.
    pub channel_id: B256,
    /// The cumulative ceiling the receiver may claim, in atomic units.
    #[serde(with = "amount")]
    pub max_claimable_amount: u128,
    /// EIP-712 `Voucher` signature by the payer authorizer (65 bytes) or, with a zero payer
    /// authorizer, by the payer (any bytes for an EIP-1271 wallet).
    pub signature: Bytes,
}

/// An ERC-3009 deposit authorization (`deposit.authorization.erc3009Authorization`): the payer's
/// `ReceiveWithAuthorization` to the ERC-3009 deposit collector, whose nonce is
/// `keccak256(abi.encode(channelId, salt))`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Erc3009DepositAuthorization {
    /// Unix seconds from which the authorization is valid.
    #[serde(with = "crate::payload::decimal")]
    pub valid_after: U256,
    /// Unix seconds until which it is valid (exclusive).
    #[serde(with = "crate::payload::decimal")]
    pub valid_before: U256,
    /// The payer's random salt, hashed with the channel id into the EIP-3009 nonce.
    pub salt: B256,
    /// The `ReceiveWithAuthorization` signature.
    pub signature: Bytes,
}

/// A Permit2 deposit authorization (`deposit.authorization.permit2Authorization`): the payer's
/// `PermitWitnessTransferFrom` with the Permit2 deposit collector as spender and the channel as
/// witness.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Permit2DepositAuthorization {
    /// The payer (Permit2's `owner`).
    pub from: Address,
    /// Token and amount (the deposit amount exactly).
    pub permitted: crate::permit2::TokenPermissions,
    /// The Permit2 deposit collector.
    pub spender: Address,
    /// Permit2 unordered nonce, decimal.
    #[serde(with = "crate::payload::decimal")]
    pub nonce: U256,
    /// Unix seconds after which the signature is void.
    #[serde(with = "crate::payload::decimal")]
    pub deadline: U256,
    /// The channel the deposit funds.
    pub witness: DepositWitness,
    /// The Permit2 signature.
    pub signature: Bytes,
}

/// The Permit2 deposit's witness.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DepositWitness {
    /// The channel id.
    pub channel_id: B256,
}

/// How a deposit pulls the payer's tokens: exactly one of the two.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "AuthorizationWire", into = "AuthorizationWire")]
pub enum DepositAuthorization {
    /// EIP-3009 `receiveWithAuthorization` (USDC).
    Erc3009(Erc3009DepositAuthorization),
    /// Permit2 (any ERC-20).
    Permit2(Permit2DepositAuthorization),
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct AuthorizationWire {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    erc3009_authorization: Option<Erc3009DepositAuthorization>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    permit2_authorization: Option<Permit2DepositAuthorization>,
}

impl TryFrom<AuthorizationWire> for DepositAuthorization {
    type Error = &'static str;
    fn try_from(w: AuthorizationWire) -> Result<Self, Self::Error> {
        match (w.erc3009_authorization, w.permit2_authorization) {
            (Some(a), None) => Ok(Self::Erc3009(a)),
            (None, Some(a)) => Ok(Self::Permit2(a)),
            (None, None) => Err(
                "deposit authorization has neither erc3009Authorization nor permit2Authorization",
            ),
            (Some(_), Some(_)) => {
                Err("deposit authorization has both erc3009Authorization and permit2Authorization")
            }
        }
    }
}

impl From<DepositAuthorization> for AuthorizationWire {
    fn from(a: DepositAuthorization) -> Self {
        match a {
            DepositAuthorization::Erc3009(a) => Self {
                erc3009_authorization: Some(a),
                permit2_authorization: None,
            },
            DepositAuthorization::Permit2(a) => Self {
                erc3009_authorization: None,
                permit2_authorization: Some(a),
            },
        }
    }
}

/// A deposit (`payload.deposit`): how much and the payer's authorization to pull it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Deposit {
    /// Atomic units credited to the channel.
    #[serde(with = "amount")]
    pub amount: u128,
    /// The pull authorization.
    pub authorization: DepositAuthorization,
}

/// One channel's row of a server-authored claim (`claims[]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClaimRow {
    /// The voucher with its full channel config.
    pub voucher: ClaimVoucher,
    /// The payer's voucher signature.
    pub signature: Bytes,
    /// The cumulative amount claimed (at most the voucher's ceiling).
    #[serde(with = "amount")]
    pub total_claimed: u128,
}

/// A claim row's voucher: the config (not only its id) and the ceiling.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClaimVoucher {
    /// The channel.
    pub channel: ChannelConfig,
    /// The ceiling the payer signed.
    #[serde(with = "amount")]
    pub max_claimable_amount: u128,
}

impl ClaimRow {
    /// The row as the contract's ABI struct.
    pub fn to_abi(&self) -> abi::VoucherClaim {
        abi::VoucherClaim {
            voucher: abi::ClaimVoucher {
                channel: self.voucher.channel.to_abi(),
                maxClaimableAmount: self.voucher.max_claimable_amount,
            },
            signature: self.signature.clone(),
            totalClaimed: self.total_claimed,
        }
    }
}

/// The scheme's `payload` object, by its `type`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum BatchPayload {
    /// Open or top up a channel, paying this request with the voucher.
    Deposit(DepositPayload),
    /// Pay this request with a new cumulative voucher.
    Voucher(VoucherPayload),
    /// Ask for the unclaimed balance back (zero-charge voucher); the server completes it.
    Refund(RefundPayload),
    /// Server to facilitator: claim vouchers of many channels.
    Claim(ClaimPayload),
    /// Server to facilitator: transfer everything claimed for (receiver, token).
    Settle(SettlePayload),
}

impl BatchPayload {
    /// The wire name of the payload's `type`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Deposit(_) => "deposit",
            Self::Voucher(_) => "voucher",
            Self::Refund(_) => "refund",
            Self::Claim(_) => "claim",
            Self::Settle(_) => "settle",
        }
    }
}

/// `type: "deposit"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DepositPayload {
    /// The channel.
    pub channel_config: ChannelConfig,
    /// The voucher paying this request.
    pub voucher: SignedVoucher,
    /// The deposit.
    pub deposit: Deposit,
}

/// `type: "voucher"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VoucherPayload {
    /// The channel.
    pub channel_config: ChannelConfig,
    /// The voucher paying this request.
    pub voucher: SignedVoucher,
}

/// `type: "refund"`: from the client with only the config, the zero-charge voucher and an
/// optional amount; completed by the server (nonce, claims, authorizer signatures) before it
/// goes to the facilitator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RefundPayload {
    /// The channel.
    pub channel_config: ChannelConfig,
    /// Zero-charge voucher: its ceiling is the charged cumulative amount.
    pub voucher: SignedVoucher,
    /// The amount to return; absent for everything unclaimed.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "opt_amount")]
    pub amount: Option<u128>,
    /// The channel's `refundNonce` the refund signature binds (server-completed).
    #[serde(default, skip_serializing_if = "Option::is_none", with = "opt_u256")]
    pub refund_nonce: Option<U256>,
    /// The claim to apply before refunding (server-completed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claims: Option<Vec<ClaimRow>>,
    /// The receiver authorizer's `Refund` signature (when the server holds that key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refund_authorizer_signature: Option<Bytes>,
    /// The receiver authorizer's `ClaimBatch` signature (when the server holds that key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claim_authorizer_signature: Option<Bytes>,
}

/// `type: "claim"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClaimPayload {
    /// The rows, all of one receiver authorizer.
    pub claims: Vec<ClaimRow>,
    /// The receiver authorizer's `ClaimBatch` signature; absent when the facilitator is the
    /// receiver authorizer and signs itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claim_authorizer_signature: Option<Bytes>,
}

/// `type: "settle"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SettlePayload {
    /// Whose claimed funds to transfer.
    pub receiver: Address,
    /// Which token.
    pub token: Address,
}

/// A channel's state as servers and facilitators report it (`extra.channelState`; the
/// facilitator's `/verify` `extra` without `chargedCumulativeAmount`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChannelSnapshot {
    /// The channel id.
    pub channel_id: B256,
    /// Deposited minus refunded and withdrawn.
    #[serde(with = "amount")]
    pub balance: u128,
    /// Claimed on chain.
    #[serde(with = "amount")]
    pub total_claimed: u128,
    /// Unix seconds a pending timed withdrawal started, 0 if none.
    pub withdraw_requested_at: u64,
    /// The next refund nonce.
    #[serde(with = "crate::payload::decimal")]
    pub refund_nonce: U256,
    /// The server's charged cumulative amount (server snapshots only).
    #[serde(default, skip_serializing_if = "Option::is_none", with = "opt_amount")]
    pub charged_cumulative_amount: Option<u128>,
}

impl ChannelSnapshot {
    /// The snapshot as a JSON object (a response's `extra`, or its `channelState`).
    pub fn to_json_map(&self) -> serde_json::Map<String, serde_json::Value> {
        match serde_json::to_value(self) {
            Ok(serde_json::Value::Object(map)) => map,
            // Fixed-size numbers, hex and decimal strings always serialize to an object.
            _ => unreachable!("a channel snapshot serializes to an object"),
        }
    }
}

/// The last voucher a server holds, sent with a corrective 402 so the client can verify it
/// before adopting the server's charged cumulative amount (`extra.voucherState`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VoucherState {
    /// The ceiling of the last signed voucher.
    #[serde(with = "amount")]
    pub signed_max_claimable: u128,
    /// Its signature.
    pub signature: Bytes,
}
