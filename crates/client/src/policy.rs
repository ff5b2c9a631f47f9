//! The spending policy: what an agent may pay, checked before anything is signed.
//!
//! Limits are written in human units per token symbol (`"0.05 USDC"`) and compared in each
//! asset's own atomic units, so a limit means the same on every network whatever the token's
//! decimals. Anything the policy cannot price — an asset whose decimals it does not know — is
//! refused rather than guessed.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::time::Duration;

use tollgate_proto::money::{format_atomic, DecimalAmount, MoneyError, TokenAmount};
use tollgate_proto::{asset, Network, PaymentRequirements, U256};

/// The per-payment cap of [`SpendingPolicy::new`], in the token's own units, for every symbol
/// without a [`SpendingPolicy::max_per_request`] of its own: `0.1` — ten cents of USDC, the cap
/// the official x402 client applies by default. An agent that forgot to set a limit then loses
/// at most that per request to a seller asking too much; [`SpendingPolicy::unlimited`] opts out.
pub const DEFAULT_MAX_PER_REQUEST: &str = "0.1";

/// The largest single deposit into a payment channel (`batch-settlement`), in units of the
/// token, for tokens without a [`SpendingPolicy::max_deposit`] of their own: a deposit pays for
/// many requests at once, so it may exceed the per-request cap, but not this.
pub const DEFAULT_MAX_DEPOSIT: &str = "1";

/// An asset the policy can price: its symbol and decimals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssetInfo {
    /// Ticker, e.g. "USDC"; limits and budgets are per symbol.
    pub symbol: String,
    /// Decimals of the atomic unit.
    pub decimals: u8,
}

/// A limit per token symbol, in human units.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limit {
    /// Token symbol.
    pub symbol: String,
    /// The amount, exact.
    pub amount: TokenAmount,
}

impl Limit {
    fn atomic(&self, decimals: u8) -> Result<U256, MoneyError> {
        self.amount.amount.to_atomic(decimals)
    }
}

/// A spending budget for one symbol: over a sliding window, or in total.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Budget {
    /// The cap.
    pub limit: Limit,
    /// The window (e.g. one day); `None` for a lifetime total.
    pub window: Option<Duration>,
}

/// Which acceptable option to pay when several are offered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Preference {
    /// The cheapest in human units (ties: the server's order).
    #[default]
    Cheapest,
    /// The first network of this list that is offered, then the cheapest.
    Networks(Vec<Network>),
}

/// The rules an agent's spending follows.
///
/// [`SpendingPolicy::new`] caps every payment at [`DEFAULT_MAX_PER_REQUEST`] of its token
/// until `max_per_request` sets that token's cap (higher or lower);
/// [`SpendingPolicy::unlimited`] starts without that cap.
///
/// ```
/// use tollgate_client::SpendingPolicy;
/// let policy = SpendingPolicy::new()
///     .max_per_request("0.05 USDC").unwrap()
///     .budget("5 USDC", Some(std::time::Duration::from_secs(86_400))).unwrap()
///     .budget("100 USDC", None).unwrap();
/// assert_eq!(policy.budgets().len(), 2);
/// ```
#[derive(Debug, Clone)]
pub struct SpendingPolicy {
    max_per_request: Vec<Limit>,
    /// The cap for symbols without an entry in `max_per_request`; `None` when unlimited.
    default_max: Option<DecimalAmount>,
    budgets: Vec<Budget>,
    networks: Option<HashSet<Network>>,
    assets: Option<HashSet<(Network, String)>>,
    payees: Option<HashSet<String>>,
    preference: Preference,
    custom_assets: HashMap<(Network, String), AssetInfo>,
    max_deposit: Vec<Limit>,
    /// The deposit cap for symbols without an entry in `max_deposit`; `None` when unlimited.
    default_max_deposit: Option<DecimalAmount>,
}

