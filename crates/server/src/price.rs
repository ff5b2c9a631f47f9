//! What a route costs: payment options and the route table.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use http::Method;
use serde_json::{Map, Value};

use crate::paywall::target::{literal_key, match_key, TargetError};
use tollgate_core::{Registry, SchemeServer};
use tollgate_proto::money::{DecimalAmount, MoneyError};
use tollgate_proto::{asset, AtomicAmount, Network, PaymentRequirements, Scheme, U256};

/// One way to pay for a route: an amount of one asset on one network, to one recipient, in
/// one scheme.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentOption {
    /// The payment scheme (`exact` for every constructor but [`PaymentOption::new`]).
    pub scheme: Scheme,
    /// The network.
    pub network: Network,
    /// The asset (token address).
    pub asset: String,
    /// The price in atomic units.
    pub amount: U256,
    /// The recipient.
    pub pay_to: String,
    /// How long the buyer has to complete the payment.
    pub max_timeout_seconds: u64,
    /// Scheme data for the buyer (e.g. the token's signing-domain name and version).
    pub extra: Option<Map<String, Value>>,
}

/// Why a price cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PriceError {
    /// The amount does not parse.
    #[error(transparent)]
    Money(#[from] MoneyError),
    /// A dollar price on a network without a known dollar stablecoin.
    #[error(
        "no known stablecoin on {0}: give the price as an atomic amount with an explicit asset"
    )]
    NoDefaultAsset(Network),
    /// The network's stablecoin moves by a transfer method Tollgate does not settle.
    #[error("the known stablecoin {symbol} on {network} is paid via {method}, which Tollgate does not settle yet: give an atomic price in another asset")]
    UnsupportedTransferMethod {
        /// The network.
        network: Network,
        /// The token.
        symbol: &'static str,
        /// Its transfer method.
        method: &'static str,
    },
    /// A price with no payment option: nothing could pay it.
    #[error("a price needs at least one payment option")]
    NoOptions,
    /// The route pattern is not `METHOD /path`.
    #[error("route {0:?} is not \"METHOD /path\" (e.g. \"GET /weather\")")]
    BadRoute(String),
    /// The payee cannot receive payments on the option's network (not an address of that
    /// chain, the zero address, a failed checksum…). Caught when the price is built, not at
    /// the first buyer's failed payment.
    #[error("pay_to {pay_to:?} cannot be paid on {network}: {reason}")]
    BadPayTo {
        /// The network.
        network: Network,
        /// The payee as given.
        pay_to: String,
        /// Why it is refused.
        reason: String,
    },
    /// The paywall was given scheme servers, and none is registered for this option's scheme
    /// and network, so its payee cannot be checked nor its requirements completed.
    #[error("no scheme server is registered for `{scheme}` on {network}: register one (e.g. `tollgate_evm::server::ExactEvmServer` for `exact` on `eip155:*`) before pricing with it")]
    NoSchemeServer {
        /// The option's scheme.
        scheme: Scheme,
        /// The option's network.
        network: Network,
    },
    /// A scheme server's registration overlaps another one.
    #[error("scheme servers: {0}")]
    Register(#[from] tollgate_core::RegisterError),
    /// The route's path has no canonical form, so no request could ever match it.
    #[error("route {route:?}: {reason}")]
    BadRoutePath {
        /// The route as given.
        route: String,
        /// Why its path is refused.
        reason: TargetError,
    },
    /// The route would price, for the same method, paths another route already prices the
    /// same way (`GET /weather` and `GET /Weather`; `GET /v1` and `GET /v1/*`, which covers
    /// `/v1`): one of the two prices could never apply, so neither is guessed.
    #[error("route {route:?} overlaps route {with:?}: both price the same paths for the same method; remove one, or make one more specific")]
    RouteConflict {
        /// The route being priced.
        route: String,
        /// The route already priced that it overlaps.
        with: String,
    },
    /// The route router refused the route's pattern for another reason.
    #[error("route {route:?} cannot be matched: {reason}")]
    BadRoutePattern {
        /// The route as given.
        route: String,
        /// Why the router refused it.
        reason: String,
    },
}

impl PaymentOption {
    /// A price in dollars (`"$0.01"` or `"0.01"`), paid in the network's known stablecoin.
    ///
    /// ```
    /// use tollgate_server::PaymentOption;
    /// let base = "eip155:8453".parse().unwrap();
    /// let option = PaymentOption::usd("$0.01", base, "0x209693Bc6afc0C5328bA36FaF03C514EF312287C").unwrap();
    /// assert_eq!(option.amount.to::<u64>(), 10_000);
    /// ```
    pub fn usd(price: &str, network: Network, pay_to: &str) -> Result<Self, PriceError> {
        let known = asset::default_asset(&network)
            .ok_or_else(|| PriceError::NoDefaultAsset(network.clone()))?;
        if let Some(method) = known.transfer_method {
            // Tollgate settles the scheme's default transfer method only; advertising a token
            // it cannot settle would take payments it cannot collect.
            return Err(PriceError::UnsupportedTransferMethod {
                network,
                symbol: known.symbol,
                method,
            });
        }
        check_payee(&network, pay_to)?;
        let amount = price.parse::<DecimalAmount>()?.to_atomic(known.decimals)?;
        let extra = Some(known.requirements_extra()).filter(|m| !m.is_empty());
        Ok(Self {
            scheme: Scheme::Exact,
            network,
            asset: known.address.to_owned(),
            amount,
            pay_to: pay_to.to_owned(),
            max_timeout_seconds: 60,
            extra,
        })
    }

