//! Known assets: the default stablecoin of each network, with what a payer needs to sign for it.
//!
//! A seller who prices a route in dollars gets the network's default asset from here; a client
//! that meets an asset it has never heard of needs `extra.name`/`extra.version` instead.

use crate::Network;

/// A token the protocol knows by address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KnownAsset {
    /// CAIP-2 network id.
    pub network: &'static str,
    /// Ticker, e.g. "USDC".
    pub symbol: &'static str,
    /// Token address (0x hex on EVM, base58 mint on Solana).
    pub address: &'static str,
    /// Decimals of the atomic unit.
    pub decimals: u8,
    /// The token's signing-domain name and version, where payments are signed typed data.
    pub eip712: Option<Eip712Info>,
}

/// A token's signing-domain metadata (EIP-712 `name` and `version`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Eip712Info {
    /// Domain name, e.g. "USD Coin".
    pub name: &'static str,
    /// Domain version, e.g. "2".
    pub version: &'static str,
}

const fn evm(
    network: &'static str,
    symbol: &'static str,
    address: &'static str,
    name: &'static str,
    version: &'static str,
) -> KnownAsset {
    KnownAsset {
        network,
        symbol,
        address,
        decimals: 6,
        eip712: Some(Eip712Info { name, version }),
    }
}

/// The table; the first entry of a network is its default. EIP-712 names and versions are the
/// on-chain values (they differ between chains: Base's USDC is "USD Coin", Base Sepolia's "USDC").
static ASSETS: &[KnownAsset] = &[
    evm(
        "eip155:8453",
        "USDC",
        "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913",
        "USD Coin",
        "2",
    ),
    evm(
        "eip155:84532",
        "USDC",
        "0x036CbD53842c5426634e7929541eC2318f3dCF7e",
        "USDC",
        "2",
    ),
    evm(
        "eip155:1",
        "USDC",
        "0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48",
        "USD Coin",
        "2",
    ),
    evm(
        "eip155:43114",
        "USDC",
        "0xB97EF9Ef8734C71904D8002F8b6Bc66Dd9c48a6E",
        "USD Coin",
        "2",
    ),
    evm(
        "eip155:43113",
        "USDC",
        "0x5425890298aed601595a70AB815c96711a31Bc65",
        "USD Coin",
        "2",
    ),
    evm(
        "eip155:137",
        "USDC",
        "0x3c499c542cEF5E3811e1192ce70d8cC03d5c3359",
        "USD Coin",
        "2",
    ),
    evm(
        "eip155:80002",
        "USDC",
        "0x41E94Eb019C0762f9Bfcf9Fb1E58725BfB0e7582",
        "USDC",
        "2",
    ),
    evm(
        "eip155:42161",
        "USDC",
        "0xaf88d065e77c8cC2239327C5EDb3A432268e5831",
        "USD Coin",
        "2",
    ),
    evm(
        "eip155:421614",
        "USDC",
        "0x75faf114eafb1BDbe2F0316DF893fd58CE46AA4d",
        "USD Coin",
        "2",
    ),
    evm(
        "eip155:143",
        "USDC",
        "0x754704Bc059F8C67012fEd69BC8A327a5aafb603",
        "USDC",
        "2",
    ),
    evm(
        "eip155:1329",
        "USDC",
        "0xe15fC38F6D8c56aF07bbCBe3BAf5708A2Bf42392",
        "USDC",
        "2",
    ),
    evm(
        "eip155:1328",
        "USDC",
        "0x4fCF1784B31630811181f670Aea7A7bEF803eaED",
        "USDC",
        "2",
    ),
    evm(
        "eip155:42220",
        "USDC",
        "0xcebA9300f2b948710d2653dD7B07f33A8B32118C",
        "USDC",
        "2",
    ),
    evm(
        "eip155:11142220",
        "USDC",
        "0x01C5C0122039549AD1493B8220cABEdD739BC44E",
        "USDC",
        "2",
    ),
    evm(
        "eip155:50",
        "USDC",
        "0xfA2958CB79b0491CC627c1557F441eF849Ca8eb1",
        "USDC",
        "2",
    ),
    evm(
        "eip155:51",
        "USDC",
        "0xb5AB69F7bBada22B28e79C8FFAECe55eF1c771D4",
        "USDC",
        "2",
    ),
    evm(
        "eip155:36900",
        "USDC.e",
        "0x9cb8142aEBBcdc60AF7c97Af897A67A8f3CA71C2",
        "USDC.e",
        "2",
    ),
    evm(
        "eip155:190415",
        "USDC.e",
        "0x401eCb1D350407f13ba348573E5630B83638E30D",
        "Bridged USDC",
        "2",
    ),
    evm(
        "eip155:181228",
        "USDC.e",
        "0x401eCb1D350407f13ba348573E5630B83638E30D",
        "Bridged USDC",
        "2",
    ),
    evm(
        "eip155:988",
        "USDT0",
        "0x779Ded0c9e1022225f8E0630b35a9b54bE713736",
        "USDT0",
        "1",
    ),
    evm(
        "eip155:2201",
        "USDT0",
        "0x78Cf24370174180738C5B8E352B6D14c83a6c9A9",
        "USDT0",
        "1",
    ),
    evm(
        "eip155:14",
        "USDT0",
        "0xe7cd86e13AC4309349F30B3435a9d337750fC82D",
        "USD₮0",
        "1",
    ),
    KnownAsset {
        network: crate::network::SOLANA_MAINNET,
        symbol: "USDC",
        address: "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v",
        decimals: 6,
        eip712: None,
    },
    KnownAsset {
        network: crate::network::SOLANA_DEVNET,
        symbol: "USDC",
        address: "4zMMC9srt5Ri5X14GAgXhaHii3GnPAEERYPJgZJDncDU",
        decimals: 6,
        eip712: None,
    },
];

/// Every known asset.
pub fn known_assets() -> &'static [KnownAsset] {
    ASSETS
}

/// The default asset (USDC, or the network's dollar stablecoin) of `network`.
///
/// ```
/// use tollgate_proto::{asset, Network};
/// let usdc = asset::default_asset(&Network::eip155(8453)).unwrap();
/// assert_eq!((usdc.symbol, usdc.decimals), ("USDC", 6));
/// assert!(asset::default_asset(&Network::eip155(31337)).is_none());
/// ```
pub fn default_asset(network: &Network) -> Option<&'static KnownAsset> {
    ASSETS.iter().find(|a| a.network == network.as_str())
}

/// The known asset at `address` on `network` (0x addresses compare case-insensitively).
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_consistent() {
        for a in ASSETS {
            let net: Network = a.network.parse().expect(a.network);
            assert_eq!(
                find_asset(&net, &a.address.to_lowercase()).is_some(),
                net.is_evm()
            );
            assert!(find_asset(&net, a.address).is_some());
            assert_eq!(a.eip712.is_some(), net.is_evm(), "{}", a.network);
        }
        let base_sepolia = Network::from_v1_name("base-sepolia").unwrap();
        assert_eq!(
            default_asset(&base_sepolia).unwrap().eip712.unwrap().name,
            "USDC"
        );
        let base = Network::from_v1_name("base").unwrap();
        assert_eq!(
            default_asset(&base).unwrap().eip712.unwrap().name,
            "USD Coin"
        );
    }
}
