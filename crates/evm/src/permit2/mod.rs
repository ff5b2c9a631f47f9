//! Permit2: how tokens without EIP-3009 (USDT and most ERC-20s) are paid, for `exact` (with
//! `extra.assetTransferMethod: "permit2"`) and for `upto` (always).
//!
//! The payer approves the canonical Permit2 contract once ([`approve_permit2`] — an explicit
//! step, never done behind the payer's back), then signs one `PermitWitnessTransferFrom` per
//! payment. The `spender` in it is an x402 proxy, and the witness binds the payee (and, for
//! `upto`, the facilitator allowed to settle), so whoever broadcasts the transfer cannot send the
//! money elsewhere.
//!
//! - [`Permit2Payload`] / [`Permit2Authorization`]: the scheme's `payload`, typed by its witness
//!   ([`ExactWitness`], [`UptoWitness`]).
//! - [`sign_permit2`] / [`permit2_digest`]: the EIP-712 hash under Permit2's domain.
//! - [`extensions`]: the gas-sponsoring extensions (`eip2612GasSponsoring`,
//!   `erc20ApprovalGasSponsoring`), client and facilitator sides.
//! - [`engine`]: verification and settlement, shared by `exact` and `upto`.

pub mod abi;
pub mod engine;
pub mod extensions;

use alloy::network::{EthereumWallet, TransactionBuilder, TxSigner};
use alloy::primitives::{address, Address, Bytes, Signature, B256, U256};
use alloy::providers::{Provider, ProviderBuilder};
use alloy::rpc::types::TransactionRequest;
use alloy::signers::Signer;
use alloy::sol_types::{eip712_domain, Eip712Domain, SolCall, SolStruct};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tollgate_proto::{PaymentPayload, PaymentRequirements, Scheme};

use crate::payload::decimal;

/// The canonical Permit2 contract, at the same address on every chain.
pub const PERMIT2_ADDRESS: Address = address!("000000000022D473030F116dDEE9F6B43aC78BA3");

/// `x402ExactPermit2Proxy`: always the `spender` of an `exact` Permit2 payment.
pub const EXACT_PERMIT2_PROXY: Address = address!("402085c248EeA27D92E8b30b2C58ed07f9E20001");

/// `x402UptoPermit2Proxy`: always the `spender` of an `upto` payment.
pub const UPTO_PERMIT2_PROXY: Address = address!("4020A4f3b7b90ccA423B9fabCc0CE57C6C240002");

/// The `extra` key naming how an `exact` EVM payment moves the token.
pub const ASSET_TRANSFER_METHOD: &str = "assetTransferMethod";

/// The `extra` key of `upto` requirements naming the facilitator that may settle.
pub const FACILITATOR_ADDRESS: &str = "facilitatorAddress";

/// How an `exact` EVM payment moves the token (`extra.assetTransferMethod`; absent means
/// EIP-3009, as the spec says).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AssetTransferMethod {
    /// The token's own `transferWithAuthorization` (USDC and other EIP-3009 tokens).
    Eip3009,
    /// Permit2 through `x402ExactPermit2Proxy` (any ERC-20).
    Permit2,
}

/// `extra.assetTransferMethod` names a method this version does not implement.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("extra.assetTransferMethod {0:?} is not supported (expected \"eip3009\" or \"permit2\")")]
pub struct UnknownTransferMethod(pub String);

impl AssetTransferMethod {
    /// The wire value.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Eip3009 => "eip3009",
            Self::Permit2 => "permit2",
        }
    }

    /// The method `requirements` ask for: `extra.assetTransferMethod`, EIP-3009 when absent.
    pub fn of(requirements: &PaymentRequirements) -> Result<Self, UnknownTransferMethod> {
        match requirements
            .extra
            .as_ref()
            .and_then(|e| e.get(ASSET_TRANSFER_METHOD))
        {
            None => Ok(Self::Eip3009),
            Some(serde_json::Value::String(s)) if s == "eip3009" => Ok(Self::Eip3009),
            Some(serde_json::Value::String(s)) if s == "permit2" => Ok(Self::Permit2),
            Some(other) => Err(UnknownTransferMethod(other.to_string())),
        }
    }
}

