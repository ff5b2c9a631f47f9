//! [`PaywallLayer`]: applies the paywall to a service.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tollgate_core::identity::{IdentityPolicy, IdentityProvider};
use tollgate_core::{NetworkPattern, Registry, SchemeServer};
use tower_layer::Layer;

use super::service::{Paywall, Shared};
use crate::gate::{
    DecisionSink, Gate, GateBuilder, Inner, PendingConfig, PendingConfigError, SettlementMode,
};
use crate::price::{DynamicPrice, PriceError, Pricing, RoutePrice, RouteTable};
use crate::FacilitatorClient;

/// A tower layer that puts prices on routes.
///
/// With axum, put each price on its route with [`price`](Self::price): axum's router then
/// decides which requests a price applies to, so a route and its price cannot disagree.
///
/// ```
/// use axum::routing::get;
/// use tollgate_server::{PaymentOption, PaywallLayer, RemoteFacilitator, RoutePrice};
/// let base = "eip155:8453".parse()?;
/// let paywall = PaywallLayer::new(RemoteFacilitator::new("http://127.0.0.1:4020"));
/// let weather = RoutePrice::new(PaymentOption::usd("$0.001", base, "0x209693Bc6afc0C5328bA36FaF03C514EF312287C")?)
///     .description("Today's weather");
/// let app: axum::Router = axum::Router::new()
///     .route("/weather", get(|| async { "sunny" }).route_layer(paywall.price(weather)?))
///     .route("/health", get(|| async { "ok" }));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// In front of a service that is not an axum router (a proxy, as `tollgate proxy` is), the
/// layer keeps a route table of its own, matched on the canonical path ([`route`](Self::route)):
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
                route: None,
                gate: GateBuilder::new(facilitator).build(),
                challenges: Mutex::new(HashMap::new()),
                wallet_scripts: Vec::new(),
                misconfigured: None,
                reason_labels: Default::default(),
                siwx: None,
            }),
        }
    }

    fn shared_mut(&mut self) -> &mut Shared<F> {
        Arc::get_mut(&mut self.shared).expect("configure the layer before cloning it")
    }

    fn gate_mut(&mut self) -> &mut Inner<F, axum::response::Response> {
        self.shared_mut()
            .gate
            .inner_mut()
            .expect("configure the layer before serving with it")
    }

    /// The gate that makes this paywall's payment decisions, for another transport that
    /// should share its claims and kept responses.
    pub fn gate(&self) -> &Gate<F, axum::response::Response> {
        &self.shared.gate
    }

    /// Prices `route` (`"GET /weather"`, or `"GET /files/*"` for everything under a prefix).
    ///
    /// A `GET` price covers `HEAD` too. `"* /weather"` prices every method: use it when the
    /// service behind answers the path whatever the method (a PHP script, a Django function
    /// view), or `POST /weather` and `FOO /weather` are served for free.
    ///
    /// Each option's payee is checked now — by the scheme servers given to
    /// [`schemes`](Self::schemes), or by the built-in address check of EVM networks — so a
    /// typo fails here, naming the value, instead of at the first buyer's payment.
    ///
    /// ```
    /// use tollgate_server::{PaymentOption, PaywallLayer, RemoteFacilitator, RoutePrice};
    /// let option = PaymentOption::atomic(
    ///     tollgate_proto::U256::from(1000u64),
    ///     "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913",
    ///     "eip155:8453".parse().unwrap(),
    ///     "0xSELLER",
    ///     None,
    /// );
    /// let err = PaywallLayer::new(RemoteFacilitator::new("http://127.0.0.1:4020"))
    ///     .route("GET /weather", RoutePrice::new(option))
    ///     .err()
    ///     .unwrap();
    /// assert!(err.to_string().contains("\"0xSELLER\""));
    /// ```
    pub fn route(mut self, route: &str, price: RoutePrice) -> Result<Self, PriceError> {
        let shared = self.shared_mut();
        if let Some(e) = shared.misconfigured.take() {
            return Err(e);
        }
        shared
            .routes
            .insert_checked(route, price, &shared.gate.inner.schemes)?;
        Ok(self)
    }

    /// Checks payees with these scheme servers (one per scheme and network pattern, e.g.
    /// `tollgate_evm::server::ExactEvmServer` for `exact` on `eip155:*`) and lets them complete
    /// each route's requirements from the facilitator's `/supported` kinds (read when first
    /// needed and every five minutes; while it was never read, priced requests are answered
    /// `503`). Routes already priced are checked again; every option must then have a scheme
    /// server.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use tollgate_core::{NetworkPattern, Registry, SchemeServer};
    /// use tollgate_proto::{Network, Scheme};
    /// use tollgate_server::{PaymentOption, PaywallLayer, RemoteFacilitator, RoutePrice};
    /// struct Lower;
    /// impl SchemeServer for Lower {
    ///     fn scheme(&self) -> Scheme { Scheme::Exact }
    ///     fn parse_pay_to(&self, _: &Network, pay_to: &str) -> Result<String, String> {
    ///         Ok(pay_to.to_ascii_lowercase())
    ///     }
    /// }
    /// let mut schemes: Registry<dyn SchemeServer> = Registry::new();
    /// schemes.register_arc("eip155:*".parse()?, Scheme::Exact, Arc::new(Lower))?;
    /// let base = "eip155:8453".parse()?;
    /// let layer = PaywallLayer::new(RemoteFacilitator::new("http://127.0.0.1:4020"))
    ///     .schemes(schemes)?
    ///     .route("GET /weather", RoutePrice::new(PaymentOption::usd("$0.001", base, "0x209693Bc6afc0C5328bA36FaF03C514EF312287C")?))?;
    /// # let _ = layer;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn schemes(mut self, schemes: Registry<dyn SchemeServer>) -> Result<Self, PriceError> {
        self.shared_mut().routes.check_prices(&schemes)?;
        self.gate_mut().schemes = schemes;
        Ok(self)
    }

    /// Adds one scheme server, for its scheme on the networks of `pattern` (see
    /// [`schemes`](Self::schemes)), in a builder chain: call it before pricing routes.
    ///
    /// A registration that overlaps an earlier one of the same scheme, or a route priced
    /// earlier whose payee this server refuses, is an error returned by the next
    /// [`route`](Self::route) or [`dynamic_route`](Self::dynamic_route); a layer used without
    /// such a call answers every priced request `500` rather than sell at an unchecked price.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use tollgate_core::SchemeServer;
    /// use tollgate_proto::{Network, Scheme};
    /// use tollgate_server::{PaymentOption, PaywallLayer, RemoteFacilitator, RoutePrice};
    /// struct Toy;
    /// impl SchemeServer for Toy {
    ///     fn scheme(&self) -> Scheme { "toy".parse().unwrap() }
    ///     fn parse_pay_to(&self, _: &Network, pay_to: &str) -> Result<String, String> {
    ///         if pay_to == "shop" { Ok(pay_to.into()) } else { Err("no such account".into()) }
    ///     }
    /// }
    /// let toy = || PaymentOption::new("toy".parse().unwrap(), "toy:1".parse().unwrap(), "TOY", 25u64.into(), "sh0p");
    /// let refused = PaywallLayer::new(RemoteFacilitator::new("http://127.0.0.1:4020"))
    ///     .scheme("toy:*".parse().unwrap(), Arc::new(Toy))
    ///     .route("GET /report", RoutePrice::new(toy()));
    /// assert!(refused.err().unwrap().to_string().contains("\"sh0p\""));
    /// ```
    pub fn scheme(mut self, pattern: NetworkPattern, server: Arc<dyn SchemeServer>) -> Self {
        let mut schemes = self.shared.gate.inner.schemes.clone();
        let checked = schemes
            .register_arc(pattern, server.scheme(), server)
            .map(|_| ())
            .map_err(PriceError::from)
            .and_then(|()| self.shared_mut().routes.check_prices(&schemes));
        match checked {
            Ok(()) => self.gate_mut().schemes = schemes,
            Err(e) => {
                let shared = self.shared_mut();
                shared.misconfigured.get_or_insert(e);
            }
        }
        self
    }

    /// A layer that charges `price` for **every** request it sees: put it on one axum route
    /// (`get(handler).route_layer(paywall.price(price)?)`), and axum's own routing decides
    /// which requests pay — `HEAD` with `GET`, trailing slashes, percent-escapes, whatever
    /// axum routes to that handler — so there is no second route table to disagree with it.
    ///
    /// It shares this paywall's facilitator, scheme servers, settlement mode, retries, kept
    /// responses, `payment-identifier` offer and browser wallets: configure the paywall first,
    /// then price its routes. Routes priced this way and routes of [`route`](Self::route) can
    /// be mixed; a request is charged by the first paywall layer it meets.
    ///
    /// Prefer `MethodRouter::route_layer` to `MethodRouter::layer`: `layer` also wraps axum's
    /// `405 Method Not Allowed` answer, which would then be behind the price.
    ///
    /// The request's path is still made canonical (or refused with `400`), as for
    /// [`route`](Self::route), so the handler and the challenge see the form that was priced.
    /// Each option's payee is checked now, as for [`route`](Self::route).
    pub fn price(&self, price: RoutePrice) -> Result<PriceLayer<F>, PriceError> {
        let mut price = price;
        if price.options.is_empty() && price.auth_only.is_empty() {
            return Err(PriceError::NoOptions);
        }
        self.shared.gate.check_price(&mut price)?;
        self.priced(Pricing::Static(price))
    }

    /// Like [`price`](Self::price), priced per request: `price` sees the request and returns
    /// its price, or `None` to let this request through for free.
    pub fn dynamic_price(&self, price: DynamicPrice) -> Result<PriceLayer<F>, PriceError> {
        self.priced(Pricing::Dynamic(price))
    }

    fn priced(&self, pricing: Pricing) -> Result<PriceLayer<F>, PriceError> {
        if let Some(e) = &self.shared.misconfigured {
            return Err(e.clone());
        }
        Ok(PriceLayer {
            shared: Arc::new(Shared {
                routes: RouteTable::default(),
                route: Some(pricing),
                gate: self.shared.gate.clone(),
                challenges: Mutex::new(HashMap::new()),
                wallet_scripts: self.shared.wallet_scripts.clone(),
                misconfigured: None,
                reason_labels: Default::default(),
                siwx: self.shared.siwx.clone(),
            }),
        })
    }

    /// Prices `route` per request: `price` sees the request and returns its price, or `None`
    /// to let this request through for free.
    pub fn dynamic_route(mut self, route: &str, price: DynamicPrice) -> Result<Self, PriceError> {
        if let Some(e) = self.shared_mut().misconfigured.take() {
            return Err(e);
        }
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
        self.gate_mut().payment_identifier = Some(required);
        self
    }

    /// Offers the official `sign-in-with-x` extension in every 402 and accepts its
    /// `SIGN-IN-WITH-X` header: every settled payment records its payer for the resource, and
    /// a wallet that paid for a resource signs in to get it again without paying; on an
    /// auth-only route ([`RoutePrice::auth_only`]) any wallet that signs in gets in. A failed
    /// sign-in is answered `402` with its reason in `error` (and nothing is served); a request
    /// that carries a payment as well pays instead. The handler finds the wallet as a
    /// [`SignedIn`](crate::siwx::SignedIn) in the request's extensions. Challenges are then
    /// built per request (each 402 has a fresh nonce), not cached. See [`crate::siwx`].
    ///
    /// ```
    /// use std::sync::Arc;
    /// use tollgate_server::siwx::{MemorySiwxStore, SignInWithX};
    /// use tollgate_server::{PaywallLayer, RemoteFacilitator};
    /// # struct Evm;
    /// # impl tollgate_core::SiwxVerifier for Evm {
    /// #     fn signature_type(&self) -> tollgate_proto::siwx::SignatureType { tollgate_proto::siwx::SignatureType::Eip191 }
    /// #     fn canonical_address(&self, a: &str) -> Result<String, String> { Ok(a.to_lowercase()) }
    /// #     fn message(&self, p: &tollgate_proto::siwx::SiwxPayload) -> Result<String, tollgate_core::SiwxFault> { Ok(String::new()) }
    /// #     fn verify<'a>(&'a self, p: &'a tollgate_proto::siwx::SiwxPayload) -> tollgate_core::BoxFuture<'a, Result<String, tollgate_core::SiwxFault>> { Box::pin(async { Err(tollgate_core::SiwxFault::new("invalid_siwx_signature", "")) }) }
    /// # }
    /// let mut verifiers = tollgate_core::SiwxVerifiers::new();
    /// // With tollgate-evm: `Arc::new(tollgate_evm::Eip191SiwxVerifier)`.
    /// verifiers.register("eip155:*".parse()?, Arc::new(Evm))?;
    /// let siwx = SignInWithX::new("https://api.example.com", verifiers, Arc::new(MemorySiwxStore::new()))?
    ///     .statement("Sign in to read what you bought");
    /// let layer = PaywallLayer::new(RemoteFacilitator::new("http://127.0.0.1:4020"))
    ///     .sign_in_with_x(siwx);
    /// # let _ = layer;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn sign_in_with_x(mut self, siwx: crate::siwx::SignInWithX) -> Self {
        self.shared_mut().siwx = Some(Arc::new(siwx));
        self
    }

    /// Serves only payers who meet `policy`, as `provider` assesses them: every request that
    /// carries a payment the facilitator verified is checked on the **verified payer** (never
    /// an address the request claims, such as `X-Wallet-Address`) after `/verify` and before
    /// the handler runs or anything is settled. A payer who fails gets `403` with a JSON body
    /// naming each failed rule and its remedy
    /// (`{"error": "identity_check_failed", "payer": …, "checks": […]}`); the payment is
    /// released unsettled, so a refused buyer is never charged. Requests without a payment get
    /// the usual `402` and never reach the provider. The request's `X-Operator-Token` is
    /// passed to the provider and never logged.
    ///
    /// Routes priced with [`price`](Self::price) share this check: configure it first.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use tollgate_core::identity::*;
    /// use tollgate_core::BoxFuture;
    /// use tollgate_server::{PaywallLayer, RemoteFacilitator};
    /// struct Everyone;
    /// impl IdentityProvider for Everyone {
    ///     fn name(&self) -> &str { "everyone" }
    ///     fn assess<'a>(&'a self, _: &'a Subject, _: &'a IdentityPolicy)
    ///         -> BoxFuture<'a, Result<Assessment, ProviderError>> {
    ///         Box::pin(async { Ok(Assessment { allowed: true, checks: vec![] }) })
    ///     }
    /// }
    /// let policy = IdentityPolicy { require_sanctions_clear: true, ..Default::default() };
    /// let layer = PaywallLayer::new(RemoteFacilitator::new("http://127.0.0.1:4020"))
    ///     .identity(Arc::new(Everyone), policy)
    ///     .identity_cache_ttl(std::time::Duration::from_secs(60));
    /// # let _ = layer;
    /// ```
    pub fn identity(mut self, provider: Arc<dyn IdentityProvider>, policy: IdentityPolicy) -> Self {
        self.gate_mut().identity.provider = Some((provider, policy));
        self
    }

    /// When the identity provider cannot answer: `false` (the default) answers `503` with
    /// nothing settled and nothing served; `true` serves the request without the check and
    /// logs the decision as `failed_open`.
    pub fn fail_open(mut self, fail_open: bool) -> Self {
        self.gate_mut().identity.fail_open = fail_open;
        self
    }

    /// How long a provider's verdict is reused for the same payer, network and operator token
    /// (default 5 minutes; zero: never). Outages are never cached.
    pub fn identity_cache_ttl(mut self, ttl: std::time::Duration) -> Self {
        self.gate_mut().identity.ttl = ttl;
        self
    }

    /// Hands every identity decision to `sink` (a durable store) as well as to the log.
    pub fn decision_sink(mut self, sink: Arc<dyn DecisionSink>) -> Self {
        self.gate_mut().identity.sink = Some(sink);
        self
    }

    /// Chooses when payments are settled.
    pub fn settlement_mode(mut self, mode: SettlementMode) -> Self {
        self.gate_mut().mode = mode;
        self
    }

    /// How many times a `/verify` or `/settle` that got no answer (facilitator unreachable,
    /// timed out, response lost) is repeated, with the same attempt key and growing pauses,
    /// always within the payment's `maxTimeoutSeconds` (default 3). Repeating is safe: the
    /// facilitator settles a payment at most once and answers the same attempt with its
    /// original outcome.
    pub fn settle_retries(mut self, retries: u32) -> Self {
        self.gate_mut().retries = retries;
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
        self.gate_mut().pending = crate::gate::PendingStore::new(config);
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

/// A layer that charges one price for every request it sees, made by
/// [`PaywallLayer::price`]: put it on one axum route (`MethodRouter::route_layer`), so axum's
/// router decides which requests pay.
pub struct PriceLayer<F> {
    shared: Arc<Shared<F>>,
}

impl<F> Clone for PriceLayer<F> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
        }
    }
}

impl<S, F> Layer<S> for PriceLayer<F> {
    type Service = Paywall<S, F>;

    fn layer(&self, inner: S) -> Self::Service {
        Paywall {
            inner,
            shared: self.shared.clone(),
        }
    }
}