    /// A price in human units (`"$0.01"` or `"0.01"`) of `token` — any token described by a
    /// [`Token`](tollgate_proto::token::Token), such as a devnet's test USDC
    /// (`devnet.usdc()`) — to `pay_to` (an address, or anything that prints as one). The atomic
    /// amount comes from the token's decimals and `extra` from its signing domain, so neither
    /// is written by hand.
    ///
    /// ```
    /// use tollgate_proto::token::Token;
    /// use tollgate_server::PaymentOption;
    /// let usdc = Token::new("eip155:31337".parse().unwrap(), "0x5FbDB2315678afecb367f032d93F642f64180aa3", "USDC", 6)
    ///     .eip712("USD Coin", "2");
    /// let option = PaymentOption::price("$0.01", &usdc, "0x209693Bc6afc0C5328bA36FaF03C514EF312287C").unwrap();
    /// assert_eq!(option.amount.to::<u64>(), 10_000);
    /// assert_eq!(option.extra.unwrap()["name"], "USD Coin");
    /// ```
    pub fn price(
        price: &str,
        token: &tollgate_proto::token::Token,
        pay_to: impl std::fmt::Display,
    ) -> Result<Self, PriceError> {
        let pay_to = pay_to.to_string();
        check_payee(&token.network, &pay_to)?;
        let amount = price.parse::<DecimalAmount>()?.to_atomic(token.decimals)?;
        let extra = Some(token.requirements_extra()).filter(|m| !m.is_empty());
        Ok(Self::atomic(
            amount,
            &token.address,
            token.network.clone(),
            &pay_to,
            extra,
        ))
    }

    /// A price in atomic units of an explicit asset, in the `exact` scheme; `extra` carries
    /// what buyers need to sign for it (for EIP-3009 tokens: `{"name": …, "version": …}`).
    ///
    /// It cannot fail, so its payee is checked when the route is priced
    /// ([`PaywallLayer::route`](crate::PaywallLayer::route), [`RouteTable::insert`]).
    pub fn atomic(
        amount: U256,
        asset: &str,
        network: Network,
        pay_to: &str,
        extra: Option<Map<String, Value>>,
    ) -> Self {
        Self::new(Scheme::Exact, network, asset, AtomicAmount(amount), pay_to).with_extra(extra)
    }

    /// A price in any scheme — one Tollgate knows or one defined elsewhere
    /// (`"toy".parse()`) — of `amount` atomic units of `asset` on `network`, to
    /// `pay_to`. Add the scheme's data for buyers with [`extra`](Self::extra). The payee is
    /// checked when the route is priced, by the paywall's scheme server for this scheme and
    /// network (see [`PaywallLayer::schemes`](crate::PaywallLayer::schemes)).
    ///
    /// ```
    /// use tollgate_proto::Scheme;
    /// use tollgate_server::PaymentOption;
    /// let toy: Scheme = "toy".parse().unwrap();
    /// let option = PaymentOption::new(toy.clone(), "toy:1".parse().unwrap(), "TOY", 5u64.into(), "alice")
    ///     .extra(serde_json::json!({"memo": "x"}).as_object().unwrap().clone());
    /// let requirements = option.requirements();
    /// assert_eq!(requirements.scheme, toy);
    /// assert_eq!(requirements.extra.unwrap()["memo"], "x");
    /// ```
    pub fn new(
        scheme: Scheme,
        network: Network,
        asset: impl Into<String>,
        amount: AtomicAmount,
        pay_to: impl Into<String>,
    ) -> Self {
        Self {
            scheme,
            network,
            asset: asset.into(),
            amount: amount.0,
            pay_to: pay_to.into(),
            max_timeout_seconds: 60,
            extra: None,
        }
    }

    /// Sets the scheme data buyers need (`extra` of the requirements).
    pub fn extra(self, extra: Map<String, Value>) -> Self {
        self.with_extra(Some(extra))
    }

    /// Sets or clears the scheme data buyers need.
    pub fn with_extra(mut self, extra: Option<Map<String, Value>>) -> Self {
        self.extra = extra;
        self
    }

    /// Sets how long the buyer has to complete the payment (`maxTimeoutSeconds`, default 60).
    pub fn max_timeout(mut self, seconds: u64) -> Self {
        self.max_timeout_seconds = seconds;
        self
    }

    /// Checks the payee and puts it in canonical form: with the scheme server registered in
    /// `schemes` for this option's scheme and network; with no scheme servers at all, by the
    /// built-in check of the network's address format (EVM: `0x` and 40 hex digits, not the
    /// zero address; other namespaces are left to their scheme servers).
    pub fn check(&mut self, schemes: &Registry<dyn SchemeServer>) -> Result<(), PriceError> {
        if schemes.is_empty() {
            return check_payee(&self.network, &self.pay_to);
        }
        let server =
            schemes
                .get(&self.scheme, &self.network)
                .ok_or_else(|| PriceError::NoSchemeServer {
                    scheme: self.scheme.clone(),
                    network: self.network.clone(),
                })?;
        self.pay_to = server
            .parse_pay_to(&self.network, &self.pay_to)
            .map_err(|reason| PriceError::BadPayTo {
                network: self.network.clone(),
                pay_to: self.pay_to.clone(),
                reason,
            })?;
        Ok(())
    }

    /// The wire requirements.
    pub fn requirements(&self) -> PaymentRequirements {
        PaymentRequirements {
            scheme: self.scheme.clone(),
            network: self.network.clone(),
            amount: AtomicAmount(self.amount),
            asset: self.asset.clone(),
            pay_to: self.pay_to.clone(),
            max_timeout_seconds: self.max_timeout_seconds,
            extra: self.extra.clone(),
        }
    }
}

/// The built-in payee check, used when the paywall has no scheme servers: a payee on an EVM
/// network (`eip155:*`) must be `0x` and 40 hex digits and not the zero address, whatever the
/// scheme, since every EVM scheme pays an account. Other namespaces have no built-in rule;
/// their scheme servers check them. (The EVM scheme server, `tollgate_evm::server`, also
/// verifies mixed-case checksums and returns the checksummed form.)
fn check_payee(network: &Network, pay_to: &str) -> Result<(), PriceError> {
    if network.namespace() != "eip155" {
        return Ok(());
    }
    let bad = |reason: &str| PriceError::BadPayTo {
        network: network.clone(),
        pay_to: pay_to.to_owned(),
        reason: reason.to_owned(),
    };
    let hex = pay_to
        .strip_prefix("0x")
        .or_else(|| pay_to.strip_prefix("0X"))
        .ok_or_else(|| bad("an EVM address starts with 0x"))?;
    if hex.len() != 40 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad("an EVM address is 0x and 40 hex digits (20 bytes)"));
    }
    if hex.bytes().all(|b| b == b'0') {
        return Err(bad("the zero address cannot receive tokens"));
    }
    Ok(())
}

