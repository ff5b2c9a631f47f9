//! [`PaywallLayer`]: applies the paywall to a service.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use tower_layer::Layer;

use super::pending::{PendingConfig, PendingConfigError, PendingStore};
use super::service::{Paywall, Shared};
use crate::price::{DynamicPrice, PriceError, RoutePrice, RouteTable};
use crate::FacilitatorClient;

/// When the payment is settled relative to the handler.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SettlementMode {
    /// Verify, run the handler, settle, then respond (the default). Nothing is settled when the
    /// handler answers an error; if settlement fails, the handler's body is not delivered. If
    /// settlement outlives the exchange (pending, or no answer from the facilitator), the
    /// response is kept and delivered on the buyer's retry with the same payment once the
    /// payment settles (see [`PaywallLayer::pending_responses`]).
    #[default]
    AfterHandler,
    /// Settle before running the handler, for handlers with side effects that must only ever
    /// run for money already received. The handler sees the transaction hash.
    BeforeHandler,
}

/// Default of [`PaywallLayer::settle_retries`].
pub const DEFAULT_RETRIES: u32 = 3;

/// A tower layer that puts prices on routes.
///
/// ```
/// use tollgate_server::{PaymentOption, PaywallLayer, RemoteFacilitator, RoutePrice};
/// let base = "eip155:8453".parse().unwrap();
/// let layer = PaywallLayer::new(RemoteFacilitator::new("http://127.0.0.1:4020"))
///     .route(
///         "GET /weather",
///         RoutePrice::new(PaymentOption::usd("$0.001", base, "0x209693Bc6afc0C5328bA36FaF03C514EF312287C").unwrap())
///             .description("Today's weather"),
///     )
///     .unwrap();
/// let app: axum::Router = axum::Router::new()
///     .route("/weather", axum::routing::get(|| async { "sunny" }))
///     .layer(layer);
/// ```
pub struct PaywallLayer<F> {
    shared: Arc<Shared<F>>,
}

impl<F> Clone for PaywallLayer<F> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
        }
    }
}

impl<F: FacilitatorClient> PaywallLayer<F> {
    /// A paywall with no priced routes yet, settling through `facilitator`.
    pub fn new(facilitator: F) -> Self {
        Self {
            shared: Arc::new(Shared {
                routes: RouteTable::default(),
                facilitator,
                mode: SettlementMode::default(),
                claims: Mutex::new(HashSet::new()),
                pending: PendingStore::new(PendingConfig::default()),
                retries: DEFAULT_RETRIES,
                challenges: Mutex::new(HashMap::new()),
                wallet_scripts: Vec::new(),
                payment_identifier: None,
            }),
        }
    }

    fn shared_mut(&mut self) -> &mut Shared<F> {
        Arc::get_mut(&mut self.shared).expect("configure the layer before cloning it")
    }

    /// Prices `route` (`"GET /weather"`, or `"GET /files/*"` for everything under a prefix).
    ///
    /// A `GET` price covers `HEAD` too. `"* /weather"` prices every method: use it when the
    /// service behind answers the path whatever the method (a PHP script, a Django function
    /// view), or `POST /weather` and `FOO /weather` are served for free.
    pub fn route(mut self, route: &str, price: RoutePrice) -> Result<Self, PriceError> {
        self.shared_mut().routes.insert(route, price)?;
        Ok(self)
    }

    /// Prices `route` per request: `price` sees the request and returns its price, or `None`
    /// to let this request through for free.
    pub fn dynamic_route(mut self, route: &str, price: DynamicPrice) -> Result<Self, PriceError> {
        self.shared_mut().routes.insert_dynamic(route, price)?;
        Ok(self)
    }

