//! Known assets: the default stablecoins of each network, with what a payer needs to sign.
//!
//! A seller who prices a route in dollars gets the network's default asset from here (the
//! first entry listed for that network, as in the official SDK's default-asset table); a client
//! checks an offered asset against it before trusting the offer's decimals. A client that meets
//! an asset it has never heard of needs the requirement's `extra` instead.
//!
//! The table reproduces the official SDK (2.27) default-asset table — addresses, decimals,
//! signing-domain names and versions, transfer-method hints — plus USDC on Avalanche Fuji and
//! Polygon Amoy and on Solana mainnet and devnet.

use serde_json::{Map, Value};

use crate::network::{SOLANA_DEVNET, SOLANA_MAINNET};
use crate::Network;

/// A token the protocol knows by address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct KnownAsset {
    /// CAIP-2 network id.
    pub network: &'static str,
    /// Ticker, e.g. `"USDC"`.
    pub symbol: &'static str,
    /// Token address (0x hex on EVM, base58 mint on Solana), in the SDK's spelling.
    pub address: &'static str,
    /// Decimals of the atomic unit (6 for USDC: `1` USDC is `1000000` atomic units).
    pub decimals: u8,
    /// The token's signing-domain name and version, where payments are signed typed data.
    /// These are on-chain values and differ between chains for the "same" token.
    pub eip712: Option<Eip712Info>,
    /// How the official SDK moves this token when not by the scheme's default method, as it
    /// advertises in `extra.assetTransferMethod` (`"permit2"` for tokens that cannot sign a
    /// transfer themselves). `None`: the default method.
    pub transfer_method: Option<&'static str>,
    /// Whether the token implements EIP-2612 `permit`, so a payer can grant a transfer contract
    /// an allowance by signature instead of a transaction.
    pub supports_eip2612: bool,
}

/// A token's signing-domain metadata: the EIP-712 domain `name` and `version`.
///
/// A payer signs typed data over a domain that includes these strings; if they differ from the
/// token contract's own, the signature is valid but for nothing. Wire messages carry them in a
/// requirement's `extra` as `{"name": …, "version": …}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Eip712Info {
    /// Domain name, e.g. `"USD Coin"`.
    pub name: &'static str,
    /// Domain version, e.g. `"2"`.
    pub version: &'static str,
}

impl KnownAsset {
    /// The network, parsed.
    pub fn network(&self) -> Option<Network> {
        self.network.parse().ok()
    }

    /// The `extra` object the official SDK's server advertises for this asset when a price is
    /// given in money: the signing domain (`name`, `version`) — omitted for tokens moved by a
    /// non-default method unless they support EIP-2612 — and `assetTransferMethod` when set.
    ///
    /// ```
    /// use tollgate_proto::{asset, Network};
    /// let usdc = asset::default_asset(&Network::eip155(8453)).unwrap();
    /// let extra = usdc.requirements_extra();
    /// assert_eq!(extra["name"], "USD Coin");
    /// assert_eq!(extra["version"], "2");
    /// assert!(!extra.contains_key("assetTransferMethod"));
    /// ```
    pub fn requirements_extra(&self) -> Map<String, Value> {
        let mut extra = Map::new();
        if let Some(domain) = self.eip712 {
            if self.transfer_method.is_none() || self.supports_eip2612 {
                extra.insert("name".into(), domain.name.into());
                extra.insert("version".into(), domain.version.into());
            }
        }
        if let Some(method) = self.transfer_method {
            extra.insert("assetTransferMethod".into(), method.into());
        }
        extra
    }
}

/// An EVM token moved by the scheme's default method.
const fn evm(
    network: &'static str,
    symbol: &'static str,
    address: &'static str,
    decimals: u8,
    name: &'static str,
    version: &'static str,
) -> KnownAsset {
    KnownAsset {
        network,
        symbol,
        address,
        decimals,
        eip712: Some(Eip712Info { name, version }),
        transfer_method: None,
        supports_eip2612: false,
    }
}

