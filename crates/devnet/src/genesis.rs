//! The genesis state: dev accounts funded, Tollgate's contracts deployed by executing their
//! committed creation code in revm, test USDC, USDT and permit tokens minted, and Permit2 and
//! the two x402 Permit2 proxies placed at their canonical addresses.

use alloy_primitives::{address, Address, Bytes, TxKind, U256};
use alloy_signer_local::PrivateKeySigner;
use alloy_sol_types::{sol, SolCall};
use revm::context::result::ExecutionResult;
use revm::context::{BlockEnv, TxEnv};
use revm::database::InMemoryDB;
use revm::state::{AccountInfo, Bytecode};

use crate::executor::{self, Mode, BLOCK_GAS_LIMIT};
use crate::DevnetError;

/// Private keys of anvil's ten deterministic dev accounts — public, well-known test keys
/// (never use them with real funds). The same as `tollgate-testkit`'s, so tests are portable.
pub const DEV_KEYS: [&str; 10] = [
    "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80",
    "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d",
    "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a",
    "0x7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6",
    "0x47e179ec197488593b187f80a00eb0da91f1b9d0b13f8733639f19c30a34926a",
    "0x8b3a350cf5c34c9194ca85829a2df0ec3153be0318b5e2d3348e872092edffba",
    "0x92db14e403b83dfe3df233f83dfa3a0d7096f21ca9b0d6d6b8d88b2b4ec1564e",
    "0x4bbbf85ce3377467afe5d46f804f221813b2bb87f24d81f60f1fcdbf7cbf4356",
    "0xdbda1821b80551c9d65939329250298aa3472ba22feea921c0cf5d620ea67b97",
    "0x2a871d0798f97d79848a013d4936a73bf4cc922c825d33c1cf7073dff6d409c6",
];

/// ETH each dev account holds at genesis: 10,000 ETH (in wei), as anvil's `--balance 10000`.
pub const INITIAL_ETH: u128 = 10_000 * 1_000_000_000_000_000_000;

/// Test USDC each of dev accounts 1–9 holds at genesis: 1,000 USDC (6 decimals).
pub const INITIAL_USDC: u64 = 1_000_000_000;

/// The USDT-like test token (no EIP-3009, no EIP-2612) each of dev accounts 1–9 holds at
/// genesis: 1,000 USDT (6 decimals).
pub const INITIAL_USDT: u64 = 1_000_000_000;

/// The EIP-2612 test token each of dev accounts 1–9 holds at genesis: 1,000 (6 decimals).
pub const INITIAL_PERMIT_TOKEN: u64 = 1_000_000_000;

/// Permit2's canonical address (the same on every chain). x402 clients sign Permit2 typed data
/// for this verifying contract, so our Permit2 must live exactly here.
pub const PERMIT2: Address = address!("0x000000000022D473030F116dDEE9F6B43aC78BA3");

/// The canonical `x402ExactPermit2Proxy`: the `spender` of every `exact` Permit2 payment.
pub const EXACT_PERMIT2_PROXY: Address = address!("0x402085c248EeA27D92E8b30b2C58ed07f9E20001");

/// The canonical `x402UptoPermit2Proxy`: the `spender` of every `upto` payment.
pub const UPTO_PERMIT2_PROXY: Address = address!("0x4020A4f3b7b90ccA423B9fabCc0CE57C6C240002");

/// The canonical `x402BatchSettlement`: the payment channels of the `batch-settlement` scheme.
/// Channel ids and vouchers are EIP-712 hashes under its address, so it must live exactly here.
pub const BATCH_SETTLEMENT: Address = address!("0x4020074e9dF2ce1deE5A9C1b5c3f541D02a10003");

/// The canonical `ERC3009DepositCollector`: the payee of every EIP-3009 channel deposit.
pub const ERC3009_DEPOSIT_COLLECTOR: Address =
    address!("0x4020806089470a89826cB9fB1f4059150b550004");

/// The canonical `Permit2DepositCollector`: the Permit2 `spender` of every Permit2 channel deposit.
pub const PERMIT2_DEPOSIT_COLLECTOR: Address =
    address!("0x4020425FAf3B746C082C2f942b4E5159887B0005");

/// One funded account: its address and its (public, well-known test) private key.
#[derive(Clone, PartialEq, Eq)]
pub struct DevAccount {
    /// The account's address.
    pub address: Address,
    /// The private key, `0x`-prefixed hex. One of anvil's published dev keys.
    pub key: String,
}

impl std::fmt::Debug for DevAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The keys are public test keys, but a debug print has no reason to carry one.
        f.debug_struct("DevAccount")
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

/// The dev accounts, in order.
pub fn dev_accounts() -> Vec<DevAccount> {
    DEV_KEYS
        .iter()
        .filter_map(|key| {
            let signer: PrivateKeySigner = key.parse().ok()?;
            Some(DevAccount {
                address: signer.address(),
                key: (*key).to_owned(),
            })
        })
        .collect()
}

