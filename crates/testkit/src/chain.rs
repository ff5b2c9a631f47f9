//! A funded chain with Tollgate's contracts deployed.

use alloy::network::{EthereumWallet, TransactionBuilder};
use alloy::primitives::{Address, Bytes, B256, U256};
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use alloy::rpc::types::TransactionRequest;
use alloy::signers::local::PrivateKeySigner;
use alloy::sol;

use crate::artifacts::{
    Artifact, MULTICALL3, TEST_PERMIT_TOKEN, TEST_USDC, TEST_USDT, WALLET_1271, WALLET_FACTORY,
};
use crate::permit2::{IPermit2, ITestToken};
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

/// USDT-like tokens (atomic units, 6 decimals) minted to accounts 1..=9 at set-up.
pub use tollgate_devnet::INITIAL_USDT;

/// EIP-2612 test tokens (atomic units, 6 decimals) minted to accounts 1..=9 at set-up.
pub use tollgate_devnet::INITIAL_PERMIT_TOKEN;

/// The canonical addresses of Permit2 and the x402 Permit2 proxies; both backends have the
/// contracts there.
pub use crate::permit2::{EXACT_PERMIT2_PROXY, PERMIT2, UPTO_PERMIT2_PROXY};

/// The EIP-712 domain (name, version) of [`TestChain::permit_token`].
pub const PERMIT_TOKEN_EIP712: (&str, &str) = ("Permit USD", "1");