/// An EVM token the SDK moves through Permit2.
const fn permit2(asset: KnownAsset, supports_eip2612: bool) -> KnownAsset {
    KnownAsset {
        transfer_method: Some("permit2"),
        supports_eip2612,
        ..asset
    }
}

/// A Solana SPL token.
const fn spl(network: &'static str, address: &'static str) -> KnownAsset {
    KnownAsset {
        network,
        symbol: "USDC",
        address,
        decimals: 6,
        eip712: None,
        transfer_method: None,
        supports_eip2612: false,
    }
}

/// The table; the first entry of a network is its default.
#[rustfmt::skip]
static ASSETS: &[KnownAsset] = &[
    // Base.
    evm("eip155:8453", "USDC", "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913", 6, "USD Coin", "2"),
    evm("eip155:84532", "USDC", "0x036CbD53842c5426634e7929541eC2318f3dCF7e", 6, "USDC", "2"),
    // Ethereum.
    evm("eip155:1", "USDC", "0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48", 6, "USD Coin", "2"),
    // Avalanche C-Chain and Fuji.
    evm("eip155:43114", "USDC", "0xB97EF9Ef8734C71904D8002F8b6Bc66Dd9c48a6E", 6, "USD Coin", "2"),
    evm("eip155:43113", "USDC", "0x5425890298aed601595a70AB815c96711a31Bc65", 6, "USD Coin", "2"),
    // MegaETH: MegaUSD has no EIP-3009 but supports EIP-2612.
    permit2(
        evm("eip155:4326", "MegaUSD", "0xFAfDdbb3FC7688494971a79cc65DCa3EF82079E7", 18, "MegaUSD", "1"),
        true,
    ),
    // Monad.
    evm("eip155:143", "USDC", "0x754704Bc059F8C67012fEd69BC8A327a5aafb603", 6, "USDC", "2"),
    // Stable (USDT0).
    evm("eip155:988", "USDT0", "0x779Ded0c9e1022225f8E0630b35a9b54bE713736", 6, "USDT0", "1"),
    evm("eip155:2201", "USDT0", "0x78Cf24370174180738C5B8E352B6D14c83a6c9A9", 6, "USDT0", "1"),
    // Polygon PoS and Amoy.
    evm("eip155:137", "USDC", "0x3c499c542cEF5E3811e1192ce70d8cC03d5c3359", 6, "USD Coin", "2"),
    evm("eip155:80002", "USDC", "0x41E94Eb019C0762f9Bfcf9Fb1E58725BfB0e7582", 6, "USDC", "2"),
    // Arbitrum One and Sepolia.
    evm("eip155:42161", "USDC", "0xaf88d065e77c8cC2239327C5EDb3A432268e5831", 6, "USD Coin", "2"),
    evm("eip155:421614", "USDC", "0x75faf114eafb1BDbe2F0316DF893fd58CE46AA4d", 6, "USD Coin", "2"),
    // Mezo mainnet and testnet: mUSD, Permit2 with EIP-2612.
    permit2(
        evm("eip155:31612", "mUSD", "0xdD468A1DDc392dcdbEf6db6e34E89AA338F9F186", 18, "Mezo USD", "1"),
        true,
    ),
    permit2(
        evm("eip155:31611", "mUSD", "0x118917a40FAF1CD7a13dB0Ef56C86De7973Ac503", 18, "Mezo USD", "1"),
        true,
    ),
    // Radius mainnet and testnet: SBC, Permit2 with EIP-2612.
    permit2(
        evm("eip155:723487", "SBC", "0x33ad9e4BD16B69B5BFdED37D8B5D9fF9aba014Fb", 6, "Stable Coin", "1"),
        true,
    ),
    permit2(
        evm("eip155:72344", "SBC", "0x33ad9e4BD16B69B5BFdED37D8B5D9fF9aba014Fb", 6, "Stable Coin", "1"),
        true,
    ),
    // ADI Chain.
    evm("eip155:36900", "USDC.e", "0x9cb8142aEBBcdc60AF7c97Af897A67A8f3CA71C2", 6, "USDC.e", "2"),
    // HPP mainnet and Sepolia.
    evm("eip155:190415", "USDC.e", "0x401eCb1D350407f13ba348573E5630B83638E30D", 6, "Bridged USDC", "2"),
    evm("eip155:181228", "USDC.e", "0x401eCb1D350407f13ba348573E5630B83638E30D", 6, "Bridged USDC", "2"),
    // XDC Network and Apothem.
    evm("eip155:50", "USDC", "0xfA2958CB79b0491CC627c1557F441eF849Ca8eb1", 6, "USDC", "2"),
    evm("eip155:51", "USDC", "0xb5AB69F7bBada22B28e79C8FFAECe55eF1c771D4", 6, "USDC", "2"),
    // Igra: Permit2 without EIP-2612.
    permit2(
        evm("eip155:38833", "USDC", "0xA5b8BF902b2844dA17d4506cc827F7F1681735E7", 6, "USDC", "1"),
        false,
    ),
    // Flare (USD₮0).
    evm("eip155:14", "USDT0", "0xe7cd86e13AC4309349F30B3435a9d337750fC82D", 6, "USD\u{20AE}0", "1"),
    // Celo: USDC (default), USDT, USAT.
    evm("eip155:42220", "USDC", "0xcebA9300f2b948710d2653dD7B07f33A8B32118C", 6, "USDC", "2"),
    evm("eip155:42220", "USDT", "0x48065fbBE25f71C9282ddf5e1cD6D6A887483D5e", 6, "Tether USD", "1"),
    evm("eip155:42220", "USAT", "0xD2ab3C9A02DBBAB236BfEC45D1d755DF4267F771", 6, "Tether America USD", "1"),
    // Celo Sepolia.
    evm("eip155:11142220", "USDC", "0x01C5C0122039549AD1493B8220cABEdD739BC44E", 6, "USDC", "2"),
    // Sei and Sei testnet.
    evm("eip155:1329", "USDC", "0xe15fC38F6D8c56aF07bbCBe3BAf5708A2Bf42392", 6, "USDC", "2"),
    evm("eip155:1328", "USDC", "0x4fCF1784B31630811181f670Aea7A7bEF803eaED", 6, "USDC", "2"),
    // Solana mainnet and devnet.
    spl(SOLANA_MAINNET, "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v"),
    spl(SOLANA_DEVNET, "4zMMC9srt5Ri5X14GAgXhaHii3GnPAEERYPJgZJDncDU"),
];