/// Which rule refused a payment, and by how much.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The user declined the payment when asked.
    #[error("payment declined by the user")]
    Declined,
    /// Nothing in the 402 is payable by this wallet (scheme or network unsupported).
    #[error("no payment option is supported by this wallet: {0}")]
    Unsupported(String),
    /// The network is not allowed.
    #[error("network {0} is not allowed by the spending policy")]
    NetworkNotAllowed(Network),
    /// The asset is not allowed, or its decimals are unknown.
    #[error("asset {asset} on {network} is not allowed: {why}")]
    AssetNotAllowed {
        /// The network.
        network: Network,
        /// The asset.
        asset: String,
        /// Why.
        why: String,
    },
    /// The payee is not allowed.
    #[error("payee {0} is not allowed by the spending policy")]
    PayeeNotAllowed(String),
    /// The price exceeds the per-request maximum.
    #[error("price {price} {symbol} exceeds the per-request maximum of {max} {symbol} by {over}")]
    OverMaxPerRequest {
        /// Symbol.
        symbol: String,
        /// Asked price.
        price: String,
        /// The maximum.
        max: String,
        /// By how much.
        over: String,
    },
    /// A payment channel needs a deposit above the largest the policy allows.
    #[error("a deposit of {needed} {symbol} into a payment channel exceeds the maximum deposit of {max} {symbol}")]
    OverMaxDeposit {
        /// Symbol.
        symbol: String,
        /// The least deposit that pays the request.
        needed: String,
        /// The maximum.
        max: String,
    },
    /// Paying would exceed a budget.
    #[error("paying {price} {symbol} would exceed the {window} budget of {budget} {symbol} ({spent} already spent or reserved)")]
    OverBudget {
        /// Symbol.
        symbol: String,
        /// Asked price.
        price: String,
        /// The budget.
        budget: String,
        /// Spent or reserved in the window.
        spent: String,
        /// "total" or e.g. "86400 s".
        window: String,
    },
}

/// A requirement the policy accepts, with what it costs in the policy's terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Priced {
    /// The requirement.
    pub requirements: PaymentRequirements,
    /// The asset's symbol and decimals.
    pub asset: AssetInfo,
}

impl Priced {
    /// The amount on a common 18-decimal scale, to compare and add across assets of a symbol.
    pub fn scaled(&self) -> U256 {
        scale(self.requirements.amount.get(), self.asset.decimals)
    }
}

/// `amount` of a `decimals`-decimal token on an 18-decimal scale (saturating: no real price
/// comes near the limit).
pub(crate) fn scale(amount: U256, decimals: u8) -> U256 {
    let shift = 18u8.saturating_sub(decimals);
    amount.saturating_mul(U256::from(10u8).pow(U256::from(shift)))
}

impl Default for SpendingPolicy {
    /// The same as [`SpendingPolicy::new`]: capped at [`DEFAULT_MAX_PER_REQUEST`].
    fn default() -> Self {
        Self::new()
    }
}

impl SpendingPolicy {
    /// A policy that caps each payment at [`DEFAULT_MAX_PER_REQUEST`] (0.1) of its token — for
    /// every token whose cap [`max_per_request`](Self::max_per_request) does not set — and
    /// has no budget and no allow-lists.
    pub fn new() -> Self {
        Self {
            default_max: Some(
                DEFAULT_MAX_PER_REQUEST
                    .parse()
                    .expect("DEFAULT_MAX_PER_REQUEST is a valid decimal"),
            ),
            default_max_deposit: Some(
                DEFAULT_MAX_DEPOSIT
                    .parse()
                    .expect("DEFAULT_MAX_DEPOSIT is a valid decimal"),
            ),
            ..Self::unlimited()
        }
    }

    /// A policy with no limits at all: every payable option is allowed, at any price, until
    /// `max_per_request` or `budget` adds one. For callers that apply their own limits (an
    /// approval hook, a budget) and must not be capped at [`DEFAULT_MAX_PER_REQUEST`].
    pub fn unlimited() -> Self {
        Self {
            max_per_request: Vec::new(),
            default_max: None,
            budgets: Vec::new(),
            networks: None,
            assets: None,
            payees: None,
            preference: Preference::default(),
            custom_assets: HashMap::new(),
            max_deposit: Vec::new(),
            default_max_deposit: None,
        }
    }