/// Permit2's `TokenPermissions`: the token and the most the spender may move.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TokenPermissions {
    /// The token.
    pub token: Address,
    /// Atomic units: the exact amount (`exact`) or the maximum (`upto`).
    #[serde(with = "decimal")]
    pub amount: U256,
}

/// The witness of an `exact` Permit2 payment: `Witness(address to,uint256 validAfter)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExactWitness {
    /// The payee; must be the requirements' `payTo`.
    pub to: Address,
    /// Unix seconds from which the transfer may happen.
    #[serde(with = "decimal")]
    pub valid_after: U256,
}

/// The witness of an `upto` payment:
/// `Witness(address to,address facilitator,uint256 validAfter)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UptoWitness {
    /// The payee; must be the requirements' `payTo`.
    pub to: Address,
    /// The only address the upto proxy lets settle (`msg.sender`): the facilitator announced
    /// in `extra.facilitatorAddress`.
    pub facilitator: Address,
    /// Unix seconds from which the transfer may happen.
    #[serde(with = "decimal")]
    pub valid_after: U256,
}

/// The signed parameters of a Permit2 payment (`payload.permit2Authorization`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[serde(bound(serialize = "W: Serialize", deserialize = "W: DeserializeOwned"))]
pub struct Permit2Authorization<W> {
    /// Token and amount.
    pub permitted: TokenPermissions,
    /// The payer (Permit2's `owner`).
    pub from: Address,
    /// The x402 proxy of the scheme.
    pub spender: Address,
    /// Permit2 unordered nonce (any 256-bit value, used once per owner). Decimal on the wire,
    /// as the official SDK writes it; `0x` hex is read too (the spec's `upto` example).
    #[serde(with = "nonce_serde")]
    pub nonce: U256,
    /// Unix seconds after which the signature is void.
    #[serde(with = "decimal")]
    pub deadline: U256,
    /// The scheme's witness.
    pub witness: W,
}

/// A Permit2 payment's `payload`: the signature and what it signs.
///
/// ```
/// use tollgate_evm::permit2::ExactPermit2Payload;
/// let json = serde_json::json!({
///     "signature": "0x1234",
///     "permit2Authorization": {
///         "permitted": { "token": "0x036CbD53842c5426634e7929541eC2318f3dCF7e", "amount": "10000" },
///         "from": "0x857b06519E91e3A54538791bDbb0E22373e36b66",
///         "spender": "0x402085c248EeA27D92E8b30b2C58ed07f9E20001",
///         "nonce": "33247007178036348590600198031289925668252061821958005840077069883511451257277",
///         "deadline": "1740672154",
///         "witness": { "to": "0x209693Bc6afc0C5328bA36FaF03C514EF312287C", "validAfter": "1740672089" }
///     }
/// });
/// let payload: ExactPermit2Payload = serde_json::from_value(json.clone()).unwrap();
/// // Written back with the same values (addresses in lower-case hex, as alloy writes them).
/// let back = serde_json::to_value(&payload).unwrap();
/// assert_eq!(back.to_string().to_lowercase(), json.to_string().to_lowercase());
/// assert_eq!(serde_json::from_value::<ExactPermit2Payload>(back).unwrap(), payload);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[serde(bound(serialize = "W: Serialize", deserialize = "W: DeserializeOwned"))]
pub struct Permit2Payload<W> {
    /// 65-byte ECDSA signature for EOAs; any bytes for EIP-1271 wallets.
    pub signature: Bytes,
    /// The signed parameters.
    pub permit2_authorization: Permit2Authorization<W>,
}

/// An `exact` Permit2 payload.
pub type ExactPermit2Payload = Permit2Payload<ExactWitness>;

/// An `upto` payload.
pub type UptoPermit2Payload = Permit2Payload<UptoWitness>;

/// Why a `payload` object is not the expected Permit2 payload.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("payload is not a Permit2 payload of this scheme: {0}")]
pub struct Permit2PayloadError(pub String);

impl<W: Permit2Witness> Permit2Payload<W> {
    /// Reads the scheme payload out of a [`PaymentPayload`].
    pub fn from_payment(payment: &PaymentPayload) -> Result<Self, Permit2PayloadError> {
        serde_json::from_value(serde_json::Value::Object(payment.payload.clone()))
            .map_err(|e| Permit2PayloadError(e.to_string()))
    }

