//! A funded chain with Tollgate's contracts deployed.

use alloy::network::{EthereumWallet, TransactionBuilder};
use alloy::primitives::{Address, Bytes, B256, U256};
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use alloy::rpc::types::TransactionRequest;
use alloy::signers::local::PrivateKeySigner;
use alloy::sol;

use crate::artifacts::{Artifact, MULTICALL3, TEST_USDC, WALLET_1271, WALLET_FACTORY};
use crate::{Anvil, TestkitError};

/// Private keys of anvil's ten deterministic dev accounts (public test keys: never use with
/// real funds). Account 0 deploys and pays gas; the others are payers and payees. One list,
/// the devnet's, so both backends have the same accounts.
pub use tollgate_devnet::DEV_KEYS;

/// Where Multicall3 lives on every public EVM chain.
pub const CANONICAL_MULTICALL3: Address =
    alloy::primitives::address!("0xcA11bde05977b3631167028862bE2a173976CA11");

/// Test USDC (atomic units) minted to accounts 1..=9 at set-up: the devnet's genesis amount,
/// so both backends start alike.
pub use tollgate_devnet::INITIAL_USDC;

sol! {
    #[sol(rpc)]
    interface ITestUsdc {
        function mint(address to, uint256 amount) external;
        function balanceOf(address account) external view returns (uint256);
        function transfer(address to, uint256 amount) external returns (bool);
        function authorizationState(address authorizer, bytes32 nonce) external view returns (bool);
    }

    #[sol(rpc)]
    interface IWalletFactory {
        function deploy(address owner, bytes32 salt) external returns (address);
        function predict(address owner, bytes32 salt) external view returns (address);
    }
}

/// Environment variable choosing the chain behind [`TestChain::start`]: `anvil` (the default)
/// or `devnet` (the embedded `tollgate-devnet`).
pub const BACKEND_ENV: &str = "TOLLGATE_TEST_CHAIN";

/// Which node a [`TestChain`] runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A real anvil process.
    Anvil,
    /// The embedded revm devnet, in this process.
    Devnet,
}

impl Backend {
    /// The backend `TOLLGATE_TEST_CHAIN` asks for (anvil when unset).
    pub fn from_env() -> Result<Self, TestkitError> {
        match std::env::var(BACKEND_ENV).as_deref() {
            Err(_) | Ok("") | Ok("anvil") => Ok(Self::Anvil),
            Ok("devnet") => Ok(Self::Devnet),
            Ok(other) => Err(TestkitError::chain(
                "choose backend",
                format!("{BACKEND_ENV}={other}: expected `anvil` or `devnet`"),
            )),
        }
    }
}

enum Node {
    Anvil(Anvil),
    Devnet(tollgate_devnet::Devnet),
}

/// A running chain (anvil, or the embedded devnet) with the contracts deployed and accounts
/// funded. Dropping it stops the node.
pub struct TestChain {
    node: Node,
    provider: DynProvider,
    /// The EIP-3009 test token ("USD Coin", version "2", 6 decimals).
    pub usdc: Address,
    /// The Multicall3-compatible batching contract.
    pub multicall3: Address,
    /// The CREATE2 factory for EIP-1271 test wallets.
    pub wallet_factory: Address,
}

impl std::fmt::Debug for TestChain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestChain")
            .field("endpoint", &self.endpoint())
            .field("usdc", &self.usdc)
            .finish_non_exhaustive()
    }
}

impl TestChain {
    /// Starts the backend `TOLLGATE_TEST_CHAIN` names (anvil by default); either way the chain
    /// id is 31337, account 0 has deployed the contracts (nonces 0–2) and minted
    /// [`INITIAL_USDC`] to accounts 1..=9 (nonces 3–11).
    pub async fn start() -> Result<Self, TestkitError> {
        match Backend::from_env()? {
            Backend::Anvil => Self::start_anvil().await,
            Backend::Devnet => Self::start_devnet().await,
        }
    }

    /// Starts the embedded devnet, whose genesis is the state [`TestChain::start_anvil`]
    /// reaches after its set-up.
    pub async fn start_devnet() -> Result<Self, TestkitError> {
        let devnet = tollgate_devnet::Devnet::start()
            .await
            .map_err(|e| TestkitError::chain("start devnet", e))?;
        let provider = ProviderBuilder::new()
            .wallet(EthereumWallet::from(Self::signer(0)))
            .connect_http(
                devnet
                    .url()
                    .parse()
                    .map_err(|e| TestkitError::chain("parse url", e))?,
            )
            .erased();
        Ok(Self {
            usdc: devnet.token(),
            multicall3: devnet.multicall3(),
            wallet_factory: devnet.wallet_factory(),
            node: Node::Devnet(devnet),
            provider,
        })
    }

