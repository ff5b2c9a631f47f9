//! `tollgate init`: writes a starter configuration for `tollgate proxy`, on any network.
//!
//! On a network with a known stablecoin the routes are priced in dollars. Anywhere else — a
//! local chain, a custom token — the token comes from flags (`--asset`, `--decimals`,
//! `--eip712-name`, `--eip712-version`), from the facts `tollgate devnet` prints or writes
//! (`--devnet-json FILE`), or from a running node (`--from-devnet URL`: its chain id, and the
//! token's `name()`, `version()`, `decimals()` and `symbol()` read by `eth_call`).

use std::io::Write;
use std::path::PathBuf;

use alloy::primitives::Address;
use alloy::providers::{Provider, ProviderBuilder};
use tollgate::gateway::config::{starter_with_asset, StarterAsset};
use tollgate::gateway::{self, GatewayConfig};
use tollgate::proto::{asset, Network};

alloy::sol! {
    #[sol(rpc)]
    interface ITokenFacts {
        function name() external view returns (string);
        function version() external view returns (string);
        function decimals() external view returns (uint8);
        function symbol() external view returns (string);
    }
}

/// Options of `tollgate init`.
#[derive(Debug, clap::Args)]
pub struct InitArgs {
    /// CAIP-2 network to be paid on, e.g. `eip155:8453` (Base) or `eip155:84532` (Base
    /// Sepolia). Taken from the devnet with --devnet-json or --from-devnet.
    #[arg(long, required_unless_present_any = ["devnet_json", "from_devnet"])]
    network: Option<Network>,
    /// The address that receives payments.
    #[arg(long)]
    pay_to: String,
    /// Base URL of the API to sell.
    #[arg(long, default_value = "http://127.0.0.1:3000")]
    upstream: String,
    /// The facilitator's base URL.
    #[arg(long, default_value = "http://127.0.0.1:4020")]
    facilitator: String,
    /// The token to be paid in, for a network without a known stablecoin (or another token
    /// than the default). Needs --decimals, --eip712-name and --eip712-version unless the
    /// token is a known one.
    #[arg(long, value_name = "ADDRESS")]
    asset: Option<String>,
    /// Decimals of --asset (6 for USDC).
    #[arg(long, value_name = "N")]
    decimals: Option<u8>,
    /// The EIP-712 domain name of --asset, as its contract signs (e.g. "USD Coin").
    #[arg(long, value_name = "NAME")]
    eip712_name: Option<String>,
    /// The EIP-712 domain version of --asset (e.g. "2").
    #[arg(long, value_name = "VERSION")]
    eip712_version: Option<String>,
    /// Ticker of --asset, for the file's comments.
    #[arg(long, value_name = "SYMBOL")]
    symbol: Option<String>,
    /// The facts of a `tollgate devnet`: the JSON it prints on start, or the devnet.json that
    /// `tollgate devnet --write-configs DIR` writes. Gives the network and the token.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["from_devnet", "network"])]
    devnet_json: Option<PathBuf>,
    /// A running `tollgate devnet` (or any node with the test token deployed the same way):
    /// its chain id gives the network, and the token's facts are read from the chain.
    #[arg(long, value_name = "URL", conflicts_with = "network")]
    from_devnet: Option<String>,
    /// Where to write the file; standard output when absent. An existing file is never
    /// overwritten.
    #[arg(long, short)]
    output: Option<PathBuf>,
}