    /// The JSON object that goes into `PaymentPayload.payload`.
    pub fn to_json_object(&self) -> serde_json::Map<String, serde_json::Value> {
        match serde_json::to_value(self) {
            Ok(serde_json::Value::Object(map)) => map,
            // Addresses, byte strings and decimal strings always serialize to an object.
            _ => unreachable!("Permit2Payload serializes to an object"),
        }
    }
}

/// What differs between the `exact` and `upto` Permit2 paths: the witness, the proxy, and the
/// settlement call. Sealed in practice: implemented for [`ExactWitness`] and [`UptoWitness`].
pub trait Permit2Witness:
    Clone + std::fmt::Debug + PartialEq + Eq + Serialize + DeserializeOwned + Send + Sync + 'static
{
    /// The proxy that must be the `spender`.
    const PROXY: Address;
    /// The scheme this witness belongs to.
    const SCHEME: Scheme;
    /// The payee.
    fn to(&self) -> Address;
    /// Unix seconds from which the transfer may happen.
    fn valid_after(&self) -> U256;
    /// The address that must send the settlement (`upto`: the witnessed facilitator); `None`
    /// lets the signer pool pick.
    fn sender(&self) -> Option<Address>;
    /// The EIP-712 signing hash of `auth` under `domain` (Permit2's).
    fn signing_hash(auth: &Permit2Authorization<Self>, domain: &Eip712Domain) -> B256;
    /// Calldata of the proxy's `settle` (or, with an EIP-2612 permit, `settleWithPermit`)
    /// moving `amount`.
    fn settle_calldata(
        payload: &Permit2Payload<Self>,
        amount: U256,
        permit: Option<&extensions::SplitPermit>,
    ) -> Vec<u8>;
    /// `(owner, nonce)` of a proxy settlement call, if `input` is one.
    fn decode_settle(input: &[u8]) -> Option<(Address, U256)>;
}

impl Permit2Witness for ExactWitness {
    const PROXY: Address = EXACT_PERMIT2_PROXY;
    const SCHEME: Scheme = Scheme::Exact;

    fn to(&self) -> Address {
        self.to
    }
    fn valid_after(&self) -> U256 {
        self.valid_after
    }
    fn sender(&self) -> Option<Address> {
        None
    }

    fn signing_hash(auth: &Permit2Authorization<Self>, domain: &Eip712Domain) -> B256 {
        abi::exact::PermitWitnessTransferFrom {
            permitted: abi::exact::TokenPermissions {
                token: auth.permitted.token,
                amount: auth.permitted.amount,
            },
            spender: auth.spender,
            nonce: auth.nonce,
            deadline: auth.deadline,
            witness: abi::exact::Witness {
                to: auth.witness.to,
                validAfter: auth.witness.valid_after,
            },
        }
        .eip712_signing_hash(domain)
    }

    fn settle_calldata(
        payload: &Permit2Payload<Self>,
        _amount: U256,
        permit: Option<&extensions::SplitPermit>,
    ) -> Vec<u8> {
        use abi::exact as e;
        let auth = &payload.permit2_authorization;
        let transfer = e::PermitTransferFrom {
            permitted: e::TokenPermissions {
                token: auth.permitted.token,
                amount: auth.permitted.amount,
            },
            nonce: auth.nonce,
            deadline: auth.deadline,
        };
        let witness = e::Witness {
            to: auth.witness.to,
            validAfter: auth.witness.valid_after,
        };
        match permit {
            None => e::IX402ExactPermit2Proxy::settleCall {
                permit: transfer,
                owner: auth.from,
                witness,
                signature: payload.signature.clone(),
            }
            .abi_encode(),
            Some(p) => e::IX402ExactPermit2Proxy::settleWithPermitCall {
                permit2612: e::EIP2612Permit {
                    value: p.value,
                    deadline: p.deadline,
                    r: p.r,
                    s: p.s,
                    v: p.v,
                },
                permit: transfer,
                owner: auth.from,
                witness,
                signature: payload.signature.clone(),
            }
            .abi_encode(),
        }
    }