    /// Starts anvil (chain id 31337), deploys the contracts from account 0 and mints
    /// [`INITIAL_USDC`] to accounts 1..=9.
    pub async fn start_anvil() -> Result<Self, TestkitError> {
        Self::start_with_chain_id(31337).await
    }

    /// Like [`TestChain::start_anvil`], with anvil running under `chain_id` (e.g. 84532, Base
    /// Sepolia, for software that only knows x402 v1's network names). The contracts land at
    /// the same addresses whatever the chain id.
    pub async fn start_with_chain_id(chain_id: u64) -> Result<Self, TestkitError> {
        let anvil = Anvil::start_with_chain_id(chain_id)?;
        let deployer = Self::signer(0);
        let provider = ProviderBuilder::new()
            .wallet(EthereumWallet::from(deployer))
            .connect_http(
                anvil
                    .endpoint()
                    .parse()
                    .map_err(|e| TestkitError::chain("parse url", e))?,
            )
            .erased();

        // The hard-coded keys must be anvil's accounts, or every later assertion is meaningless.
        let accounts = provider
            .get_accounts()
            .await
            .map_err(|e| TestkitError::chain("eth_accounts", e))?;
        for (i, account) in accounts.iter().enumerate().take(DEV_KEYS.len()) {
            if *account != Self::signer(i).address() {
                return Err(TestkitError::chain(
                    "check dev keys",
                    format!("anvil account {i} is {account}, not our key's address"),
                ));
            }
        }

        let usdc = deploy(&provider, &TEST_USDC, Bytes::new()).await?;
        let multicall3 = deploy(&provider, &MULTICALL3, Bytes::new()).await?;
        let wallet_factory = deploy(&provider, &WALLET_FACTORY, Bytes::new()).await?;
        let chain = Self {
            node: Node::Anvil(anvil),
            provider,
            usdc,
            multicall3,
            wallet_factory,
        };
        for i in 1..DEV_KEYS.len() {
            chain
                .mint(Self::address(i), U256::from(INITIAL_USDC))
                .await?;
        }
        Ok(chain)
    }

    /// The node's HTTP JSON-RPC endpoint on loopback.
    pub fn endpoint(&self) -> String {
        match &self.node {
            Node::Anvil(a) => a.endpoint(),
            Node::Devnet(d) => d.url(),
        }
    }

    /// The chain id (31337 unless started with another).
    pub fn chain_id(&self) -> u64 {
        match &self.node {
            Node::Anvil(a) => a.chain_id(),
            Node::Devnet(d) => d.chain_id(),
        }
    }

    /// Which node this chain runs on.
    pub fn backend(&self) -> Backend {
        match &self.node {
            Node::Anvil(_) => Backend::Anvil,
            Node::Devnet(_) => Backend::Devnet,
        }
    }