    /// The per-payment cap for tokens without a `max_per_request` of their own:
    /// `Some(0.1)` from [`new`](Self::new), `None` from [`unlimited`](Self::unlimited).
    pub fn default_max_per_request(&self) -> Option<&DecimalAmount> {
        self.default_max.as_ref()
    }

    /// Caps each payment in this token, e.g. `"0.05 USDC"`; replaces the default cap for that
    /// symbol (so it may also raise it), and several caps of one symbol all apply.
    pub fn max_per_request(mut self, limit: &str) -> Result<Self, MoneyError> {
        let amount: TokenAmount = limit.parse()?;
        self.max_per_request.push(Limit {
            symbol: amount.symbol.clone(),
            amount,
        });
        Ok(self)
    }

    /// Caps each deposit into a payment channel in this token, e.g. `"2 USDC"` (replacing
    /// [`DEFAULT_MAX_DEPOSIT`] for that symbol). A deposit also counts against every budget of
    /// its symbol when it is made; the requests it then pays for do not count again.
    pub fn max_deposit(mut self, limit: &str) -> Result<Self, MoneyError> {
        let amount: TokenAmount = limit.parse()?;
        self.max_deposit.push(Limit {
            symbol: amount.symbol.clone(),
            amount,
        });
        Ok(self)
    }

    /// The largest deposit into a channel for `priced`'s token, in its atomic units: the
    /// smallest [`max_deposit`](Self::max_deposit) of its symbol, else [`DEFAULT_MAX_DEPOSIT`]
    /// (none from [`unlimited`](Self::unlimited): `u128::MAX`).
    pub fn deposit_limit(&self, priced: &Priced) -> u128 {
        let decimals = priced.asset.decimals;
        let mut caps: Vec<U256> = self
            .max_deposit
            .iter()
            .filter(|l| l.symbol == priced.asset.symbol)
            .filter_map(|l| l.atomic(decimals).ok())
            .collect();
        if caps.is_empty() {
            if let Some(default) = &self.default_max_deposit {
                caps.extend(default.to_atomic(decimals).ok());
            }
        }
        caps.into_iter()
            .min()
            .map_or(u128::MAX, |c| u128::try_from(c).unwrap_or(u128::MAX))
    }

    /// Adds a budget, e.g. `("5 USDC", Some(one day))` or `("100 USDC", None)` for a total.
    pub fn budget(mut self, limit: &str, window: Option<Duration>) -> Result<Self, MoneyError> {
        let amount: TokenAmount = limit.parse()?;
        self.budgets.push(Budget {
            limit: Limit {
                symbol: amount.symbol.clone(),
                amount,
            },
            window,
        });
        Ok(self)
    }

    /// Restricts payments to these networks.
    pub fn allow_networks(mut self, networks: impl IntoIterator<Item = Network>) -> Self {
        self.networks = Some(networks.into_iter().collect());
        self
    }

    /// Restricts payments to these (network, asset) pairs.
    pub fn allow_assets(mut self, assets: impl IntoIterator<Item = (Network, String)>) -> Self {
        self.assets = Some(
            assets
                .into_iter()
                .map(|(n, a)| (n, a.to_ascii_lowercase()))
                .collect(),
        );
        self
    }

    /// Restricts payments to these recipients.
    pub fn allow_payees(mut self, payees: impl IntoIterator<Item = String>) -> Self {
        self.payees = Some(payees.into_iter().map(|p| p.to_ascii_lowercase()).collect());
        self
    }

    /// Sets which option to prefer.
    pub fn prefer(mut self, preference: Preference) -> Self {
        self.preference = preference;
        self
    }

    /// Teaches the policy an asset outside the known-asset table (e.g. on a local chain).
    pub fn register_asset(
        mut self,
        network: Network,
        address: &str,
        symbol: &str,
        decimals: u8,
    ) -> Self {
        self.custom_assets.insert(
            (network, address.to_ascii_lowercase()),
            AssetInfo {
                symbol: symbol.to_owned(),
                decimals,
            },
        );
        self
    }

