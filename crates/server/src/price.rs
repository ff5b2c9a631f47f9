//! What a route costs: payment options and the route table.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use http::Method;
use serde_json::{Map, Value};
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

#[derive(Debug, Clone)]
enum PathPattern {
    Exact(String),
    /// `/files/*`: everything under the prefix.
    Prefix(String),
}

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
    /// Prices `route` (`"GET /weather"`, or `"GET /files/*"` for a prefix).
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
        let pattern = match path.strip_suffix('*') {
            Some(prefix) => PathPattern::Prefix(prefix.to_owned()),
            None => PathPattern::Exact(path.to_owned()),
        };
        self.routes.push((method, pattern, pricing));
        Ok(())
    }

    /// How the request's route is priced, if it is.
    pub fn find(&self, method: &Method, path: &str) -> Option<&Pricing> {
        self.routes
            .iter()
            .find(|(m, p, _)| {
                m == method
                    && match p {
                        PathPattern::Exact(e) => e == path,
                        PathPattern::Prefix(prefix) => path.starts_with(prefix.as_str()),
                    }
            })
            .map(|(_, _, price)| price)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
