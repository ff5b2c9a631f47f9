//! The paywall middleware, split like `tower`'s own middleware: the [`PaywallLayer`] that
//! configures it, the [`Paywall`] service that adapts HTTP to the [`gate`](crate::gate) (which
//! makes every payment decision), and its response future.

mod buffered;
mod future;
pub mod hints;
pub mod html;
mod layer;
pub mod outcome;
mod service;
mod sign_in;
pub mod target;

pub use crate::gate::{
    PaymentInfo, PendingConfig, PendingConfigError, SettlementMode, DEFAULT_RETRIES,
};
pub use buffered::BufferedResponse;
pub use future::ResponseFuture;
pub use layer::{PaywallLayer, PriceLayer};
pub use outcome::PaywallOutcome;
pub use service::Paywall;