    /// Teaches the policy a token described by a [`Token`](tollgate_proto::token::Token) —
    /// such as a devnet's `devnet.usdc()` — under its symbol and decimals, so limits in that
    /// symbol apply to it. The decimals come from whoever describes the token to the buyer,
    /// never from the seller's 402: a seller claiming more decimals than the token has would
    /// make a large price look small.
    ///
    /// ```
    /// use tollgate_client::SpendingPolicy;
    /// use tollgate_proto::token::Token;
    /// let usdc = Token::new("eip155:31337".parse().unwrap(), "0x5FbDB2315678afecb367f032d93F642f64180aa3", "USDC", 6);
    /// let policy = SpendingPolicy::new().register_token(&usdc);
    /// assert_eq!(policy.asset_info(&usdc.network, &usdc.address).unwrap().decimals, 6);
    /// ```
    pub fn register_token(
        self,
        token: impl std::borrow::Borrow<tollgate_proto::token::Token>,
    ) -> Self {
        let token = token.borrow();
        self.register_asset(
            token.network.clone(),
            &token.address,
            &token.symbol,
            token.decimals,
        )
    }

    /// The budgets.
    pub fn budgets(&self) -> &[Budget] {
        &self.budgets
    }

    /// The symbol and decimals of `address` on `network`: registered assets first, then the
    /// known-asset table. `None` when the decimals are unknown.
    pub fn asset_info(&self, network: &Network, address: &str) -> Option<AssetInfo> {
        if let Some(info) = self
            .custom_assets
            .get(&(network.clone(), address.to_ascii_lowercase()))
        {
            return Some(info.clone());
        }
        asset::find_asset(network, address).map(|a| AssetInfo {
            symbol: a.symbol.to_owned(),
            decimals: a.decimals,
        })
    }

    /// Checks one option against every static rule (everything but budgets, which need the
    /// ledger).
    pub fn check(&self, requirements: &PaymentRequirements) -> Result<Priced, Refusal> {
        let network = &requirements.network;
        if let Some(allowed) = &self.networks {
            if !allowed.contains(network) {
                return Err(Refusal::NetworkNotAllowed(network.clone()));
            }
        }
        if let Some(allowed) = &self.assets {
            if !allowed.contains(&(network.clone(), requirements.asset.to_ascii_lowercase())) {
                return Err(Refusal::AssetNotAllowed {
                    network: network.clone(),
                    asset: requirements.asset.clone(),
                    why: "not in the allowed assets".into(),
                });
            }
        }
        if let Some(allowed) = &self.payees {
            if !allowed.contains(&requirements.pay_to.to_ascii_lowercase()) {
                return Err(Refusal::PayeeNotAllowed(requirements.pay_to.clone()));
            }
        }
        let asset = self
            .asset_info(network, &requirements.asset)
            .ok_or_else(|| Refusal::AssetNotAllowed {
                network: network.clone(),
                asset: requirements.asset.clone(),
                why: "unknown asset: its decimals are not known (register it)".into(),
            })?;
        let price = requirements.amount.get();
        let mut limits: Vec<Limit> = self
            .max_per_request
            .iter()
            .filter(|l| l.symbol == asset.symbol)
            .cloned()
            .collect();
        if limits.is_empty() {
            if let Some(default) = &self.default_max {
                limits.push(Limit {
                    symbol: asset.symbol.clone(),
                    amount: TokenAmount {
                        amount: default.clone(),
                        symbol: asset.symbol.clone(),
                    },
                });
            }
        }
        for limit in &limits {
            let max = limit
                .atomic(asset.decimals)
                .map_err(|e| Refusal::AssetNotAllowed {
                    network: network.clone(),
                    asset: requirements.asset.clone(),
                    why: e.to_string(),
                })?;
            if price > max {
                return Err(Refusal::OverMaxPerRequest {
                    symbol: asset.symbol.clone(),
                    price: format_atomic(price, asset.decimals),
                    max: format_atomic(max, asset.decimals),
                    over: format_atomic(price - max, asset.decimals),
                });
            }
        }
        Ok(Priced {
            requirements: requirements.clone(),
            asset,
        })
    }

