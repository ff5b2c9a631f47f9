//! The paywall middleware, split like `tower`'s own middleware: the [`PaywallLayer`] that
//! configures it, the [`Paywall`] service that does the work, and its response future.

mod future;
pub mod html;
mod layer;
mod service;

pub use future::ResponseFuture;
pub use layer::{PaywallLayer, SettlementMode};
pub use service::{PaymentInfo, Paywall};
