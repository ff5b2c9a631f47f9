//! The x402 wire protocol, versions 1 and 2: types, header codecs, networks, assets and money.
//!
//! This crate is the shared vocabulary of Tollgate. It does no I/O and knows no chain: a
//! scheme's `payload` stays an opaque JSON object here and is interpreted by the scheme's own
//! crate (e.g. `tollgate-evm`). Everything inside Tollgate works on the v2 types; v1 messages
//! are converted at the edge by the [`v1`] adapter.
//!
//! - [`v2`] — `PaymentRequired`, `PaymentRequirements`, `PaymentPayload`, `ResourceInfo`.
//! - [`v1`] — the v1 shapes and their conversions to and from v2.
//! - [`versioned`] — messages of either version, dispatched on `x402Version`.
//! - [`facilitator`] — `/verify`, `/settle` and `/supported` bodies.
//! - [`header`] — header names and the size-capped base64-JSON codec.
//! - [`network`] — CAIP-2 networks and v1 network names.
//! - [`asset`] — known assets per network (address, decimals, signing domain).
//! - [`money`] — exact amounts (`U256` atomic units; decimal prices without floats).
//! - [`scheme`] — payment scheme ids.
//! - [`reason`] — every error reason code.
//! - [`version`] — the `x402Version` tags.
//!
//! ```
//! use tollgate_proto::{header, AnyPaymentPayload, PaymentRequired};
//! let challenge = r#"{"x402Version":2,"resource":{"url":"https://api.example.com/data"},
//!   "accepts":[{"scheme":"exact","network":"eip155:8453","amount":"10000",
//!   "asset":"0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913",
//!   "payTo":"0x209693Bc6afc0C5328bA36FaF03C514EF312287C","maxTimeoutSeconds":60}]}"#;
//! let required: PaymentRequired = serde_json::from_str(challenge).unwrap();
//! let encoded = header::encode(&required);
//! let decoded: PaymentRequired = header::decode(&encoded).unwrap();
//! assert_eq!(decoded, required);
//! assert!(header::decode::<AnyPaymentPayload>("not base64!").is_err());
//! ```

pub mod asset;
pub mod facilitator;
pub mod header;
pub mod money;
pub mod network;
pub mod reason;
pub mod scheme;
pub mod v1;
pub mod v2;
pub mod version;
pub mod versioned;

pub use facilitator::{
    FacilitatorRequest, SettleRequest, SettleResponse, SettleResponseV1, SupportedKind,
    SupportedResponse, VerifyRequest, VerifyResponse,
};
pub use money::{AtomicAmount, DecimalAmount, MoneyError, TokenAmount};
pub use network::{Network, NetworkError, NetworkV1};
pub use reason::ErrorReason;
pub use scheme::Scheme;
pub use v1::{PaymentPayloadV1, PaymentRequiredV1, PaymentRequirementsV1};
pub use v2::{Extensions, PaymentPayload, PaymentRequired, PaymentRequirements, ResourceInfo};
pub use version::{X402Version, V1, V2};
pub use versioned::{AnyPaymentPayload, AnyPaymentRequired};

pub use alloy_primitives::U256;
