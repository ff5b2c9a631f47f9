//! What a route costs: payment options and the route table.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use http::Method;
use serde_json::{Map, Value};

use crate::paywall::target::{literal_key, match_key, TargetError};
use tollgate_proto::money::{DecimalAmount, MoneyError};
use tollgate_proto::{asset, AtomicAmount, Network, PaymentRequirements, Scheme, U256};

/// One way to pay for a route: an amount of one asset on one network, to one recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentOption {
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
    /// The route pattern is not `METHOD /path`.
    #[error("route {0:?} is not \"METHOD /path\" (e.g. \"GET /weather\")")]
    BadRoute(String),
    /// The route's path has no canonical form, so no request could ever match it.
    #[error("route {route:?}: {reason}")]
    BadRoutePath {
        /// The route as given.
        route: String,
        /// Why its path is refused.
        reason: TargetError,
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
        let amount = price.parse::<DecimalAmount>()?.to_atomic(known.decimals)?;
        let extra = Some(known.requirements_extra()).filter(|m| !m.is_empty());
        Ok(Self {
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
        let amount = price.parse::<DecimalAmount>()?.to_atomic(token.decimals)?;
        let extra = Some(token.requirements_extra()).filter(|m| !m.is_empty());
        Ok(Self::atomic(
            amount,
            &token.address,
            token.network.clone(),
            &pay_to.to_string(),
            extra,
        ))
    }

    /// A price in atomic units of an explicit asset; `extra` carries what buyers need to sign
    /// for it (for EIP-3009 tokens: `{"name": …, "version": …}`).
    pub fn atomic(
        amount: U256,
        asset: &str,
        network: Network,
        pay_to: &str,
        extra: Option<Map<String, Value>>,
    ) -> Self {
        Self {
            network,
            asset: asset.to_owned(),
            amount,
            pay_to: pay_to.to_owned(),
            max_timeout_seconds: 60,
            extra,
        }
    }

    /// The wire requirements for the `exact` scheme.
    pub fn requirements(&self) -> PaymentRequirements {
        PaymentRequirements {
            scheme: Scheme::Exact,
            network: self.network.clone(),
            amount: AtomicAmount(self.amount),
            asset: self.asset.clone(),
            pay_to: self.pay_to.clone(),
            max_timeout_seconds: self.max_timeout_seconds,
            extra: self.extra.clone(),
        }
    }
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
}

impl RoutePrice {
    /// A route payable with one option.
    pub fn new(option: PaymentOption) -> Self {
        Self {
            options: vec![option],
            description: None,
            mime_type: None,
        }
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
}

/// A route's path, as the [match key](crate::paywall::target::match_key) of its canonical form.
#[derive(Debug, Clone)]
enum PathPattern {
    /// `/weather`: that path (in any spelling with the same key, with or without a trailing
    /// slash).
    Exact(String),
    /// `/files/*`: the directory itself (`/files`, `/files/`) and everything under it.
    Under(String),
    /// `/files*`: every path whose key starts with the prefix (`/files`, `/files2`, `/files/a`).
    Prefix(String),
}

impl PathPattern {
    fn matches(&self, key: &str) -> bool {
        match self {
            Self::Exact(k) => key
                .strip_prefix(k.as_str())
                .is_some_and(|rest| rest.is_empty() || is_format_suffix(rest)),
            Self::Under(dir) => key.strip_prefix(dir.as_str()).is_some_and(|rest| {
                rest.is_empty() || rest.starts_with('/') || is_format_suffix(rest)
            }),
            Self::Prefix(prefix) => key.starts_with(prefix.as_str()),
        }
    }
}

/// Whether `rest`, what follows a route's path in a request's key, is a format extension of
/// its last segment (`.json`): Rails routes `/weather.json` to the `/weather` action (the
/// optional `(.:format)` of every route) and older Spring MVC matches `/weather.*` to
/// `/weather`, so such a path is priced as the route.
fn is_format_suffix(rest: &str) -> bool {
    rest.starts_with('.') && !rest.contains('/')
}

/// Whether a route priced for `route` covers a request made with `request`. Methods compare
/// without case (an upstream may upper-case `get`), a `GET` price covers `HEAD`, which every
/// HTTP server answers from the `GET` handler, and the method `*` covers every method.
fn method_matches(route: &Method, request: &Method) -> bool {
    let request = request.as_str();
    route.as_str() == ANY_METHOD
        || request.eq_ignore_ascii_case(route.as_str())
        || (*route == Method::GET && request.eq_ignore_ascii_case(Method::HEAD.as_str()))
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

/// Routes and their prices; the first matching entry wins.
#[derive(Debug, Clone, Default)]
pub struct RouteTable {
    routes: Vec<(Method, PathPattern, Pricing)>,
}

impl RouteTable {
    /// Prices `route` (`"GET /weather"`, or `"GET /files/*"` for a prefix; `"* /weather"` for
    /// every method, `OPTIONS` included).
    pub fn insert(&mut self, route: &str, price: RoutePrice) -> Result<(), PriceError> {
        if price.options.is_empty() {
            return Err(PriceError::BadRoute(route.to_owned()));
        }
        self.insert_pricing(route, Pricing::Static(price))
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
        self.routes.push((method, pattern, pricing));
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
        Ok(self.position(method, &key).map(|i| &self.routes[i].2))
    }

    /// The index of the first route matching `method` and match key `key`.
    fn position(&self, method: &Method, key: &str) -> Option<usize> {
        self.routes
            .iter()
            .position(|(m, p, _)| method_matches(m, method) && p.matches(key))
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
            PaymentOption::price("1", &no_domain, "0x01").unwrap().extra,
            None
        );
    }

    #[test]
    fn price_finer_than_the_token_is_refused() {
        assert!(matches!(
            PaymentOption::price("$0.0000001", &devnet_usdc(), "0x01"),
            Err(PriceError::Money(_))
        ));
        assert!(matches!(
            PaymentOption::price("a dollar", &devnet_usdc(), "0x01"),
            Err(PriceError::Money(_))
        ));
    }

    #[test]
    fn routes_match_exactly_or_by_prefix() {
        let base: Network = "eip155:8453".parse().unwrap();
        let price = RoutePrice::new(PaymentOption::usd("0.001", base, "0x01").unwrap());
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
        let price = RoutePrice::new(PaymentOption::usd("0.001", base, "0x01").unwrap());
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
        let price = RoutePrice::new(PaymentOption::usd("0.001", base, "0x01").unwrap());
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

    #[test]
    fn dollar_prices_need_a_known_stablecoin() {
        let local = Network::eip155(31337);
        assert!(matches!(
            PaymentOption::usd("$1", local, "0x01"),
            Err(PriceError::NoDefaultAsset(_))
        ));
        let base: Network = "eip155:84532".parse().unwrap();
        let o = PaymentOption::usd("$0.001", base, "0x01").unwrap();
        assert_eq!(o.amount, U256::from(1000));
        assert_eq!(o.extra.unwrap()["name"], "USDC");
        assert!(PaymentOption::usd("1abc", "eip155:8453".parse().unwrap(), "0x01").is_err());
        // MegaETH's dollar token is Permit2-only.
        assert!(matches!(
            PaymentOption::usd("$1", "eip155:4326".parse().unwrap(), "0x01"),
            Err(PriceError::UnsupportedTransferMethod { .. })
        ));
    }
}