    fn decode_settle(input: &[u8]) -> Option<(Address, U256)> {
        use abi::exact::IX402ExactPermit2Proxy as P;
        if let Ok(c) = P::settleCall::abi_decode(input) {
            return Some((c.owner, c.permit.nonce));
        }
        P::settleWithPermitCall::abi_decode(input)
            .ok()
            .map(|c| (c.owner, c.permit.nonce))
    }
}

impl Permit2Witness for UptoWitness {
    const PROXY: Address = UPTO_PERMIT2_PROXY;
    const SCHEME: Scheme = Scheme::Upto;

    fn to(&self) -> Address {
        self.to
    }
    fn valid_after(&self) -> U256 {
        self.valid_after
    }
    fn sender(&self) -> Option<Address> {
        Some(self.facilitator)
    }

    fn signing_hash(auth: &Permit2Authorization<Self>, domain: &Eip712Domain) -> B256 {
        abi::upto::PermitWitnessTransferFrom {
            permitted: abi::upto::TokenPermissions {
                token: auth.permitted.token,
                amount: auth.permitted.amount,
            },
            spender: auth.spender,
            nonce: auth.nonce,
            deadline: auth.deadline,
            witness: abi::upto::Witness {
                to: auth.witness.to,
                facilitator: auth.witness.facilitator,
                validAfter: auth.witness.valid_after,
            },
        }
        .eip712_signing_hash(domain)
    }

    fn settle_calldata(
        payload: &Permit2Payload<Self>,
        amount: U256,
        permit: Option<&extensions::SplitPermit>,
    ) -> Vec<u8> {
        use abi::upto as u;
        let auth = &payload.permit2_authorization;
        let transfer = u::PermitTransferFrom {
            permitted: u::TokenPermissions {
                token: auth.permitted.token,
                amount: auth.permitted.amount,
            },
            nonce: auth.nonce,
            deadline: auth.deadline,
        };
        let witness = u::Witness {
            to: auth.witness.to,
            facilitator: auth.witness.facilitator,
            validAfter: auth.witness.valid_after,
        };
        match permit {
            None => u::IX402UptoPermit2Proxy::settleCall {
                permit: transfer,
                amount,
                owner: auth.from,
                witness,
                signature: payload.signature.clone(),
            }
            .abi_encode(),
            Some(p) => u::IX402UptoPermit2Proxy::settleWithPermitCall {
                permit2612: u::EIP2612Permit {
                    value: p.value,
                    deadline: p.deadline,
                    r: p.r,
                    s: p.s,
                    v: p.v,
                },
                permit: transfer,
                amount,
                owner: auth.from,
                witness,
                signature: payload.signature.clone(),
            }
            .abi_encode(),
        }
    }

    fn decode_settle(input: &[u8]) -> Option<(Address, U256)> {
        use abi::upto::IX402UptoPermit2Proxy as P;
        if let Ok(c) = P::settleCall::abi_decode(input) {
            return Some((c.owner, c.permit.nonce));
        }
        P::settleWithPermitCall::abi_decode(input)
            .ok()
            .map(|c| (c.owner, c.permit.nonce))
    }
}

/// The time window and nonce of a Permit2 payment being signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Permit2Window {
    /// Unix seconds from which the transfer may happen (the witness' `validAfter`).
    pub valid_after: u64,
    /// Unix seconds after which the signature is void.
    pub deadline: u64,
    /// The Permit2 nonce.
    pub nonce: U256,
}