    /// The acceptable options of a 402, best first; or the refusal of the first option when
    /// none is acceptable.
    pub fn rank(&self, options: Vec<PaymentRequirements>) -> Result<Vec<Priced>, Refusal> {
        let mut first_refusal = None;
        let mut ok = Vec::new();
        for option in options {
            match self.check(&option) {
                Ok(p) => ok.push(p),
                Err(r) => {
                    first_refusal.get_or_insert(r);
                }
            }
        }
        if ok.is_empty() {
            return Err(first_refusal.unwrap_or_else(|| Refusal::Unsupported("no options".into())));
        }
        let position = |p: &Priced| match &self.preference {
            Preference::Cheapest => 0,
            Preference::Networks(order) => order
                .iter()
                .position(|n| *n == p.requirements.network)
                .unwrap_or(usize::MAX),
        };
        ok.sort_by(|a, b| {
            position(a)
                .cmp(&position(b))
                .then(a.scaled().cmp(&b.scaled()))
        });
        Ok(ok)
    }

    /// Budgets that apply to `symbol`, with their caps in 18-decimal scaled units.
    pub(crate) fn budgets_for(&self, symbol: &str) -> Vec<(U256, Option<Duration>, String)> {
        self.budgets
            .iter()
            .filter(|b| b.limit.symbol == symbol)
            .filter_map(|b| {
                let cap = b.limit.atomic(18).ok()?;
                Some((cap, b.window, b.limit.amount.amount.to_string()))
            })
            .collect()
    }
}

impl fmt::Display for Budget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.window {
            Some(w) => write!(f, "{} per {}s", self.limit.amount, w.as_secs()),
            None => write!(f, "{} in total", self.limit.amount),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn req(network: &str, amount: u64, pay_to: &str) -> PaymentRequirements {
        let n: Network = network.parse().unwrap();
        let asset = asset::default_asset(&n)
            .map(|a| a.address)
            .unwrap_or("0xaa");
        serde_json::from_value(json!({
            "scheme": "exact", "network": network, "amount": amount.to_string(),
            "asset": asset, "payTo": pay_to, "maxTimeoutSeconds": 60
        }))
        .unwrap()
    }

    #[test]
    fn a_registered_token_is_priced_and_capped_in_its_symbol() {
        let token = tollgate_proto::token::Token::new(
            "eip155:31337".parse().unwrap(),
            "0x5FbDB2315678afecb367f032d93F642f64180aa3",
            "USDC",
            6,
        );
        let requirements = |amount: u64| -> PaymentRequirements {
            serde_json::from_value(json!({
                "scheme": "exact", "network": "eip155:31337", "amount": amount.to_string(),
                // Addresses are compared case-insensitively.
                "asset": token.address.to_ascii_lowercase(), "payTo": "0x01", "maxTimeoutSeconds": 60
            }))
            .unwrap()
        };
        // Unknown before registration: refused rather than guessed.
        assert!(matches!(
            SpendingPolicy::new().check(&requirements(10_000)),
            Err(Refusal::AssetNotAllowed { .. })
        ));
        let policy = SpendingPolicy::new()
            .max_per_request("0.05 USDC")
            .unwrap()
            .register_token(token.clone());
        assert!(policy.check(&requirements(50_000)).is_ok());
        assert!(matches!(
            policy.check(&requirements(50_001)),
            Err(Refusal::OverMaxPerRequest { .. })
        ));
        // The default cap (0.1) applies to a registered token too.
        let default_capped = SpendingPolicy::new().register_token(&token);
        assert!(default_capped.check(&requirements(100_000)).is_ok());
        assert!(default_capped.check(&requirements(100_001)).is_err());
    }