/// A priced route: its payment options and how it describes itself in the 402.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutePrice {
    /// Accepted ways to pay (at least one).
    pub options: Vec<PaymentOption>,
    /// Shown to buyers in the 402's resource info.
    pub description: Option<String>,
    /// MIME type of the response.
    pub mime_type: Option<String>,
    /// The route's Bazaar discovery description, offered in its 402 as `extensions.bazaar`
    /// (see [`crate::bazaar`]).
    /// (Boxed: most routes have none, and a price is copied into every route table entry.)
    pub bazaar: Option<Box<crate::bazaar::BazaarExtension>>,
    /// Service metadata (`serviceName`, `tags`, `iconUrl`) shown on the 402's `resource`.
    pub service: crate::bazaar::ServiceMetadata,
    /// For an **auth-only** route ([`RoutePrice::auth_only`]): the networks whose wallets may
    /// sign in; no payment is offered, and any wallet that signs in gets in. Empty for a paid
    /// route.
    pub auth_only: Vec<tollgate_proto::Network>,
}

impl RoutePrice {
    /// A route payable with one option.
    pub fn new(option: PaymentOption) -> Self {
        Self {
            options: vec![option],
            description: None,
            mime_type: None,
            bazaar: None,
            service: crate::bazaar::ServiceMetadata::default(),
            auth_only: Vec::new(),
        }
    }

    /// An **auth-only** route: no payment offered; any wallet of `networks` that signs in
    /// (sign-in-with-x, [`PaywallLayer::sign_in_with_x`](crate::PaywallLayer::sign_in_with_x))
    /// gets in, and every other request gets a 402 offering only the sign-in.
    pub fn auth_only(networks: Vec<tollgate_proto::Network>) -> Self {
        Self {
            options: Vec::new(),
            description: None,
            mime_type: None,
            bazaar: None,
            service: crate::bazaar::ServiceMetadata::default(),
            auth_only: networks,
        }
    }

    /// Describes the route for Bazaar discovery: `bazaar` is built (and validated against its
    /// schema) now, and offered in every 402 of the route.
    pub fn discoverable(
        mut self,
        bazaar: crate::bazaar::Bazaar,
    ) -> Result<Self, crate::bazaar::BazaarError> {
        self.bazaar = Some(Box::new(bazaar.build()?));
        Ok(self)
    }

    /// Sets the service metadata shown on the 402's `resource`, checked against the spec's
    /// limits (a name of at most 32 printable ASCII characters, at most 5 distinct tags of at
    /// most 32, an `http(s)` icon URL on a public host name).
    pub fn service(
        mut self,
        name: &str,
        tags: &[&str],
        icon_url: Option<&str>,
    ) -> Result<Self, crate::bazaar::MetadataError> {
        self.service = crate::bazaar::service_metadata(Some(name), tags, icon_url)?;
        Ok(self)
    }

    /// What the route offers in its 402's `extensions` (its bazaar description, if any).
    pub fn offered_extensions(&self) -> tollgate_proto::Extensions {
        let mut extensions = tollgate_proto::Extensions::new();
        if let Some(bazaar) = &self.bazaar {
            bazaar.insert_into(&mut extensions);
        }
        extensions
    }

    /// Adds another accepted option (e.g. the same price on another network).
    pub fn or(mut self, option: PaymentOption) -> Self {
        self.options.push(option);
        self
    }

    /// Sets the description.
    pub fn description(mut self, text: impl Into<String>) -> Self {
        self.description = Some(text.into());
        self
    }

    /// Sets the MIME type.
    pub fn mime_type(mut self, mime: impl Into<String>) -> Self {
        self.mime_type = Some(mime.into());
        self
    }

    /// Checks every option's payee ([`PaymentOption::check`]).
    pub fn check(&mut self, schemes: &Registry<dyn SchemeServer>) -> Result<(), PriceError> {
        self.options.iter_mut().try_for_each(|o| o.check(schemes))
    }
}

/// A route's path, as the [match key](crate::paywall::target::match_key) of its canonical form.
#[derive(Debug, Clone)]
enum PathPattern {
    /// `/weather`: that path (in any spelling with the same key, with or without a trailing
    /// slash), and its format extensions (`/weather.json`).
    Exact(String),
    /// `/files/*`: the directory itself (`/files`, `/files/`, `/files.json`) and everything
    /// under it.
    Under(String),
    /// `/files*`: every path whose key starts with the prefix (`/files`, `/files2`, `/files/a`).
    Prefix(String),
}

impl PathPattern {
    /// The `matchit` routes that together match exactly the keys this pattern covers.
    ///
    /// Keys are matched as `matchit` paths (the root's key `""` as `/`); a literal `{` or `}`
    /// of a key is escaped. A format extension of the last segment (`/weather.json`) is the
    /// parameter `.{ext}`: Rails routes it to the `/weather` action (the optional `(.:format)`
    /// of every route) and older Spring MVC matches `/weather.*` to `/weather`, so such a path
    /// is priced as the route. The parameter names are the same in every pattern, since
    /// `matchit` refuses two names for one position.
    fn matchit_routes(&self) -> Vec<String> {
        let escape = |key: &str| key.replace('{', "{{").replace('}', "}}");
        match self {
            Self::Exact(key) if key.is_empty() => vec!["/".into()],
            Self::Exact(key) => {
                let key = escape(key);
                vec![format!("{key}.{{ext}}"), key]
            }
            // `/*`: every path, the root included (`/{*rest}` needs at least one character).
            Self::Under(dir) if dir.is_empty() => vec!["/".into(), "/{*rest}".into()],
            Self::Under(dir) => {
                let dir = escape(dir);
                vec![format!("{dir}.{{ext}}"), format!("{dir}/{{*rest}}"), dir]
            }
            Self::Prefix(prefix) => {
                let prefix = escape(prefix);
                vec![
                    format!("{prefix}{{more}}"),
                    format!("{prefix}{{more}}/{{*rest}}"),
                    format!("{prefix}/{{*rest}}"),
                    prefix,
                ]
            }
        }
    }
}