    /// Serves browsers a paywall page they can pay from, signing with `script`.
    ///
    /// People open priced URLs in browsers too; without this they get the machine-readable 402
    /// that only agents understand. With at least one wallet script, a request without payment
    /// whose `Accept` includes `text/html` gets a self-contained HTML page (still status 402,
    /// still with `PAYMENT-REQUIRED`) that shows what is sold, the price, network and
    /// recipient, and pays in place. Other clients get the usual 402 unchanged.
    ///
    /// `script` is the JavaScript of a wallet for some scheme — this crate knows no chain, so
    /// scheme crates supply it, e.g. `tollgate_evm::browser::WALLET_SCRIPT` for `exact` on EVM
    /// networks through the browser's injected EIP-1193 wallet. Call it again to offer more
    /// schemes; the first script that supports an option pays it. The interface a script
    /// implements is described in [`paywall::html`](crate::paywall::html).
    ///
    /// ```
    /// use tollgate_server::{PaymentOption, PaywallLayer, RemoteFacilitator, RoutePrice};
    /// # const WALLET_SCRIPT: &str = "window.x402Wallets.push({supports: () => false, pay: async () => null});";
    /// // With the EVM scheme: `use tollgate_evm::browser::WALLET_SCRIPT;`
    /// let base = "eip155:8453".parse().unwrap();
    /// let layer = PaywallLayer::new(RemoteFacilitator::new("http://127.0.0.1:4020"))
    ///     .route(
    ///         "GET /article",
    ///         RoutePrice::new(PaymentOption::usd("$0.01", base, "0x209693Bc6afc0C5328bA36FaF03C514EF312287C").unwrap())
    ///             .description("Today's article"),
    ///     )
    ///     .unwrap()
    ///     .browser_wallet(WALLET_SCRIPT);
    /// let app: axum::Router = axum::Router::new()
    ///     .route("/article", axum::routing::get(|| async { "the article" }))
    ///     .layer(layer);
    /// ```
    pub fn browser_wallet(mut self, script: &'static str) -> Self {
        self.shared_mut().wallet_scripts.push(script);
        self
    }

    /// Offers the official `payment-identifier` extension in every 402 (`extensions` of the
    /// v2 challenge): a client that supports it gives each payment an id, so its retry of the
    /// same payment is recognised as the same attempt by the facilitator, and a different
    /// payment under a used id is refused as a conflict.
    ///
    /// With `required`, a payment without a valid id is refused with a 402 naming the
    /// extension (v1 payments, which carry no extensions, then cannot pay).
    ///
    /// ```
    /// use tollgate_server::{PaywallLayer, RemoteFacilitator};
    /// let layer = PaywallLayer::new(RemoteFacilitator::new("http://127.0.0.1:4020"))
    ///     .payment_identifier(false);
    /// # let _ = layer;
    /// ```
    pub fn payment_identifier(mut self, required: bool) -> Self {
        self.shared_mut().payment_identifier = Some(required);
        self
    }

    /// Chooses when payments are settled.
    pub fn settlement_mode(mut self, mode: SettlementMode) -> Self {
        self.shared_mut().mode = mode;
        self
    }

    /// How many times a `/verify` or `/settle` that got no answer (facilitator unreachable,
    /// timed out, response lost) is repeated, with the same attempt key and growing pauses,
    /// always within the payment's `maxTimeoutSeconds` (default 3). Repeating is safe: the
    /// facilitator settles a payment at most once and answers the same attempt with its
    /// original outcome.
    pub fn settle_retries(mut self, retries: u32) -> Self {
        self.shared_mut().retries = retries;
        self
    }

    /// Limits of the store of responses awaiting settlement ("paid means served").
    ///
    /// When settlement outlives the exchange — the facilitator says the transfer is pending,
    /// or gives no answer after the retries — the handler's response is kept in memory (with
    /// the attempt key) and the buyer gets `402` with reason `settlement_pending` and
    /// `Retry-After`. Retrying with the same payment asks the facilitator again with the same
    /// key; once settled, the kept response is delivered with its receipt, once. The handler is
    /// not run again. See [`PendingConfig`] for the limits and their defaults.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tollgate_server::{PaywallLayer, PendingConfig, RemoteFacilitator};
    /// let layer = PaywallLayer::new(RemoteFacilitator::new("http://127.0.0.1:4020"))
    ///     .pending_responses(PendingConfig {
    ///         max_entries: 256,
    ///         retry_after: Duration::from_secs(2),
    ///         ..PendingConfig::default()
    ///     })
    ///     .unwrap();
    /// # let _ = layer;
    /// ```
    pub fn pending_responses(mut self, config: PendingConfig) -> Result<Self, PendingConfigError> {
        config.validate()?;
        self.shared_mut().pending = PendingStore::new(config);
        Ok(self)
    }
}

impl<S, F> Layer<S> for PaywallLayer<F> {
    type Service = Paywall<S, F>;

    fn layer(&self, inner: S) -> Self::Service {
        Paywall {
            inner,
            shared: self.shared.clone(),
        }
    }
}
