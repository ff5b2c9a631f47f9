//! The paywall middleware, split like `tower`'s own middleware: the [`PaywallLayer`] that
//! configures it, the [`Paywall`] service that does the work, and its response future.

mod canonical;
mod future;
pub mod hints;
pub mod html;
mod layer;
pub mod outcome;
mod pending;
mod service;
pub mod target;

pub use future::ResponseFuture;
pub use layer::{PaywallLayer, SettlementMode, DEFAULT_RETRIES};
pub use outcome::PaywallOutcome;
pub use pending::{PendingConfig, PendingConfigError};
pub use service::{PaymentInfo, Paywall};