/// The route method that prices every request method (`"* /weather"`): for upstreams that
/// answer a path whatever the method (PHP scripts, Django function views, `app.all` in
/// Express), where pricing `GET` alone leaves `POST /weather` or `FOO /weather` free.
const ANY_METHOD: &str = "*";

/// Computes a route's price from the request; `None` makes this request free.
///
/// The closure reads what it needs from the request synchronously and returns a `'static`
/// future, so it can consult a database or a quote service without borrowing the request.
pub type DynamicPrice = Arc<
    dyn Fn(
            &http::Request<axum::body::Body>,
        ) -> Pin<Box<dyn Future<Output = Option<RoutePrice>> + Send>>
        + Send
        + Sync,
>;

/// How a route is priced.
#[derive(Clone)]
pub enum Pricing {
    /// The same price for every request.
    Static(RoutePrice),
    /// A price per request.
    Dynamic(DynamicPrice),
}

impl std::fmt::Debug for Pricing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Static(p) => f.debug_tuple("Static").field(p).finish(),
            Self::Dynamic(_) => f.write_str("Dynamic(..)"),
        }
    }
}

/// The routes of one route method (upper-cased, or `*`), matched by `matchit`.
#[derive(Debug, Clone, Default)]
struct MethodRoutes {
    /// `matchit` route → index of the priced route it belongs to.
    router: matchit::Router<usize>,
    /// The same, to name the priced route a new one conflicts with.
    owners: HashMap<String, usize>,
}

/// Routes and their prices, matched with a router crate (`matchit`, the one axum uses) on the
/// [match key](crate::paywall::target::match_key) of the request's path.
///
/// Which route a request gets does not depend on the order routes were priced in: among the
/// routes of one method, a literal segment is preferred to a format extension, prefix or
/// wildcard (`GET /v1/free` over `GET /v1/*` for `/v1/free`); a price for the request's own
/// method is preferred to a `GET` price covering `HEAD`, and both to a `*` price. Two routes
/// that would both price the same path for the same method in the same way (`GET /weather`
/// and `GET /Weather`, or `GET /v1` and `GET /v1/*`, which covers `/v1`) are refused when
/// priced ([`PriceError::RouteConflict`]), so no price silently shadows another.
#[derive(Debug, Clone, Default)]
pub struct RouteTable {
    /// Route as given, and its pricing; indexed by the routers' values.
    entries: Vec<(String, Pricing)>,
    /// One router per route method.
    methods: HashMap<String, MethodRoutes>,
}

impl RouteTable {
    /// Prices `route` (`"GET /weather"`, or `"GET /files/*"` for a prefix; `"* /weather"` for
    /// every method, `OPTIONS` included). Payees get the built-in check
    /// ([`PaymentOption::check`] without scheme servers).
    pub fn insert(&mut self, route: &str, price: RoutePrice) -> Result<(), PriceError> {
        self.insert_checked(route, price, &Registry::new())
    }

    /// Prices `route`, its payees checked and made canonical by `schemes`
    /// ([`RoutePrice::check`]).
    pub fn insert_checked(
        &mut self,
        route: &str,
        mut price: RoutePrice,
        schemes: &Registry<dyn SchemeServer>,
    ) -> Result<(), PriceError> {
        if price.options.is_empty() && price.auth_only.is_empty() {
            return Err(PriceError::BadRoute(route.to_owned()));
        }
        price.check(schemes)?;
        self.insert_pricing(route, Pricing::Static(price))
    }

    /// Checks every static price again with `schemes` (a paywall given its scheme servers after
    /// its routes were priced).
    pub(crate) fn check_prices(
        &mut self,
        schemes: &Registry<dyn SchemeServer>,
    ) -> Result<(), PriceError> {
        for (_, pricing) in &mut self.entries {
            if let Pricing::Static(price) = pricing {
                price.check(schemes)?;
            }
        }
        Ok(())
    }

    /// Prices `route` per request with `price`.
    pub fn insert_dynamic(&mut self, route: &str, price: DynamicPrice) -> Result<(), PriceError> {
        self.insert_pricing(route, Pricing::Dynamic(price))
    }

    fn insert_pricing(&mut self, route: &str, pricing: Pricing) -> Result<(), PriceError> {
        let bad = || PriceError::BadRoute(route.to_owned());
        let (method, path) = route.split_once(' ').ok_or_else(bad)?;
        let method: Method = method.parse().map_err(|_| bad())?;
        if !path.starts_with('/') {
            return Err(bad());
        }
        let key = |p: &str| {
            match_key(p).map_err(|reason| PriceError::BadRoutePath {
                route: route.to_owned(),
                reason,
            })
        };
        let pattern = match path.strip_suffix('*') {
            Some(dir) if dir.ends_with('/') => PathPattern::Under(key(dir)?),
            Some(prefix) => PathPattern::Prefix(key(prefix)?),
            None => PathPattern::Exact(key(path)?),
        };
        // Methods compare without case: an upstream may upper-case `get`.
        let method = method.as_str().to_ascii_uppercase();
        let index = self.entries.len();
        // Into a copy, so that a conflict on the second `matchit` route of a pattern leaves
        // no half-priced route behind.
        let mut routes = self.methods.get(&method).cloned().unwrap_or_default();
        for path in pattern.matchit_routes() {
            if let Err(e) = routes.router.insert(path.clone(), index) {
                return Err(match e {
                    matchit::InsertError::Conflict { with } => PriceError::RouteConflict {
                        route: route.to_owned(),
                        with: routes
                            .owners
                            .get(&with)
                            .map_or(with, |&i| self.entries[i].0.clone()),
                    },
                    other => PriceError::BadRoutePattern {
                        route: route.to_owned(),
                        reason: other.to_string(),
                    },
                });
            }
            routes.owners.insert(path, index);
        }
        self.methods.insert(method, routes);
        self.entries.push((route.to_owned(), pricing));
        Ok(())
    }