/// Builds and signs a Permit2 payment for `requirements` with `witness`: the permitted amount
/// is the requirements' `amount` (the maximum, for `upto`), the spender the witness' proxy.
pub async fn sign_payment<W: Permit2Witness, S: Signer + Send + Sync + ?Sized>(
    signer: &S,
    requirements: &PaymentRequirements,
    resource: Option<tollgate_proto::ResourceInfo>,
    witness: W,
    window: Permit2Window,
) -> Result<PaymentPayload, crate::client::SignError> {
    use crate::client::SignError;
    let chain_id = requirements.network.eip155_chain_id().ok_or_else(|| {
        SignError::Requirements(format!("{} is not eip155", requirements.network))
    })?;
    let token = crate::domain::parse_address(&requirements.asset).map_err(|reason| {
        SignError::Requirements(format!("asset {:?}: {reason}", requirements.asset))
    })?;
    let auth = Permit2Authorization {
        permitted: TokenPermissions {
            token,
            amount: requirements.amount.get(),
        },
        from: signer.address(),
        spender: W::PROXY,
        nonce: window.nonce,
        deadline: U256::from(window.deadline),
        witness,
    };
    let signature = sign_permit2(signer, &auth, chain_id).await?;
    let payload = Permit2Payload {
        signature: Bytes::from(signature.to_vec()),
        permit2_authorization: auth,
    };
    Ok(PaymentPayload {
        x402_version: tollgate_proto::V2,
        resource,
        accepted: requirements.clone(),
        payload: payload.to_json_object(),
        extensions: None,
    })
}

/// Marks `requirements` (an `exact` EVM offer) as paid through Permit2
/// (`extra.assetTransferMethod = "permit2"`): what a seller does for a token without EIP-3009
/// (USDT and most ERC-20s). EIP-3009 tokens are better left as they are: their payers need no
/// prior approval.
pub fn offer_permit2(requirements: &mut PaymentRequirements) {
    requirements
        .extra
        .get_or_insert_with(Default::default)
        .insert(
            ASSET_TRANSFER_METHOD.to_owned(),
            AssetTransferMethod::Permit2.as_str().into(),
        );
}

/// Permit2's EIP-712 domain on `chain_id` (name `Permit2`, no version).
pub fn permit2_domain(chain_id: u64) -> Eip712Domain {
    eip712_domain! {
        name: "Permit2",
        chain_id: chain_id,
        verifying_contract: PERMIT2_ADDRESS,
    }
}

/// The digest a Permit2 authorization's signature covers on `chain_id`.
pub fn permit2_digest<W: Permit2Witness>(auth: &Permit2Authorization<W>, chain_id: u64) -> B256 {
    W::signing_hash(auth, &permit2_domain(chain_id))
}

/// Signs `auth` for `chain_id`, returning the 65-byte `r ‖ s ‖ v` signature.
pub async fn sign_permit2<W: Permit2Witness, S: Signer + Send + Sync + ?Sized>(
    signer: &S,
    auth: &Permit2Authorization<W>,
    chain_id: u64,
) -> Result<[u8; 65], alloy::signers::Error> {
    Ok(signer
        .sign_hash(&permit2_digest(auth, chain_id))
        .await?
        .as_bytes())
}

/// A fresh random Permit2 nonce (256 bits, as the official SDK draws them: Permit2 nonces are
/// unordered, so a random one never collides in practice and needs no chain read).
pub fn random_nonce() -> U256 {
    U256::from_be_bytes(rand::random::<[u8; 32]>())
}

/// Where a nonce lives in Permit2's bitmap: `(word position, bit)`.
pub fn nonce_position(nonce: U256) -> (U256, usize) {
    let bit = (nonce & U256::from(0xffu8)).to::<u64>() as usize;
    (nonce >> 8, bit)
}

/// Why the one-time Permit2 approval failed.
#[derive(Debug, thiserror::Error)]
pub enum ApproveError {
    /// The RPC URL does not parse.
    #[error("invalid RPC URL {0:?}")]
    Url(String),
    /// The node refused or could not be reached.
    #[error("approval transaction failed: {0}")]
    Send(String),
    /// The approval was mined and reverted.
    #[error("approval transaction {0} reverted")]
    Reverted(B256),
}

/// Reads how much of `token` the canonical Permit2 contract may move for `owner`.
pub async fn permit2_allowance(
    rpc_url: &str,
    token: Address,
    owner: Address,
) -> Result<U256, ApproveError> {
    let url = rpc_url
        .parse()
        .map_err(|_| ApproveError::Url(rpc_url.to_owned()))?;
    let provider = ProviderBuilder::new()
        .disable_recommended_fillers()
        .connect_http(url);
    abi::IErc20Permit2::new(token, &provider)
        .allowance(owner, PERMIT2_ADDRESS)
        .call()
        .await
        .map_err(|e| ApproveError::Send(e.to_string()))
}