    /// The backend's name: `anvil` or `devnet`.
    pub fn backend_name(&self) -> &'static str {
        match self.backend() {
            Backend::Anvil => "anvil",
            Backend::Devnet => "devnet",
        }
    }

    /// The CAIP-2 id of this chain, e.g. `eip155:31337`.
    pub fn caip2(&self) -> String {
        format!("eip155:{}", self.chain_id())
    }

    /// A provider that signs with account 0.
    pub fn provider(&self) -> &DynProvider {
        &self.provider
    }

    /// The signer of dev account `index`.
    ///
    /// # Panics
    /// If `index` is 10 or more (a test bug, not input).
    pub fn signer(index: usize) -> PrivateKeySigner {
        DEV_KEYS[index].parse().expect("dev keys are valid")
    }

    /// The address of dev account `index`.
    pub fn address(index: usize) -> Address {
        Self::signer(index).address()
    }

    /// Mints test USDC (atomic units) to `to`, waiting for the receipt.
    pub async fn mint(&self, to: Address, amount: U256) -> Result<(), TestkitError> {
        let token = ITestUsdc::new(self.usdc, &self.provider);
        let receipt = token
            .mint(to, amount)
            .send()
            .await
            .map_err(|e| TestkitError::chain("mint", e))?
            .get_receipt()
            .await
            .map_err(|e| TestkitError::chain("mint receipt", e))?;
        if !receipt.status() {
            return Err(TestkitError::chain("mint", "reverted"));
        }
        Ok(())
    }

    /// The test-USDC balance of `who`, in atomic units.
    pub async fn usdc_balance(&self, who: Address) -> Result<U256, TestkitError> {
        ITestUsdc::new(self.usdc, &self.provider)
            .balanceOf(who)
            .call()
            .await
            .map_err(|e| TestkitError::chain("balanceOf", e))
    }

    /// Whether `authorizer` has used or cancelled EIP-3009 `nonce` on the test token.
    pub async fn authorization_used(
        &self,
        authorizer: Address,
        nonce: B256,
    ) -> Result<bool, TestkitError> {
        ITestUsdc::new(self.usdc, &self.provider)
            .authorizationState(authorizer, nonce)
            .call()
            .await
            .map_err(|e| TestkitError::chain("authorizationState", e))
    }

    /// Deploys an EIP-1271 wallet owned by `owner` directly (not via the factory).
    pub async fn deploy_wallet_1271(&self, owner: Address) -> Result<Address, TestkitError> {
        deploy(
            &self.provider,
            &WALLET_1271,
            alloy::sol_types::SolValue::abi_encode(&owner).into(),
        )
        .await
    }

    /// The address the factory would deploy a wallet for (`owner`, `salt`) at.
    pub async fn predict_wallet(
        &self,
        owner: Address,
        salt: B256,
    ) -> Result<Address, TestkitError> {
        IWalletFactory::new(self.wallet_factory, &self.provider)
            .predict(owner, salt)
            .call()
            .await
            .map_err(|e| TestkitError::chain("predict", e))
    }

    /// Calldata that makes the factory deploy the wallet for (`owner`, `salt`): the `factoryCalldata`
    /// of an EIP-6492 signature.
    pub fn wallet_factory_calldata(owner: Address, salt: B256) -> Bytes {
        use alloy::sol_types::SolCall;
        IWalletFactory::deployCall { owner, salt }
            .abi_encode()
            .into()
    }

    /// Whether `address` has contract code.
    pub async fn has_code(&self, address: Address) -> Result<bool, TestkitError> {
        let code = self
            .provider
            .get_code_at(address)
            .await
            .map_err(|e| TestkitError::chain("eth_getCode", e))?;
        Ok(!code.is_empty())
    }

    /// Sends a raw JSON-RPC request (for anvil's control methods such as `evm_setAutomine`).
    pub async fn rpc(
        &self,
        method: &'static str,
        params: serde_json::Value,
    ) -> Result<serde_json::Value, TestkitError> {
        self.provider
            .raw_request::<_, serde_json::Value>(method.into(), params)
            .await
            .map_err(|e| TestkitError::chain(method, e))
    }

    /// Turns automatic mining on or off; with it off, transactions wait in the mempool, which
    /// is how tests provoke receipt timeouts.
    pub async fn set_automine(&self, on: bool) -> Result<(), TestkitError> {
        self.rpc("evm_setAutomine", serde_json::json!([on])).await?;
        Ok(())
    }

    /// Copies our Multicall3 to its canonical address on every public chain,
    /// `0xcA11bde05977b3631167028862bE2a173976CA11` (`anvil_setCode`), for software that
    /// assumes it is there (the official x402 facilitator diagnoses failed simulations with it).
    pub async fn install_canonical_multicall3(&self) -> Result<Address, TestkitError> {
        let code = self
            .provider
            .get_code_at(self.multicall3)
            .await
            .map_err(|e| TestkitError::chain("eth_getCode", e))?;
        self.rpc(
            "anvil_setCode",
            serde_json::json!([CANONICAL_MULTICALL3.to_string(), code.to_string()]),
        )
        .await?;
        Ok(CANONICAL_MULTICALL3)
    }

    /// Mines one block now.
    pub async fn mine(&self) -> Result<(), TestkitError> {
        self.rpc("evm_mine", serde_json::json!([])).await?;
        Ok(())
    }
}

async fn deploy(
    provider: &DynProvider,
    artifact: &Artifact,
    constructor_args: Bytes,
) -> Result<Address, TestkitError> {
    let mut code = artifact.bytecode()?.to_vec();
    code.extend_from_slice(&constructor_args);
    let tx = TransactionRequest::default().with_deploy_code(code);
    let receipt = provider
        .send_transaction(tx)
        .await
        .map_err(|e| TestkitError::chain("deploy", e))?
        .get_receipt()
        .await
        .map_err(|e| TestkitError::chain("deploy receipt", e))?;
    if !receipt.status() {
        return Err(TestkitError::chain(
            "deploy",
            format!("{} reverted", artifact.name),
        ));
    }
    receipt
        .contract_address
        .ok_or_else(|| TestkitError::chain("deploy", "receipt has no contract address"))
}