    #[test]
    fn each_static_rule_refuses_with_its_reason() {
        let p = SpendingPolicy::new().max_per_request("0.05 USDC").unwrap();
        assert!(p.check(&req("eip155:8453", 50_000, "0x01")).is_ok());
        let err = p.check(&req("eip155:8453", 50_001, "0x01")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "price 0.050001 USDC exceeds the per-request maximum of 0.05 USDC by 0.000001"
        );
        let p = SpendingPolicy::new().allow_networks(["eip155:84532".parse().unwrap()]);
        assert!(matches!(
            p.check(&req("eip155:8453", 1, "0x01")),
            Err(Refusal::NetworkNotAllowed(_))
        ));
        let p = SpendingPolicy::new().allow_payees(["0xAB".to_string()]);
        assert!(p.check(&req("eip155:8453", 1, "0xab")).is_ok());
        assert!(matches!(
            p.check(&req("eip155:8453", 1, "0xcd")),
            Err(Refusal::PayeeNotAllowed(_))
        ));
        let p = SpendingPolicy::new();
        assert!(matches!(
            p.check(&req("eip155:31337", 1, "0x01")),
            Err(Refusal::AssetNotAllowed { .. })
        ));
        let p = SpendingPolicy::new().register_asset(Network::eip155(31337), "0xAA", "USDC", 6);
        assert!(p.check(&req("eip155:31337", 1, "0x01")).is_ok());
    }

    #[test]
    fn new_caps_each_payment_by_default_and_unlimited_does_not() {
        // 0.1 USDC is 100_000 atomic units on Base.
        let capped = SpendingPolicy::new();
        assert!(capped.check(&req("eip155:8453", 100_000, "0x01")).is_ok());
        let err = capped
            .check(&req("eip155:8453", 100_001, "0x01"))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "price 0.100001 USDC exceeds the per-request maximum of 0.1 USDC by 0.000001"
        );
        assert_eq!(
            SpendingPolicy::default().default_max_per_request(),
            capped.default_max_per_request()
        );

        // The cap follows the token's own units: a registered 18-decimal token is capped at
        // 0.1 of it too.
        let local = SpendingPolicy::new().register_asset(Network::eip155(31337), "0xAA", "DAI", 18);
        assert!(local
            .check(&req("eip155:31337", 100_000_000_000_000_000, "0x01"))
            .is_ok());
        assert!(matches!(
            local.check(&req("eip155:31337", 100_000_000_000_000_001, "0x01")),
            Err(Refusal::OverMaxPerRequest { .. })
        ));

        // An explicit cap for the symbol replaces the default, upwards too…
        let raised = SpendingPolicy::new().max_per_request("5 USDC").unwrap();
        assert!(raised.check(&req("eip155:8453", 5_000_000, "0x01")).is_ok());
        // …but only for its own symbol.
        let other = SpendingPolicy::new()
            .register_asset(Network::eip155(31337), "0xAA", "DAI", 18)
            .max_per_request("5 USDC")
            .unwrap();
        assert!(other
            .check(&req("eip155:31337", 100_000_000_000_000_001, "0x01"))
            .is_err());

        let unlimited = SpendingPolicy::unlimited();
        assert_eq!(unlimited.default_max_per_request(), None);
        assert!(unlimited
            .check(&req("eip155:8453", 1_000_000_000_000, "0x01"))
            .is_ok());
    }

    #[test]
    fn cheapest_first_unless_networks_are_preferred() {
        let options = vec![
            req("eip155:8453", 30, "0x01"),
            req("eip155:84532", 10, "0x01"),
            req("eip155:137", 20, "0x01"),
        ];
        let ranked = SpendingPolicy::new().rank(options.clone()).unwrap();
        let order: Vec<u64> = ranked
            .iter()
            .map(|p| p.requirements.amount.get().to())
            .collect();
        assert_eq!(order, [10, 20, 30]);
        let ranked = SpendingPolicy::new()
            .prefer(Preference::Networks(vec!["eip155:137".parse().unwrap()]))
            .rank(options)
            .unwrap();
        assert_eq!(ranked[0].requirements.network.to_string(), "eip155:137");
    }
}
