//! The spending policy: what an agent may pay, checked before anything is signed.
//!
//! Limits are written in human units per token symbol (`"0.05 USDC"`) and compared in each
//! asset's own atomic units, so a limit means the same on every network whatever the token's
//! decimals. Anything the policy cannot price — an asset whose decimals it does not know — is
//! refused rather than guessed.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::time::Duration;

use tollgate_proto::money::{format_atomic, MoneyError, TokenAmount};
use tollgate_proto::{asset, Network, PaymentRequirements, U256};

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
/// ```
/// use tollgate_client::SpendingPolicy;
/// let policy = SpendingPolicy::new()
///     .max_per_request("0.05 USDC").unwrap()
///     .budget("5 USDC", Some(std::time::Duration::from_secs(86_400))).unwrap()
///     .budget("100 USDC", None).unwrap();
/// assert_eq!(policy.budgets().len(), 2);
/// ```
#[derive(Debug, Clone, Default)]
pub struct SpendingPolicy {
    max_per_request: Vec<Limit>,
    budgets: Vec<Budget>,
    networks: Option<HashSet<Network>>,
    assets: Option<HashSet<(Network, String)>>,
    payees: Option<HashSet<String>>,
    preference: Preference,
    custom_assets: HashMap<(Network, String), AssetInfo>,
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

impl SpendingPolicy {
    /// A policy with no limits (every payable option is allowed).
    pub fn new() -> Self {
        Self::default()
    }

    /// Caps each payment, e.g. `"0.05 USDC"`.
    pub fn max_per_request(mut self, limit: &str) -> Result<Self, MoneyError> {
        let amount: TokenAmount = limit.parse()?;
        self.max_per_request.push(Limit {
            symbol: amount.symbol.clone(),
            amount,
        });
        Ok(self)
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

    /// The budgets.
    pub fn budgets(&self) -> &[Budget] {
        &self.budgets
    }

    fn asset_info(&self, network: &Network, address: &str) -> Option<AssetInfo> {
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
        for limit in self
            .max_per_request
            .iter()
            .filter(|l| l.symbol == asset.symbol)
        {
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