    /// How a request for `method` and `path` is priced, if it is.
    ///
    /// `path` is matched by its [match key](crate::paywall::target::match_key), so every
    /// spelling an upstream may resolve to a priced route finds that route: dot segments,
    /// percent-escapes, repeated or trailing slashes, letter case. A path without a canonical
    /// form matches nothing here; the paywall refuses such requests with `400` before pricing
    /// them (see [`lookup`](Self::lookup) to tell the two apart).
    pub fn find(&self, method: &Method, path: &str) -> Option<&Pricing> {
        self.lookup(method, path).ok().flatten()
    }

    /// Like [`find`](Self::find), but says why a path cannot be priced at all.
    pub fn lookup(&self, method: &Method, path: &str) -> Result<Option<&Pricing>, TargetError> {
        let key = match_key(path)?;
        Ok(self.position(method, &key).map(|i| &self.entries[i].1))
    }

    /// The index of the route pricing `method` at match key `key`: the request's own method
    /// (any case), then `GET` for `HEAD` (every HTTP server answers `HEAD` from the `GET`
    /// handler), then `*`.
    fn position(&self, method: &Method, key: &str) -> Option<usize> {
        let path = if key.is_empty() { "/" } else { key };
        let method = method.as_str().to_ascii_uppercase();
        let get_for_head = (method == Method::HEAD.as_str()).then_some(Method::GET.as_str());
        let found = [Some(method.as_str()), get_for_head, Some(ANY_METHOD)]
            .into_iter()
            .flatten()
            .find_map(|m| {
                let found = self.methods.get(m)?.router.at(path).ok()?;
                Some(*found.value)
            });
        found
    }