/// The payer's one-time approval of the canonical Permit2 contract for `token`, sent from the
/// payer's own key (it pays the gas) and awaited. Returns the transaction hash.
///
/// Permit2 payments need it once per token (unless a facilitator sponsors it through a gas
/// sponsoring extension). It is an explicit call on purpose: an approval lets Permit2 move up
/// to `amount` on any later signature, so a wallet must never send it on its own initiative.
/// `U256::MAX` is the usual amount.
pub async fn approve_permit2<S>(
    rpc_url: &str,
    signer: S,
    token: Address,
    amount: U256,
) -> Result<B256, ApproveError>
where
    S: TxSigner<Signature> + Send + Sync + 'static,
{
    let url = rpc_url
        .parse()
        .map_err(|_| ApproveError::Url(rpc_url.to_owned()))?;
    let from = signer.address();
    let provider = ProviderBuilder::new()
        .wallet(EthereumWallet::from(signer))
        .connect_http(url);
    let call = abi::IErc20Permit2::approveCall {
        spender: PERMIT2_ADDRESS,
        amount,
    };
    let tx = TransactionRequest::default()
        .with_from(from)
        .with_to(token)
        .with_input(call.abi_encode());
    let pending = provider
        .send_transaction(tx)
        .await
        .map_err(|e| ApproveError::Send(e.to_string()))?;
    let hash = *pending.tx_hash();
    let receipt = pending
        .get_receipt()
        .await
        .map_err(|e| ApproveError::Send(e.to_string()))?;
    if !receipt.status() {
        return Err(ApproveError::Reverted(hash));
    }
    Ok(hash)
}