/// One compiled contract from `contracts/out/`, embedded at build time. Public so that other
/// rigs (the CLI's anvil bench) deploy the very bytes the devnet runs at genesis.
pub struct Artifact {
    name: &'static str,
    json: &'static str,
}

macro_rules! artifact {
    ($name:literal) => {
        Artifact {
            name: $name,
            json: include_str!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../contracts/out/",
                $name,
                ".json"
            )),
        }
    };
}

/// The USDC-compatible EIP-3009 test token.
pub const TEST_USDC: Artifact = artifact!("TestUSDC");
/// Multicall3.
pub const MULTICALL3: Artifact = artifact!("Multicall3");
const WALLET_FACTORY: Artifact = artifact!("WalletFactory");
/// The USDT-like test token ("Tether USD", 6 decimals; no EIP-3009, no EIP-2612).
pub const TEST_USDT: Artifact = artifact!("TestUSDT");
/// The EIP-2612 test token ("Permit USD", version "1", 6 decimals; no EIP-3009).
pub const TEST_PERMIT_TOKEN: Artifact = artifact!("TestPermitToken");
/// Permit2's signature transfers, for [`PERMIT2`].
pub const PERMIT2_CONTRACT: Artifact = artifact!("Permit2");
/// The x402 `exact` Permit2 proxy, for [`EXACT_PERMIT2_PROXY`].
pub const EXACT_PERMIT2_PROXY_CONTRACT: Artifact = artifact!("x402ExactPermit2Proxy");
/// The x402 `upto` Permit2 proxy, for [`UPTO_PERMIT2_PROXY`].
pub const UPTO_PERMIT2_PROXY_CONTRACT: Artifact = artifact!("x402UptoPermit2Proxy");
/// The `batch-settlement` channels, for [`BATCH_SETTLEMENT`].
pub const BATCH_SETTLEMENT_CONTRACT: Artifact = artifact!("x402BatchSettlement");
/// The EIP-3009 deposit collector, for [`ERC3009_DEPOSIT_COLLECTOR`].
pub const ERC3009_DEPOSIT_COLLECTOR_CONTRACT: Artifact = artifact!("ERC3009DepositCollector");
/// The Permit2 deposit collector, for [`PERMIT2_DEPOSIT_COLLECTOR`].
pub const PERMIT2_DEPOSIT_COLLECTOR_CONTRACT: Artifact = artifact!("Permit2DepositCollector");

/// The contracts that live at fixed canonical addresses, with the artifact whose runtime code
/// goes there. Their code has no constructor state and no immutables, so the runtime code alone
/// is the whole contract (a rig copies it in with `anvil_setCode`; genesis writes it directly).
pub const CANONICAL: [(Address, &Artifact); 6] = [
    (PERMIT2, &PERMIT2_CONTRACT),
    (EXACT_PERMIT2_PROXY, &EXACT_PERMIT2_PROXY_CONTRACT),
    (UPTO_PERMIT2_PROXY, &UPTO_PERMIT2_PROXY_CONTRACT),
    (BATCH_SETTLEMENT, &BATCH_SETTLEMENT_CONTRACT),
    (
        ERC3009_DEPOSIT_COLLECTOR,
        &ERC3009_DEPOSIT_COLLECTOR_CONTRACT,
    ),
    (
        PERMIT2_DEPOSIT_COLLECTOR,
        &PERMIT2_DEPOSIT_COLLECTOR_CONTRACT,
    ),
];

impl Artifact {
    /// The contract's name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The creation code.
    pub fn bytecode(&self) -> Result<Bytes, DevnetError> {
        self.code("bytecode")
    }

    /// The runtime code, as it sits at the contract's address once deployed.
    pub fn deployed_bytecode(&self) -> Result<Bytes, DevnetError> {
        self.code("deployedBytecode")
    }

    fn code(&self, field: &str) -> Result<Bytes, DevnetError> {
        let bad = |reason: String| DevnetError::Artifact {
            name: self.name,
            reason,
        };
        let value: serde_json::Value =
            serde_json::from_str(self.json).map_err(|e| bad(e.to_string()))?;
        let code = value
            .get(field)
            .and_then(|b| b.as_str())
            .ok_or_else(|| bad(format!("no `{field}` string")))?
            .parse::<Bytes>()
            .map_err(|e| bad(format!("{field} is not hex: {e}")))?;
        if code.is_empty() {
            return Err(bad(format!("empty `{field}`")));
        }
        Ok(code)
    }
}

sol! {
    function mint(address to, uint256 amount) external;
    function mintBatch(address[] to, uint256 amount) external;
}