/// Every known asset, defaults first within each network.
pub fn known_assets() -> &'static [KnownAsset] {
    ASSETS
}

/// The default asset of `network` — USDC, or the network's dollar stablecoin where the SDK
/// defaults to another — used when a price is given in dollars.
///
/// ```
/// use tollgate_proto::{asset, Network};
/// let usdc = asset::default_asset(&Network::eip155(8453)).unwrap();
/// assert_eq!((usdc.symbol, usdc.decimals), ("USDC", 6));
/// assert_eq!(usdc.eip712.unwrap().name, "USD Coin");
/// assert!(asset::default_asset(&Network::eip155(31337)).is_none());
/// ```
pub fn default_asset(network: &Network) -> Option<&'static KnownAsset> {
    ASSETS.iter().find(|a| a.network == network.as_str())
}

/// The known asset at `address` on `network`. `0x` addresses compare case-insensitively (EVM
/// addresses are case-insensitive; mixed case is only a checksum); others (Solana's base58)
/// compare exactly.
///
/// ```
/// use tollgate_proto::{asset, Network};
/// let base_sepolia = Network::eip155(84532);
/// let usdc = asset::find_asset(&base_sepolia, "0x036cbd53842c5426634e7929541ec2318f3dcf7e");
/// assert_eq!(usdc.unwrap().eip712.unwrap().name, "USDC");
/// assert!(asset::find_asset(&Network::eip155(8453), usdc.unwrap().address).is_none());
/// ```
pub fn find_asset(network: &Network, address: &str) -> Option<&'static KnownAsset> {
    ASSETS.iter().find(|a| {
        a.network == network.as_str()
            && if a.address.starts_with("0x") {
                a.address.eq_ignore_ascii_case(address)
            } else {
                a.address == address
            }
    })
}