/// Serde for a Permit2 nonce: written as a canonical decimal string; read from a canonical
/// decimal string or `0x` hex (at most 64 digits).
mod nonce_serde {
    use alloy::primitives::U256;
    use serde::{de::Error, Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &U256, s: S) -> Result<S::Ok, S::Error> {
        super::decimal::serialize(value, s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<U256, D::Error> {
        let s = String::deserialize(d)?;
        if let Some(hex) = s.strip_prefix("0x") {
            if hex.is_empty() || hex.len() > 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(D::Error::custom(format!(
                    "{s:?} is not a 256-bit hex nonce"
                )));
            }
            return U256::from_str_radix(hex, 16).map_err(D::Error::custom);
        }
        super::decimal::deserialize(serde::de::value::StringDeserializer::<D::Error>::new(s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy::signers::local::PrivateKeySigner;

    const UPTO_EXAMPLE: &str = r#"{
      "signature": "0x2d6a7588d6acca505cbf0d9a4a227e0c52c6c34008c8e8986a1283259764173608a2ce6496642e377d6da8dbbf5836e9bd15092f9ecab05ded3d6293af148b571c",
      "permit2Authorization": {
        "permitted": { "token": "0x036CbD53842c5426634e7929541eC2318f3dCF7e", "amount": "5000000" },
        "from": "0x857b06519E91e3A54538791bDbb0E22373e36b66",
        "spender": "0x4020A4f3b7b90ccA423B9fabCc0CE57C6C240002",
        "nonce": "0xf3746613c2d920b5fdabc0856f2aeb2d4f88ee6037b8cc5d04a71a4462f13480",
        "deadline": "1740672154",
        "witness": {
          "to": "0x209693Bc6afc0C5328bA36FaF03C514EF312287C",
          "facilitator": "0x1111111111111111111111111111111111111111",
          "validAfter": "1740672089"
        }
      }
    }"#;

    #[test]
    fn the_specs_upto_example_parses_and_round_trips_in_decimal() {
        let p: UptoPermit2Payload = serde_json::from_str(UPTO_EXAMPLE).unwrap();
        let a = &p.permit2_authorization;
        assert_eq!(a.spender, UPTO_PERMIT2_PROXY);
        assert_eq!(a.permitted.amount, U256::from(5_000_000u64));
        assert_eq!(
            a.nonce,
            U256::from_str_radix(
                "f3746613c2d920b5fdabc0856f2aeb2d4f88ee6037b8cc5d04a71a4462f13480",
                16
            )
            .unwrap()
        );
        let back = serde_json::to_value(&p).unwrap();
        assert_eq!(
            back["permit2Authorization"]["nonce"],
            a.nonce.to_string(),
            "written in decimal, as the SDK does"
        );
        let again: UptoPermit2Payload = serde_json::from_value(back).unwrap();
        assert_eq!(again, p);
        // An upto payload is not an exact one: the witness types differ.
        assert!(serde_json::from_str::<ExactPermit2Payload>(UPTO_EXAMPLE).is_err());
    }

    #[test]
    fn amounts_must_be_canonical_and_unknown_fields_are_refused() {
        let mut v: serde_json::Value = serde_json::from_str(UPTO_EXAMPLE).unwrap();
        v["permit2Authorization"]["permitted"]["amount"] = "05000000".into();
        assert!(serde_json::from_value::<UptoPermit2Payload>(v.clone()).is_err());
        v["permit2Authorization"]["permitted"]["amount"] = "5000000".into();
        v["permit2Authorization"]["extra"] = "x".into();
        assert!(serde_json::from_value::<UptoPermit2Payload>(v).is_err());
    }

    #[test]
    fn transfer_method_is_read_from_extra() {
        let req = |extra: serde_json::Value| -> PaymentRequirements {
            serde_json::from_value(serde_json::json!({
                "scheme": "exact", "network": "eip155:84532", "amount": "1",
                "asset": "0x036CbD53842c5426634e7929541eC2318f3dCF7e",
                "payTo": "0x209693Bc6afc0C5328bA36FaF03C514EF312287C",
                "maxTimeoutSeconds": 60, "extra": extra
            }))
            .unwrap()
        };
        assert_eq!(
            AssetTransferMethod::of(&req(serde_json::json!({}))),
            Ok(AssetTransferMethod::Eip3009)
        );
        assert_eq!(
            AssetTransferMethod::of(&req(serde_json::json!({"assetTransferMethod": "permit2"}))),
            Ok(AssetTransferMethod::Permit2)
        );
        assert!(AssetTransferMethod::of(&req(
            serde_json::json!({"assetTransferMethod": "erc7710"})
        ))
        .is_err());
    }

    #[tokio::test]
    async fn signatures_recover_to_the_signer_and_bind_every_field() {
        let key = PrivateKeySigner::random();
        let auth = Permit2Authorization {
            permitted: TokenPermissions {
                token: Address::repeat_byte(1),
                amount: U256::from(10),
            },
            from: key.address(),
            spender: EXACT_PERMIT2_PROXY,
            nonce: random_nonce(),
            deadline: U256::from(2_000_000_000u64),
            witness: ExactWitness {
                to: Address::repeat_byte(2),
                valid_after: U256::ZERO,
            },
        };
        let sig = sign_permit2(&key, &auth, 8453).await.unwrap();
        let sig = Signature::try_from(&sig[..]).unwrap();
        let digest = permit2_digest(&auth, 8453);
        assert_eq!(
            sig.recover_address_from_prehash(&digest).unwrap(),
            key.address()
        );
        let mut other = auth.clone();
        other.witness.to = Address::repeat_byte(3);
        assert_ne!(permit2_digest(&other, 8453), digest);
        assert_ne!(permit2_digest(&auth, 1), digest);
    }

    #[test]
    fn the_eip712_type_strings_are_permit2s() {
        use alloy::sol_types::SolStruct;
        assert_eq!(
            abi::exact::PermitWitnessTransferFrom::eip712_encode_type(),
            "PermitWitnessTransferFrom(TokenPermissions permitted,address spender,uint256 nonce,uint256 deadline,Witness witness)TokenPermissions(address token,uint256 amount)Witness(address to,uint256 validAfter)"
        );
        assert_eq!(
            abi::upto::PermitWitnessTransferFrom::eip712_encode_type(),
            "PermitWitnessTransferFrom(TokenPermissions permitted,address spender,uint256 nonce,uint256 deadline,Witness witness)TokenPermissions(address token,uint256 amount)Witness(address to,address facilitator,uint256 validAfter)"
        );
    }

    #[test]
    fn nonce_positions_split_word_and_bit() {
        assert_eq!(nonce_position(U256::from(0x1_05u64)), (U256::from(1), 5));
        assert_eq!(nonce_position(U256::ZERO), (U256::ZERO, 0));
    }
}