/// Why no starter was written. Each message names the flag that fixes it.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error("give --network CAIP2 (e.g. eip155:84532), or --devnet-json FILE / --from-devnet URL")]
    NoNetwork,
    #[error(
        "no known stablecoin on {network}: name the token with --asset ADDRESS --decimals N \
         --eip712-name NAME --eip712-version VERSION, or, for a `tollgate devnet`, use \
         --devnet-json FILE or --from-devnet URL"
    )]
    NoAsset { network: Network },
    #[error(
        "--asset {asset} is not a known token on {network}: also give {missing} \
         (or --from-devnet URL to read them from the chain)"
    )]
    Incomplete {
        asset: String,
        network: Network,
        missing: String,
    },
    #[error(
        "--decimals, --eip712-name and --eip712-version describe a token: add --asset ADDRESS"
    )]
    FactsWithoutAsset,
    #[error(
        "{flag} {given:?} contradicts the known {symbol} on {network} ({table:?}); \
         drop {flag} or correct it"
    )]
    Contradicts {
        flag: &'static str,
        given: String,
        table: String,
        symbol: &'static str,
        network: Network,
    },
    #[error("--devnet-json {path}: {reason} (expected the JSON `tollgate devnet` prints)")]
    DevnetJson { path: PathBuf, reason: String },
    #[error("--from-devnet {url}: {reason}")]
    FromDevnet { url: String, reason: String },
    #[error(
        "--from-devnet {url}: the token at {token} does not answer {call} ({reason}); \
         give its facts with --asset, --decimals, --eip712-name, --eip712-version"
    )]
    TokenFact {
        url: String,
        token: Address,
        call: &'static str,
        reason: String,
    },
    #[error("the starter does not validate ({0}); check --pay-to, --upstream and --facilitator")]
    Config(#[from] gateway::ConfigError),
    #[error("{path} already exists; not overwriting it (choose another --output)")]
    Exists { path: PathBuf },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The token facts gathered from the flags and the devnet, before defaults are filled in.
#[derive(Debug, Default)]
struct Partial {
    address: Option<String>,
    decimals: Option<u8>,
    name: Option<String>,
    version: Option<String>,
    symbol: Option<String>,
}

impl Partial {
    /// Flags win over what the devnet said.
    fn override_with(self, args: &InitArgs) -> Self {
        Self {
            address: args.asset.clone().or(self.address),
            decimals: args.decimals.or(self.decimals),
            name: args.eip712_name.clone().or(self.name),
            version: args.eip712_version.clone().or(self.version),
            symbol: args.symbol.clone().or(self.symbol),
        }
    }
}

/// Writes the starter configuration, checked to parse and validate before it is written.
pub async fn run(args: InitArgs) -> Result<(), InitError> {
    let (network, from_devnet) = if let Some(path) = &args.devnet_json {
        read_devnet_json(path)?
    } else if let Some(url) = &args.from_devnet {
        read_from_devnet(url, args.asset.as_deref()).await?
    } else {
        let network = args.network.clone().ok_or(InitError::NoNetwork)?;
        (network, Partial::default())
    };
    let facts = from_devnet.override_with(&args);
    let asset = resolve_asset(&network, facts)?;
    let text = starter_with_asset(
        &network,
        &args.pay_to,
        &args.upstream,
        &args.facilitator,
        asset.as_ref(),
    );
    let config = GatewayConfig::parse(&text)?;
    config.validate()?;
    write(args.output, &text)
}

/// The token of the starter: `None` for the network's known stablecoin (dollar prices).
fn resolve_asset(network: &Network, facts: Partial) -> Result<Option<StarterAsset>, InitError> {
    let Some(address) = facts.address.map(checksummed) else {
        if facts.decimals.is_some() || facts.name.is_some() || facts.version.is_some() {
            return Err(InitError::FactsWithoutAsset);
        }
        return match asset::default_asset(network) {
            Some(_) => Ok(None),
            None => Err(InitError::NoAsset {
                network: network.clone(),
            }),
        };
    };
    // A known token fills in what was not given, and must not be contradicted: a wrong
    // signing domain makes every payment fail verification.
    let known = asset::find_asset(network, &address);
    if let Some(k) = known {
        let domain = k.eip712;
        let clashes = [
            (
                "--decimals",
                facts.decimals.map(|d| d.to_string()),
                Some(k.decimals.to_string()),
            ),
            (
                "--eip712-name",
                facts.name.clone(),
                domain.map(|d| d.name.to_owned()),
            ),
            (
                "--eip712-version",
                facts.version.clone(),
                domain.map(|d| d.version.to_owned()),
            ),
        ];
        for (flag, given, table) in clashes {
            if let (Some(given), Some(table)) = (given, table) {
                if given != table {
                    return Err(InitError::Contradicts {
                        flag,
                        given,
                        table,
                        symbol: k.symbol,
                        network: network.clone(),
                    });
                }
            }
        }
    }
    let decimals = facts.decimals.or(known.map(|k| k.decimals));
    let name = facts
        .name
        .or_else(|| known.and_then(|k| k.eip712).map(|d| d.name.to_owned()));
    let version = facts
        .version
        .or_else(|| known.and_then(|k| k.eip712).map(|d| d.version.to_owned()));
    match (decimals, name, version) {
        (Some(decimals), Some(eip712_name), Some(eip712_version)) => Ok(Some(StarterAsset {
            symbol: facts
                .symbol
                .or(known.map(|k| k.symbol.to_owned()))
                .unwrap_or_else(|| "tokens".to_owned()),
            address,
            decimals,
            eip712_name,
            eip712_version,
        })),
        (decimals, name, version) => {
            let missing: Vec<&str> = [
                (decimals.is_none(), "--decimals N"),
                (name.is_none(), "--eip712-name NAME"),
                (version.is_none(), "--eip712-version VERSION"),
            ]
            .iter()
            .filter(|(absent, _)| *absent)
            .map(|(_, flag)| *flag)
            .collect();
            Err(InitError::Incomplete {
                asset: address,
                network: network.clone(),
                missing: missing.join(", "),
            })
        }
    }
}

/// The network and token of a `tollgate devnet`'s facts JSON.
fn read_devnet_json(path: &PathBuf) -> Result<(Network, Partial), InitError> {
    let bad = |reason: String| InitError::DevnetJson {
        path: path.clone(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
    let facts: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| bad(format!("not JSON: {e}")))?;
    let network: Network = facts
        .get("network")
        .and_then(|n| n.as_str())
        .ok_or_else(|| bad("no `network` string".into()))?
        .parse()
        .map_err(|e| bad(format!("`network`: {e}")))?;
    let token = facts
        .get("token")
        .ok_or_else(|| bad("no `token` object".into()))?;
    let text_of = |key: &str| token.get(key).and_then(|v| v.as_str()).map(str::to_owned);
    let decimals = token
        .get("decimals")
        .and_then(|d| d.as_u64())
        .and_then(|d| u8::try_from(d).ok());
    Ok((
        network,
        Partial {
            address: Some(checksummed(
                text_of("address").ok_or_else(|| bad("no `token.address`".into()))?,
            )),
            decimals,
            name: text_of("name"),
            version: text_of("version"),
            symbol: text_of("symbol"),
        },
    ))
}

/// An EVM address in its checksummed form; anything else as given.
fn checksummed(address: String) -> String {
    address
        .parse::<Address>()
        .map(|a| a.to_checksum(None))
        .unwrap_or(address)
}

/// The network (from `eth_chainId`) and the token's facts (from the token contract) of a
/// running node. The token is `asset` if given, else where `tollgate devnet` deploys its test
/// token: dev account 0's first contract.
async fn read_from_devnet(url: &str, asset: Option<&str>) -> Result<(Network, Partial), InitError> {
    let fail = |reason: String| InitError::FromDevnet {
        url: url.to_owned(),
        reason,
    };
    let parsed = url.parse().map_err(|e| fail(format!("not a URL: {e}")))?;
    let provider = ProviderBuilder::new().connect_http(parsed);
    let chain_id =
        tokio::time::timeout(std::time::Duration::from_secs(10), provider.get_chain_id())
            .await
            .map_err(|_| fail("no answer to eth_chainId within 10 s".into()))?
            .map_err(|e| fail(format!("eth_chainId: {e}")))?;
    let token: Address = match asset {
        Some(a) => a
            .parse()
            .map_err(|e| fail(format!("--asset {a} is not an address: {e}")))?,
        None => devnet_token_address()
            .ok_or_else(|| fail("no dev account to derive the token address from".into()))?,
    };
    let code = provider
        .get_code_at(token)
        .await
        .map_err(|e| fail(format!("eth_getCode: {e}")))?;
    if code.is_empty() {
        return Err(fail(format!(
            "no contract at {token}, where `tollgate devnet` puts its token; \
             pass the token with --asset ADDRESS"
        )));
    }
    let contract = ITokenFacts::new(token, &provider);
    let fact_err = |call, e: alloy::contract::Error| InitError::TokenFact {
        url: url.to_owned(),
        token,
        call,
        reason: e.to_string(),
    };
    let name = contract
        .name()
        .call()
        .await
        .map_err(|e| fact_err("name()", e))?;
    let version = contract
        .version()
        .call()
        .await
        .map_err(|e| fact_err("version()", e))?;
    let decimals = contract
        .decimals()
        .call()
        .await
        .map_err(|e| fact_err("decimals()", e))?;
    let symbol = contract.symbol().call().await.ok();
    Ok((
        Network::eip155(chain_id),
        Partial {
            address: Some(token.to_checksum(None)),
            decimals: Some(decimals),
            name: Some(name),
            version: Some(version),
            symbol,
        },
    ))
}

/// The test token's address on a `tollgate devnet` (and on the anvil test rig): the first
/// contract dev account 0 creates.
fn devnet_token_address() -> Option<Address> {
    tollgate_devnet::genesis::dev_accounts()
        .first()
        .map(|deployer| deployer.address.create(0))
}

fn write(output: Option<PathBuf>, text: &str) -> Result<(), InitError> {
    let Some(path) = output else {
        print!("{text}");
        return Ok(());
    };
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(|source| {
            if source.kind() == std::io::ErrorKind::AlreadyExists {
                InitError::Exists { path: path.clone() }
            } else {
                InitError::Write {
                    path: path.clone(),
                    source,
                }
            }
        })?;
    file.write_all(text.as_bytes())
        .map_err(|source| InitError::Write {
            path: path.clone(),
            source,
        })?;
    eprintln!(
        "wrote {}; edit the routes, then: tollgate proxy --config {}",
        path.display(),
        path.display()
    );
    Ok(())
}
