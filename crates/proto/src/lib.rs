//! The x402 wire protocol, versions 1 and 2: types, header codecs, networks, assets and money.
//!
//! This crate is the shared vocabulary of Tollgate, and only that: it does no I/O and knows no
//! chain. A scheme's `payload` (and a requirement's `extra`) stays an opaque JSON object here and
//! is interpreted by the scheme's own crate (e.g. `tollgate-evm` for `exact` on EVM chains), so
//! adding a scheme never changes the wire types.
//!
//! The layering:
//!
//! - **Wire types.** [`v2`] is the model: everything inside Tollgate works on
//!   [`PaymentRequired`], [`PaymentRequirements`], [`PaymentPayload`]. [`v1`] is a thin adapter
//!   that converts the v1 shapes at the edge. [`versioned`] decodes a message of either version
//!   by reading `x402Version` first, and [`facilitator`] holds the `/verify`, `/settle` and
//!   `/supported` bodies.
//! - **Transport.** [`header`] names the HTTP headers and implements the size-capped
//!   base64-of-JSON codec they all use; [`idempotency`] names settlement attempts
//!   (`Idempotency-Key`, the `payment-identifier` extension); [`siwx`] is the `sign-in-with-x`
//!   extension (wallet sign-in instead of paying again).
//! - **Values.** [`network`] (CAIP-2 ids and v1 names), [`scheme`], [`reason`] (every error
//!   code), [`version`] (the `x402Version` tags), [`money`] (exact amounts: `U256` atomic
//!   units, decimal prices without floats) and [`asset`] (known tokens per network).
//!
//! Decoding is strict where a mistake would move money wrongly (amounts, networks, versions)
//! and lenient where peers legitimately differ (unknown fields are ignored, unknown schemes and
//! error reasons are kept verbatim).
//!
//! ```
//! use tollgate_proto::{header, AnyPaymentPayload, PaymentRequired, Scheme};
//! let challenge = r#"{"x402Version":2,"resource":{"url":"https://api.example.com/data"},
//!   "accepts":[{"scheme":"exact","network":"eip155:8453","amount":"10000",
//!   "asset":"0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913",
//!   "payTo":"0x209693Bc6afc0C5328bA36FaF03C514EF312287C","maxTimeoutSeconds":60}]}"#;
//! let required: PaymentRequired = serde_json::from_str(challenge).unwrap();
//! assert_eq!(required.accepts[0].scheme, Scheme::Exact);
//! let encoded = header::encode(&required);
//! let decoded: PaymentRequired = header::decode(&encoded).unwrap();
//! assert_eq!(decoded, required);
//! assert!(header::decode::<AnyPaymentPayload>("not base64!").is_err());
//! ```

#![warn(missing_docs)]

pub mod asset;
pub mod bazaar;
pub mod discovery;
pub mod facilitator;
pub mod header;
pub mod idempotency;
pub mod money;
pub mod network;
pub mod reason;
pub mod scheme;
pub mod siwx;
pub mod token;
pub mod v1;
pub mod v2;
pub mod version;
pub mod versioned;

pub use asset::{Eip712Info, KnownAsset};
pub use bazaar::{BazaarExtension, BazaarResponse, DiscoveryInfo, DiscoveryInput, ServiceMetadata};
pub use discovery::{
    DiscoveryQueryError, DiscoveryResource, LastUpdated, ResourceType, ResourcesQuery,
    ResourcesResponse, SearchQuery, SearchResponse,
};
pub use facilitator::{
    FacilitatorRequest, SettleRequest, SettleResponse, SettleResponseV1, SupportedKind,
    SupportedResponse, VerifyRequest, VerifyResponse,
};
pub use header::HeaderError;
pub use idempotency::{IdempotencyError, IdempotencyKey, PaymentIdentifier};
pub use money::{AtomicAmount, DecimalAmount, MoneyError, TokenAmount};
pub use network::{Network, NetworkError, NetworkV1};
pub use reason::ErrorReason;
pub use scheme::{Scheme, SchemeError};
pub use v1::{PaymentPayloadV1, PaymentRequiredV1, PaymentRequirementsV1};
pub use v2::{Extensions, PaymentPayload, PaymentRequired, PaymentRequirements, ResourceInfo};
pub use version::{X402Version, V1, V2};
pub use versioned::{AnyPaymentPayload, AnyPaymentRequired};

/// The 256-bit unsigned integer all amounts are made of.
pub use alloy_primitives::U256;