/// The canonical addresses of the `batch-settlement` channel contract and its two deposit
/// collectors; both backends have the contracts there.
pub use tollgate_devnet::{BATCH_SETTLEMENT, ERC3009_DEPOSIT_COLLECTOR, PERMIT2_DEPOSIT_COLLECTOR};

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
    /// The USDT-like token ("Tether USD", `USDT`, 6 decimals): no EIP-3009, no EIP-2612, so
    /// x402 pays in it only through Permit2. Accounts 1..=9 hold [`INITIAL_USDT`]; nobody has
    /// approved Permit2 yet.
    pub usdt: Address,
    /// The EIP-2612 token ("Permit USD", `PUSD`, version "1", 6 decimals; no EIP-3009), for
    /// `eip2612GasSponsoring`. Accounts 1..=9 hold [`INITIAL_PERMIT_TOKEN`].
    pub permit_token: Address,
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
    /// id is 31337, account 0 has deployed the contracts (nonces 0–2), minted [`INITIAL_USDC`]
    /// to accounts 1..=9 (nonces 3–11), deployed the USDT-like and EIP-2612 tokens (12–13) and
    /// minted [`INITIAL_USDT`] and [`INITIAL_PERMIT_TOKEN`] to accounts 1..=9 (14–15); Permit2
    /// and the two x402 proxies are at [`PERMIT2`], [`EXACT_PERMIT2_PROXY`] and
    /// [`UPTO_PERMIT2_PROXY`].
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
        let contracts = devnet.contracts();
        Ok(Self {
            usdc: contracts.token,
            multicall3: contracts.multicall3,
            wallet_factory: contracts.wallet_factory,
            usdt: contracts.usdt,
            permit_token: contracts.permit_token,
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
        let mut chain = Self {
            node: Node::Anvil(anvil),
            provider,
            usdc,
            multicall3,
            wallet_factory,
            usdt: Address::ZERO,
            permit_token: Address::ZERO,
        };
        for i in 1..DEV_KEYS.len() {
            chain
                .mint(Self::address(i), U256::from(INITIAL_USDC))
                .await?;
        }
        // After the original set-up, in the devnet genesis's order, so every address matches.
        chain.usdt = deploy(&chain.provider, &TEST_USDT, Bytes::new()).await?;
        chain.permit_token = deploy(&chain.provider, &TEST_PERMIT_TOKEN, Bytes::new()).await?;
        let payers: Vec<Address> = (1..DEV_KEYS.len()).map(Self::address).collect();
        for (token, amount) in [
            (chain.usdt, INITIAL_USDT),
            (chain.permit_token, INITIAL_PERMIT_TOKEN),
        ] {
            let call = ITestToken::new(token, &chain.provider);
            let mint = call.mintBatch(payers.clone(), U256::from(amount));
            confirm("mintBatch", mint.send().await).await?;
        }
        // The devnet's genesis list, so both backends hold the same code at the same places.
        for (address, artifact) in tollgate_devnet::genesis::CANONICAL {
            let code = artifact
                .deployed_bytecode()
                .map_err(|e| TestkitError::chain("read artifact", e))?;
            chain
                .rpc(
                    "anvil_setCode",
                    serde_json::json!([address.to_string(), code.to_string()]),
                )
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

    /// A provider that signs with dev account `index` (e.g. a payer approving Permit2, or a
    /// facilitator other than account 0).
    ///
    /// # Panics
    /// If `index` is 10 or more (a test bug, not input).
    pub fn provider_for(&self, index: usize) -> Result<DynProvider, TestkitError> {
        Ok(ProviderBuilder::new()
            .wallet(EthereumWallet::from(Self::signer(index)))
            .connect_http(
                self.endpoint()
                    .parse()
                    .map_err(|e| TestkitError::chain("parse url", e))?,
            )
            .erased())
    }

    /// The balance of `who` in any ERC-20 `token` (atomic units).
    pub async fn token_balance(&self, token: Address, who: Address) -> Result<U256, TestkitError> {
        ITestToken::new(token, &self.provider)
            .balanceOf(who)
            .call()
            .await
            .map_err(|e| TestkitError::chain("balanceOf", e))
    }

    /// The USDT-like token's balance of `who`.
    pub async fn usdt_balance(&self, who: Address) -> Result<U256, TestkitError> {
        self.token_balance(self.usdt, who).await
    }

    /// Mints `amount` of one of the rig's test tokens (`usdc`, `usdt`, `permit_token`; account
    /// 0 owns them all) to `to`, waiting for the receipt.
    pub async fn mint_token(
        &self,
        token: Address,
        to: Address,
        amount: U256,
    ) -> Result<(), TestkitError> {
        let call = ITestToken::new(token, &self.provider);
        confirm("mint", call.mint(to, amount).send().await).await
    }

    /// Dev account `owner`'s one-time approval of Permit2 on `token` (`approve(PERMIT2,
    /// amount)`, usually `U256::MAX`), sent and paid by that account, waiting for the receipt.
    ///
    /// # Panics
    /// If `owner` is 10 or more (a test bug, not input).
    pub async fn approve_permit2(
        &self,
        owner: usize,
        token: Address,
        amount: U256,
    ) -> Result<(), TestkitError> {
        let provider = self.provider_for(owner)?;
        let call = ITestToken::new(token, &provider);
        confirm("approve", call.approve(PERMIT2, amount).send().await).await
    }

    /// `token.allowance(owner, PERMIT2)`: what Permit2 may move for `owner`.
    pub async fn permit2_allowance(
        &self,
        token: Address,
        owner: Address,
    ) -> Result<U256, TestkitError> {
        ITestToken::new(token, &self.provider)
            .allowance(owner, PERMIT2)
            .call()
            .await
            .map_err(|e| TestkitError::chain("allowance", e))
    }

    /// Whether `owner` has used (or invalidated) Permit2 `nonce`: bit `nonce & 0xff` of
    /// `nonceBitmap(owner, nonce >> 8)`.
    pub async fn permit2_nonce_used(
        &self,
        owner: Address,
        nonce: U256,
    ) -> Result<bool, TestkitError> {
        let word = IPermit2::new(PERMIT2, &self.provider)
            .nonceBitmap(owner, nonce >> 8)
            .call()
            .await
            .map_err(|e| TestkitError::chain("nonceBitmap", e))?;
        let bit = U256::from(1u8) << (nonce & U256::from(0xffu8)).to::<usize>();
        Ok(word & bit != U256::ZERO)
    }

    /// Mines one block now.
    pub async fn mine(&self) -> Result<(), TestkitError> {
        self.rpc("evm_mine", serde_json::json!([])).await?;
        Ok(())
    }
}

/// Waits for a sent transaction's receipt and requires success.
async fn confirm<E: std::fmt::Display>(
    context: &'static str,
    sent: Result<alloy::providers::PendingTransactionBuilder<alloy::network::Ethereum>, E>,
) -> Result<(), TestkitError> {
    let receipt = sent
        .map_err(|e| TestkitError::chain(context, e))?
        .get_receipt()
        .await
        .map_err(|e| TestkitError::chain(context, e))?;
    if !receipt.status() {
        return Err(TestkitError::chain(context, "reverted"));
    }
    Ok(())
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