/// The known asset with ticker `symbol` on `network` (case-insensitive, as the SDK matches
/// `"0.05 usdc"`).
///
/// ```
/// use tollgate_proto::{asset, Network};
/// let celo = Network::eip155(42220);
/// assert_eq!(asset::find_asset_by_symbol(&celo, "usdt").unwrap().decimals, 6);
/// assert!(asset::find_asset_by_symbol(&celo, "DAI").is_none());
/// ```
pub fn find_asset_by_symbol(network: &Network, symbol: &str) -> Option<&'static KnownAsset> {
    ASSETS
        .iter()
        .find(|a| a.network == network.as_str() && a.symbol.eq_ignore_ascii_case(symbol))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_consistent() {
        let mut seen = std::collections::HashSet::new();
        for a in ASSETS {
            let net = a.network().unwrap_or_else(|| panic!("{}", a.network));
            assert!(
                seen.insert((a.network, a.address.to_lowercase())),
                "{} {} listed twice",
                a.network,
                a.address
            );
            assert_eq!(find_asset(&net, a.address), Some(a));
            assert_eq!(find_asset_by_symbol(&net, a.symbol), Some(a));
            assert_eq!(
                find_asset(&net, &a.address.to_lowercase()).is_some(),
                net.is_evm()
            );
            assert_eq!(a.eip712.is_some(), net.is_evm(), "{}", a.network);
            if net.is_evm() {
                assert_eq!(a.address.len(), 42, "{}", a.address);
                assert!(a.address[2..].bytes().all(|b| b.is_ascii_hexdigit()));
            }
            assert!(default_asset(&net).is_some());
            assert!(!a.supports_eip2612 || a.transfer_method.is_some());
        }
    }

    #[test]
    fn matches_the_official_sdk() {
        let domain = |n: u64| {
            let a = default_asset(&Network::eip155(n)).unwrap();
            (
                a.symbol,
                a.decimals,
                a.eip712.unwrap().name,
                a.eip712.unwrap().version,
            )
        };
        assert_eq!(domain(8453), ("USDC", 6, "USD Coin", "2"));
        assert_eq!(domain(84532), ("USDC", 6, "USDC", "2"));
        assert_eq!(domain(137), ("USDC", 6, "USD Coin", "2"));
        assert_eq!(domain(80002), ("USDC", 6, "USDC", "2"));
        assert_eq!(domain(43114), ("USDC", 6, "USD Coin", "2"));
        assert_eq!(domain(43113), ("USDC", 6, "USD Coin", "2"));
        assert_eq!(domain(4326), ("MegaUSD", 18, "MegaUSD", "1"));
        assert_eq!(domain(14), ("USDT0", 6, "USD₮0", "1"));
        assert_eq!(domain(42220).0, "USDC");
        for network in [SOLANA_MAINNET, SOLANA_DEVNET] {
            let usdc = default_asset(&network.parse().unwrap()).unwrap();
            assert_eq!((usdc.symbol, usdc.decimals, usdc.eip712), ("USDC", 6, None));
        }
        let from_v1 = |name: &str| default_asset(&Network::from_v1_name(name).unwrap()).unwrap();
        assert_eq!(
            from_v1("base").address,
            "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913"
        );
        assert_eq!(
            from_v1("solana").address,
            "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v"
        );
    }

    #[test]
    fn advertised_extra_follows_the_sdk_rule() {
        let extra = |n: u64| {
            default_asset(&Network::eip155(n))
                .unwrap()
                .requirements_extra()
        };
        let base = extra(84532);
        assert_eq!(base.len(), 2);
        assert_eq!(base["name"], "USDC");
        let mega = extra(4326);
        assert_eq!(mega["assetTransferMethod"], "permit2");
        assert_eq!(mega["name"], "MegaUSD");
        let igra = extra(38833);
        assert_eq!(igra.len(), 1);
        assert_eq!(igra["assetTransferMethod"], "permit2");
        let solana = default_asset(&SOLANA_MAINNET.parse().unwrap()).unwrap();
        assert!(solana.requirements_extra().is_empty());
    }
}