/// Where genesis put the contracts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Contracts {
    /// The EIP-3009 test token ("USD Coin", version "2", 6 decimals).
    pub token: Address,
    /// Multicall3.
    pub multicall3: Address,
    /// The CREATE2 factory of EIP-1271 test wallets.
    pub wallet_factory: Address,
    /// The USDT-like test token ("Tether USD", 6 decimals; Permit2 only).
    pub usdt: Address,
    /// The EIP-2612 test token ("Permit USD", version "1", 6 decimals).
    pub permit_token: Address,
}

/// Builds the genesis state for `chain_id`: the dev accounts and `extra` accounts funded with
/// ETH, then, from dev account 0, the three deployments and the nine USDC mints (nonces 0–11),
/// the USDT-like and EIP-2612 token deployments (12, 13) and one batch mint of each to accounts
/// 1–9 (14, 15), executed in revm; last, Permit2, the two x402 proxies and the batch-settlement
/// contracts written at their canonical addresses ([`CANONICAL`]).
pub fn build(
    chain_id: u64,
    timestamp: u64,
    extra: &[(Address, U256)],
) -> Result<(InMemoryDB, Contracts), DevnetError> {
    let mut db = InMemoryDB::default();
    let accounts = dev_accounts();
    for account in &accounts {
        db.insert_account_info(
            account.address,
            AccountInfo {
                balance: U256::from(INITIAL_ETH),
                ..AccountInfo::default()
            },
        );
    }
    for (address, balance) in extra {
        db.insert_account_info(
            *address,
            AccountInfo {
                balance: *balance,
                ..AccountInfo::default()
            },
        );
    }
    let deployer = accounts[0].address;
    let block = BlockEnv {
        number: U256::ZERO,
        timestamp: U256::from(timestamp),
        gas_limit: BLOCK_GAS_LIMIT,
        basefee: 0,
        ..BlockEnv::default()
    };
    let mut nonce = 0u64;
    let mut exec = |db: &mut InMemoryDB, step: String, kind: TxKind, data: Bytes| {
        let tx = TxEnv {
            caller: deployer,
            gas_limit: BLOCK_GAS_LIMIT,
            gas_price: 0,
            kind,
            data,
            nonce,
            chain_id: Some(chain_id),
            ..TxEnv::default()
        };
        nonce += 1;
        let result = executor::run(
            &mut *db,
            executor::cfg(chain_id, Mode::Transact),
            block.clone(),
            tx,
            true,
        )
        .map_err(|e| DevnetError::Genesis {
            step: step.clone(),
            reason: e.to_string(),
        })?;
        match result {
            ExecutionResult::Success { .. } => Ok(result),
            other => Err(DevnetError::Genesis {
                step,
                reason: format!("{other:?}"),
            }),
        }
    };
    // A macro rather than a closure: deployments and calls interleave, and two closures could
    // not both borrow `exec` mutably.
    macro_rules! deploy {
        ($artifact:expr) => {{
            let artifact: &Artifact = $artifact;
            let step = format!("deploying {}", artifact.name);
            exec(&mut db, step.clone(), TxKind::Create, artifact.bytecode()?)?
                .created_address()
                .ok_or_else(|| DevnetError::Genesis {
                    step,
                    reason: "no contract created".into(),
                })
        }};
    }
    let token = deploy!(&TEST_USDC)?;
    let multicall3 = deploy!(&MULTICALL3)?;
    let wallet_factory = deploy!(&WALLET_FACTORY)?;
    for account in &accounts[1..] {
        let data = mintCall {
            to: account.address,
            amount: U256::from(INITIAL_USDC),
        }
        .abi_encode();
        exec(
            &mut db,
            format!("minting USDC to {}", account.address),
            TxKind::Call(token),
            data.into(),
        )?;
    }
    // Appended after the original set-up, so the earlier contracts keep their addresses.
    let usdt = deploy!(&TEST_USDT)?;
    let permit_token = deploy!(&TEST_PERMIT_TOKEN)?;
    let payers: Vec<Address> = accounts[1..].iter().map(|a| a.address).collect();
    for (token, amount, what) in [
        (usdt, INITIAL_USDT, "minting USDT"),
        (
            permit_token,
            INITIAL_PERMIT_TOKEN,
            "minting the permit token",
        ),
    ] {
        let data = mintBatchCall {
            to: payers.clone(),
            amount: U256::from(amount),
        }
        .abi_encode();
        exec(&mut db, what.to_owned(), TxKind::Call(token), data.into())?;
    }
    for (address, artifact) in CANONICAL {
        // Nonce 0, like `anvil_setCode` leaves it, so both backends hold the same account.
        let info =
            AccountInfo::default().with_code(Bytecode::new_raw(artifact.deployed_bytecode()?));
        db.insert_account_info(address, info);
    }
    db.cache.logs.clear();
    Ok((
        db,
        Contracts {
            token,
            multicall3,
            wallet_factory,
            usdt,
            permit_token,
        },
    ))
}