    /// Whether `raw`, read as written (its [literal key](crate::paywall::target::literal_key):
    /// dot segments as names), falls under a priced route other than the one its canonical
    /// form matches. A router that ran before the paywall (axum's, with `Router::layer`) may
    /// have chosen that route's handler from the raw path; pricing the request as the resolved
    /// path would then run a priced handler at another price, or for free.
    pub fn routed_apart(&self, method: &Method, raw: &str) -> bool {
        let (Ok(literal), Ok(key)) = (literal_key(raw), match_key(raw)) else {
            return false;
        };
        literal != key
            && self
                .position(method, &literal)
                .is_some_and(|i| self.position(method, &key) != Some(i))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAYEE: &str = "0x209693Bc6afc0C5328bA36FaF03C514EF312287C";

    fn devnet_usdc() -> tollgate_proto::token::Token {
        tollgate_proto::token::Token::new(
            "eip155:31337".parse().unwrap(),
            "0x5FbDB2315678afecb367f032d93F642f64180aa3",
            "USDC",
            6,
        )
        .eip712("USD Coin", "2")
    }

    #[test]
    fn price_in_a_described_token_uses_its_decimals_and_domain() {
        let usdc = devnet_usdc();
        let pay_to: alloy::primitives::Address = "0x209693bc6afc0c5328ba36faf03c514ef312287c"
            .parse()
            .unwrap();
        let option = PaymentOption::price("0.25", &usdc, pay_to).unwrap();
        let req = option.requirements();
        assert_eq!(req.amount.0, U256::from(250_000u64));
        assert_eq!(req.asset, usdc.address);
        assert_eq!(req.network, usdc.network);
        // An address prints checksummed: the recipient the buyer sees is the one given.
        assert_eq!(req.pay_to, "0x209693Bc6afc0C5328bA36FaF03C514EF312287C");
        let extra = req.extra.unwrap();
        assert_eq!(
            (extra["name"].as_str(), extra["version"].as_str()),
            (Some("USD Coin"), Some("2"))
        );

        let mut no_domain = usdc.clone();
        no_domain.eip712 = None;
        assert_eq!(
            PaymentOption::price("1", &no_domain, PAYEE).unwrap().extra,
            None
        );
    }

    #[test]
    fn price_finer_than_the_token_is_refused() {
        assert!(matches!(
            PaymentOption::price("$0.0000001", &devnet_usdc(), PAYEE),
            Err(PriceError::Money(_))
        ));
        assert!(matches!(
            PaymentOption::price("a dollar", &devnet_usdc(), PAYEE),
            Err(PriceError::Money(_))
        ));
    }

    #[test]
    fn routes_match_exactly_or_by_prefix() {
        let base: Network = "eip155:8453".parse().unwrap();
        let price = RoutePrice::new(PaymentOption::usd("0.001", base, PAYEE).unwrap());
        let mut t = RouteTable::default();
        t.insert("GET /weather", price.clone()).unwrap();
        t.insert("POST /files/*", price.clone()).unwrap();
        assert!(matches!(
            t.find(&Method::GET, "/weather"),
            Some(Pricing::Static(_))
        ));
        assert!(t.find(&Method::POST, "/weather").is_none());
        assert!(t.find(&Method::GET, "/weather/x").is_none());
        assert!(t.find(&Method::POST, "/files/a/b").is_some());
        assert!(t.insert("GET weather", price.clone()).is_err());
        assert!(t.insert("/weather", price).is_err());
    }

    fn table(routes: &[&str]) -> RouteTable {
        let base: Network = "eip155:8453".parse().unwrap();
        let price = RoutePrice::new(PaymentOption::usd("0.001", base, PAYEE).unwrap());
        let mut t = RouteTable::default();
        for r in routes {
            t.insert(r, price.clone()).unwrap();
        }
        t
    }

    #[test]
    fn every_spelling_of_a_priced_path_is_priced() {
        let t = table(&[
            "GET /weather",
            "POST /v1/*",
            "GET /files*",
            "PUT /Caf\u{e9}",
        ]);
        let get = Method::GET;
        for path in [
            "/weather",
            "/weather/",
            "/WEATHER",
            "/Weather//",
            "/x/../weather",
            "/x/%2e%2e/weather",
            "/x/.%2E/weather",
            "/./weather",
            "//weather",
            "/%77eather",
            "/%57EATHER",
            "/weather.",
            "/weather%20",
            "/%EF%BD%97eather",
        ] {
            assert!(t.find(&get, path).is_some(), "GET {path}");
            assert!(t.find(&Method::HEAD, path).is_some(), "HEAD {path}");
            assert!(
                t.find(&"get".parse().unwrap(), path).is_some(),
                "get {path}"
            );
        }
        for path in ["/weathers", "/weather/x", "/x/weather", "/"] {
            assert!(t.find(&get, path).is_none(), "GET {path}");
        }
        assert!(t.find(&Method::POST, "/weather").is_none());
        assert!(t.find(&Method::DELETE, "/weather").is_none());

        let post = Method::POST;
        for path in [
            "/v1",
            "/v1/",
            "/V1/a",
            "/x/../v1/a",
            "/v1/a/b/../c",
            "/%76%31/a",
            "//v1//a",
        ] {
            assert!(t.find(&post, path).is_some(), "POST {path}");
        }
        for path in ["/v10", "/v1x/a", "/v", "/"] {
            assert!(t.find(&post, path).is_none(), "POST {path}");
        }
        assert!(
            t.find(&Method::HEAD, "/v1/a").is_none(),
            "HEAD is priced by GET only"
        );

        for path in ["/files", "/files2", "/FILES/a", "/x/../files/a"] {
            assert!(t.find(&get, path).is_some(), "GET {path}");
        }
        assert!(t.find(&get, "/file").is_none());

        for path in ["/caf%C3%A9", "/CAF%C3%89/", "/caf\u{e9}"] {
            assert!(t.find(&Method::PUT, path).is_some(), "PUT {path}");
        }

        // Paths without a canonical form match nothing; `lookup` says why.
        assert!(t.find(&get, "/x/..%2Fweather").is_none());
        assert_eq!(
            t.lookup(&get, "/weather;x").unwrap_err(),
            TargetError::PathParameter
        );
        assert!(t.lookup(&get, "/x/../weather").unwrap().is_some());
        assert!(t.lookup(&get, "/other").unwrap().is_none());
    }

    #[test]
    fn a_root_prefix_prices_everything_and_bad_route_paths_are_refused() {
        let t = table(&["GET /*"]);
        for path in ["/", "/a", "/a/b/", "//"] {
            assert!(t.find(&Method::GET, path).is_some(), "{path}");
        }
        let mut t = RouteTable::default();
        let base: Network = "eip155:8453".parse().unwrap();
        let price = RoutePrice::new(PaymentOption::usd("0.001", base, PAYEE).unwrap());
        for bad in [
            "GET /a;b",
            "GET /a%2Fb",
            "GET /../a",
            "GET /a\\b",
            "GET /a%zz",
        ] {
            assert!(
                matches!(
                    t.insert(bad, price.clone()),
                    Err(PriceError::BadRoutePath { .. })
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_format_extension_is_priced_as_its_route() {
        let t = table(&["GET /weather", "POST /v1/*", "GET /"]);
        for path in [
            "/weather.json",
            "/WEATHER.Xml",
            "/weather.json/",
            "/weather.a.b",
        ] {
            assert!(t.find(&Method::GET, path).is_some(), "{path}");
        }
        for path in ["/v1.json", "/v1/a.json", "/V1.XML"] {
            assert!(t.find(&Method::POST, path).is_some(), "{path}");
        }
        for path in [
            "/weathers.json",
            "/weather.json/x",
            "/weather-json",
            "/x.json",
        ] {
            assert!(t.find(&Method::GET, path).is_none(), "{path}");
        }
        assert!(t.find(&Method::POST, "/v10.json").is_none());
    }

    #[test]
    fn a_star_method_prices_every_method() {
        let t = table(&["* /weather", "GET /free-for-posts"]);
        for method in [
            "GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "FOO", "get",
        ] {
            let m: Method = method.parse().unwrap();
            assert!(t.find(&m, "/weather").is_some(), "{method}");
            assert!(t.find(&m, "/x/../WEATHER/").is_some(), "{method}");
        }
        assert!(t.find(&Method::POST, "/free-for-posts").is_none());
        assert!(t.find(&Method::GET, "/weathers").is_none());
    }

    #[test]
    fn raw_paths_read_as_written_under_another_route_are_told_apart() {
        let t = table(&["GET /reports/*", "GET /weather"]);
        let get = Method::GET;
        for apart in [
            // Under `/reports` as written; `/` or `/weather` resolved.
            "/reports/q3/../..",
            "/reports/q3/%2e%2e/%2E%2E",
            "/reports/../weather",
            "/Reports/x/../../weather",
        ] {
            assert!(t.routed_apart(&get, apart), "{apart}");
        }
        for same in [
            "/reports/q3",
            "/reports/q3/../q4",
            "/reports/./q3",
            "/reports//q3",
            "/x/../reports/q3",
            "/x/../weather",
            "/%77eather",
            "/weather/",
            "/a/../b",
        ] {
            assert!(!t.routed_apart(&get, same), "{same}");
        }
        // Unpriced methods and invalid paths are not "apart".
        assert!(!t.routed_apart(&Method::POST, "/reports/q3/../.."));
        assert!(!t.routed_apart(&get, "/reports/%2f/.."));
        // Behind a catch-all price, a dot path is read as the catch-all by a raw router.
        let t = table(&["GET /reports/*", "GET /*"]);
        assert!(t.routed_apart(&get, "/x/../reports/q3"));
        assert!(!t.routed_apart(&get, "/x/../y"));
    }

    /// The priced route a request gets, named by its (distinct) price in atomic units.
    fn priced(routes: &[&str]) -> RouteTable {
        let mut t = RouteTable::default();
        for (i, r) in routes.iter().enumerate() {
            let option = PaymentOption::atomic(
                U256::from(i as u64 + 1),
                PAYEE,
                Network::eip155(8453),
                PAYEE,
                None,
            );
            t.insert(r, RoutePrice::new(option)).unwrap();
        }
        t
    }

    /// Which route (its index in `priced`) prices `method path`.
    fn which(t: &RouteTable, method: &str, path: &str) -> Option<usize> {
        match t.find(&method.parse().unwrap(), path)? {
            Pricing::Static(p) => Some(p.options[0].amount.to::<usize>() - 1),
            Pricing::Dynamic(_) => None,
        }
    }

    #[test]
    fn the_router_matches_every_pattern_form() {
        let t = priced(&[
            "GET /weather",
            "POST /v1/*",
            "GET /files*",
            "* /any",
            "GET /",
            "GET /{brace}",
        ]);
        let cases: &[(&str, &str, Option<usize>)] = &[
            ("GET", "/weather", Some(0)),
            ("HEAD", "/weather", Some(0)),
            ("get", "/WEATHER/", Some(0)),
            ("GET", "/weather.json", Some(0)),
            ("GET", "/weather%3Fx=1", Some(0)),
            ("GET", "/weather%23frag", Some(0)),
            ("GET", "/weather.json/x", None),
            ("GET", "/weatherx", None),
            ("POST", "/weather", None),
            ("POST", "/v1", Some(1)),
            ("POST", "/v1/", Some(1)),
            ("POST", "/v1.xml", Some(1)),
            ("POST", "/V1/a/b.json", Some(1)),
            ("POST", "/v10", None),
            ("GET", "/v1/a", None),
            ("GET", "/files", Some(2)),
            ("GET", "/files2", Some(2)),
            ("GET", "/files2/a/b", Some(2)),
            ("GET", "/files/a", Some(2)),
            ("GET", "/file", None),
            ("DELETE", "/any", Some(3)),
            ("FOO", "/Any/", Some(3)),
            ("GET", "/any.json", Some(3)),
            ("GET", "/", Some(4)),
            ("HEAD", "//", Some(4)),
            ("GET", "/x", None),
            ("GET", "/%7Bbrace%7D", Some(5)),
            ("GET", "/brace", None),
        ];
        for &(method, path, expected) in cases {
            assert_eq!(which(&t, method, path), expected, "{method} {path}");
        }
    }

    #[test]
    fn the_most_specific_route_wins_whatever_the_order() {
        let routes = [
            "GET /v1/*",
            "GET /v1/free",
            "GET /v1/files*",
            "* /v1/admin",
            "HEAD /v1/head",
        ];
        let forward = priced(&routes);
        let mut reversed_routes = routes;
        reversed_routes.reverse();
        let reversed = priced(&reversed_routes);
        fn name<'a>(
            t: &RouteTable,
            order: &[&'a str],
            method: &str,
            path: &str,
        ) -> Option<&'a str> {
            which(t, method, path).map(|i| order[i])
        }
        let cases = [
            ("GET", "/v1/free", "GET /v1/free"),
            ("GET", "/v1/free.json", "GET /v1/free"),
            ("GET", "/v1/freedom", "GET /v1/*"),
            ("GET", "/v1/fre", "GET /v1/*"),
            ("GET", "/v1/files2", "GET /v1/files*"),
            ("GET", "/v1/x", "GET /v1/*"),
            // The request's own method before `*`, `*` before nothing.
            ("GET", "/v1/admin", "GET /v1/*"),
            ("POST", "/v1/admin", "* /v1/admin"),
            // `HEAD`'s own price before `GET`'s.
            ("HEAD", "/v1/head", "HEAD /v1/head"),
            ("HEAD", "/v1/x", "GET /v1/*"),
        ];
        for (method, path, route) in cases {
            assert_eq!(
                name(&forward, &routes, method, path),
                Some(route),
                "{method} {path}"
            );
            assert_eq!(
                name(&reversed, &reversed_routes, method, path),
                Some(route),
                "{method} {path} (reversed)"
            );
        }
    }

    #[test]
    fn overlapping_routes_are_refused_when_priced() {
        let price = || {
            RoutePrice::new(PaymentOption::atomic(
                U256::from(1u64),
                PAYEE,
                Network::eip155(8453),
                PAYEE,
                None,
            ))
        };
        for (first, second) in [
            ("GET /weather", "GET /weather"),
            ("GET /weather", "get /Weather/"),
            ("GET /weather", "GET /x/../%77eather"),
            ("GET /v1", "GET /v1/*"),
            ("GET /v1/*", "GET /v1"),
            ("GET /files*", "GET /files"),
            ("GET /", "GET /*"),
            ("* /a", "* /A"),
        ] {
            let mut t = RouteTable::default();
            t.insert(first, price()).unwrap();
            let err = t.insert(second, price()).unwrap_err();
            assert_eq!(
                err,
                PriceError::RouteConflict {
                    route: second.into(),
                    with: first.into()
                },
                "{first} then {second}"
            );
            assert!(err.to_string().contains(first), "{err}");
            // The refused route left nothing behind: its other paths stay unpriced.
            assert_eq!(t.entries.len(), 1);
        }
        // `/v1/*` conflicts on its `/v1`, the last of its routes: its `/v1/{*rest}` must not
        // be left priced.
        let mut t = RouteTable::default();
        t.insert("GET /v1", price()).unwrap();
        t.insert("GET /v1/*", price()).unwrap_err();
        assert!(t.find(&Method::GET, "/v1/a").is_none());
        // Overlaps across methods, or of a literal and a wildcard, are not conflicts: the
        // more specific route wins (see above).
        let mut t = RouteTable::default();
        for route in [
            "GET /a",
            "POST /a",
            "* /a",
            "HEAD /a",
            "GET /a/*x",
            "GET /*",
        ] {
            t.insert(route, price()).unwrap();
        }
    }

    #[test]
    fn dollar_prices_need_a_known_stablecoin() {
        let local = Network::eip155(31337);
        assert!(matches!(
            PaymentOption::usd("$1", local, PAYEE),
            Err(PriceError::NoDefaultAsset(_))
        ));
        let base: Network = "eip155:84532".parse().unwrap();
        let o = PaymentOption::usd("$0.001", base, PAYEE).unwrap();
        assert_eq!(o.amount, U256::from(1000));
        assert_eq!(o.extra.unwrap()["name"], "USDC");
        assert!(PaymentOption::usd("1abc", "eip155:8453".parse().unwrap(), PAYEE).is_err());
        // MegaETH's dollar token is Permit2-only.
        assert!(matches!(
            PaymentOption::usd("$1", "eip155:4326".parse().unwrap(), PAYEE),
            Err(PriceError::UnsupportedTransferMethod { .. })
        ));
    }

    /// A payee the seller's chain cannot pay is refused when the price is built, naming it.
    #[test]
    fn unpayable_evm_payees_are_refused_when_priced() {
        let base: Network = "eip155:8453".parse().unwrap();
        for bad in [
            "0xSELLER",
            "",
            "209693bc6afc0c5328ba36faf03c514ef312287c",
            "0x209693bc6afc0c5328ba36faf03c514ef31228",
            "0x0000000000000000000000000000000000000000",
        ] {
            let err = PaymentOption::usd("$0.01", base.clone(), bad).unwrap_err();
            assert!(matches!(err, PriceError::BadPayTo { .. }), "{bad}: {err}");
            assert!(err.to_string().contains(&format!("{bad:?}")), "{err}");
            let err = PaymentOption::price("0.01", &devnet_usdc(), bad).unwrap_err();
            assert!(err.to_string().contains(&format!("{bad:?}")), "{err}");
            // `atomic` cannot fail: the route table refuses it.
            let option = PaymentOption::atomic(U256::from(1u64), PAYEE, base.clone(), bad, None);
            let err = RouteTable::default()
                .insert("GET /x", RoutePrice::new(option))
                .unwrap_err();
            assert!(err.to_string().contains(&format!("{bad:?}")), "{err}");
        }
        // Other namespaces are left to their scheme servers.
        let toy = PaymentOption::new(
            "toy".parse().unwrap(),
            "toy:1".parse().unwrap(),
            "TOY",
            1u64.into(),
            "alice",
        );
        assert!(RouteTable::default()
            .insert("GET /x", RoutePrice::new(toy))
            .is_ok());
    }

    #[test]
    fn any_scheme_can_be_priced_with_its_extra() {
        let toy: Scheme = "toy".parse().unwrap();
        let mut extra = Map::new();
        extra.insert("feePayer".into(), Value::from("bob"));
        let option = PaymentOption::new(
            toy.clone(),
            "toy:1".parse().unwrap(),
            "TOY",
            7u64.into(),
            "alice",
        )
        .extra(extra.clone())
        .max_timeout(30);
        let req = option.requirements();
        assert_eq!(req.scheme, toy);
        assert_eq!(req.amount.0, U256::from(7u64));
        assert_eq!((req.asset.as_str(), req.pay_to.as_str()), ("TOY", "alice"));
        assert_eq!(req.max_timeout_seconds, 30);
        assert_eq!(req.extra, Some(extra));
        // The `exact` constructors are unchanged.
        let exact = PaymentOption::atomic(U256::from(1u64), PAYEE, Network::eip155(1), PAYEE, None);
        assert_eq!(exact.requirements().scheme, Scheme::Exact);
    }

    /// A payee checked by the scheme servers comes back in their canonical form; an option
    /// whose scheme no server covers is refused once servers are given.
    #[test]
    fn scheme_servers_check_and_canonicalize_payees() {
        struct Upper;
        impl SchemeServer for Upper {
            fn scheme(&self) -> Scheme {
                "toy".parse().unwrap()
            }
            fn parse_pay_to(&self, _: &Network, pay_to: &str) -> Result<String, String> {
                if pay_to.chars().all(|c| c.is_ascii_alphabetic()) {
                    Ok(pay_to.to_ascii_uppercase())
                } else {
                    Err("letters only".into())
                }
            }
        }
        let mut schemes: Registry<dyn SchemeServer> = Registry::new();
        schemes
            .register_arc(
                "toy:*".parse().unwrap(),
                "toy".parse().unwrap(),
                std::sync::Arc::new(Upper),
            )
            .unwrap();
        let toy = |pay_to: &str| {
            PaymentOption::new(
                "toy".parse().unwrap(),
                "toy:1".parse().unwrap(),
                "TOY",
                1u64.into(),
                pay_to,
            )
        };
        let mut t = RouteTable::default();
        t.insert_checked("GET /a", RoutePrice::new(toy("alice")), &schemes)
            .unwrap();
        let Some(Pricing::Static(price)) = t.find(&Method::GET, "/a") else {
            panic!("priced");
        };
        assert_eq!(price.options[0].pay_to, "ALICE");
        let err = t
            .insert_checked("GET /b", RoutePrice::new(toy("al1ce")), &schemes)
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "pay_to \"al1ce\" cannot be paid on toy:1: letters only"
        );
        let exact = PaymentOption::atomic(U256::from(1u64), PAYEE, Network::eip155(1), PAYEE, None);
        assert!(matches!(
            t.insert_checked("GET /c", RoutePrice::new(exact), &schemes),
            Err(PriceError::NoSchemeServer { .. })
        ));
    }
}
