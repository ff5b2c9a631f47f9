//! Several wallets as one: an agent that pays EVM with one key and (later) Solana with another,
//! or one EVM key on Base and another everywhere else, through one middleware.

use std::sync::Arc;

use tollgate_core::{NetworkPattern, SessionPayer};
use tollgate_proto::{PaymentRequirements, ResourceInfo};

use crate::signer::{
    AuthorizationHandle, AuthorizationState, BoxFuture, PaymentSigner, SignedPayment, SignerError,
    StateError,
};

/// An ordered set of wallets that is itself a [`PaymentSigner`]: for each payment option the
/// **first** wallet that supports it (scheme, network, and the networks it was limited to)
/// signs. [`X402Middleware::new`](crate::X402Middleware::new) takes it like any single wallet.
///
/// The choice between a seller's options stays with the spending policy: the middleware offers
/// the policy every option that *some* wallet supports, and the wallet that supports the chosen
/// one signs it. Order therefore only matters when two wallets support the same option — put
/// the narrower one first.
///
/// ```
/// use tollgate_client::{paying_client, ExactEvmClient, PaymentSigner, PrivateKeySigner};
/// use tollgate_client::{SpendLedger, SpendingPolicy, Wallets};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let base_key = PrivateKeySigner::random();
/// let other_key = PrivateKeySigner::random();
/// let (base_payer, other_payer) = (base_key.address(), other_key.address());
/// // One key for Base, another for every other EVM network (a Solana wallet would be added
/// // the same way: `.with(solana_wallet)`).
/// let wallets = Wallets::new()
///     .with_on("eip155:8453".parse()?, ExactEvmClient::new(base_key))
///     .with(ExactEvmClient::new(other_key));
///
/// let option = |network: &str| -> tollgate_proto::PaymentRequirements {
///     serde_json::from_value(serde_json::json!({
///         "scheme": "exact", "network": network, "amount": "10000",
///         "asset": "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913",
///         "payTo": "0x209693Bc6afc0C5328bA36FaF03C514EF312287C", "maxTimeoutSeconds": 60,
///     }))
///     .unwrap()
/// };
/// assert_eq!(wallets.payer(&option("eip155:8453")), base_payer.to_string());
/// assert_eq!(wallets.payer(&option("eip155:137")), other_payer.to_string());
/// // Nothing here pays Solana yet:
/// assert!(!wallets.supports(&option("solana:5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp")));
///
/// // One middleware pays with whichever wallet fits the option the policy chose.
/// let agent = paying_client(wallets, SpendingPolicy::new(), SpendLedger::in_memory()?);
/// # let _ = agent;
/// # Ok(()) }
/// ```
#[derive(Clone, Default)]
pub struct Wallets {
    wallets: Vec<Slot>,
}

#[derive(Clone)]
struct Slot {
    /// The networks this wallet may pay on (`None`: whatever it supports).
    only: Option<NetworkPattern>,
    wallet: Arc<dyn PaymentSigner>,
}

impl Slot {
    fn supports(&self, requirements: &PaymentRequirements) -> bool {
        self.only
            .as_ref()
            .is_none_or(|p| p.matches(&requirements.network))
            && self.wallet.supports(requirements)
    }
}

// Keys never appear in Debug output: a wallet is shown by the networks it is limited to.
impl std::fmt::Debug for Wallets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.wallets.iter().map(|s| match &s.only {
                Some(p) => format!("wallet on {p}"),
                None => "wallet".to_owned(),
            }))
            .finish()
    }
}

impl Wallets {
    /// No wallet yet: supports nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `wallet`, asked after the wallets already added, for every option it supports.
    pub fn with(self, wallet: impl PaymentSigner) -> Self {
        self.with_shared(Arc::new(wallet))
    }

    /// Adds `wallet`, asked after the wallets already added, only for options on the networks
    /// of `only` (e.g. one key for `eip155:8453`, another for `eip155:*`).
    pub fn with_on(mut self, only: NetworkPattern, wallet: impl PaymentSigner) -> Self {
        self.wallets.push(Slot {
            only: Some(only),
            wallet: Arc::new(wallet),
        });
        self
    }

    /// Adds a wallet shared with other code (or already boxed), asked after the wallets
    /// already added.
    pub fn with_shared(mut self, wallet: Arc<dyn PaymentSigner>) -> Self {
        self.wallets.push(Slot { only: None, wallet });
        self
    }

    /// The wallet that pays `requirements`: the first that supports it.
    pub fn wallet_for(
        &self,
        requirements: &PaymentRequirements,
    ) -> Option<&Arc<dyn PaymentSigner>> {
        self.wallets
            .iter()
            .find(|s| s.supports(requirements))
            .map(|s| &s.wallet)
    }

    /// How many wallets there are.
    pub fn len(&self) -> usize {
        self.wallets.len()
    }

    /// Whether there is none (then nothing can be paid).
    pub fn is_empty(&self) -> bool {
        self.wallets.is_empty()
    }
}

impl PaymentSigner for Wallets {
    fn supports(&self, requirements: &PaymentRequirements) -> bool {
        self.wallet_for(requirements).is_some()
    }

    /// The payer of the wallet that would pay `requirements`; empty when none supports it
    /// (the client asks only for options it found supported).
    fn payer(&self, requirements: &PaymentRequirements) -> String {
        self.wallet_for(requirements)
            .map(|w| w.payer(requirements))
            .unwrap_or_default()
    }

    fn sign<'a>(
        &'a self,
        requirements: &'a PaymentRequirements,
        resource: Option<ResourceInfo>,
    ) -> BoxFuture<'a, Result<SignedPayment, SignerError>> {
        match self.wallet_for(requirements) {
            Some(wallet) => wallet.sign(requirements, resource),
            None => {
                let why = format!(
                    "no wallet pays {} on {}",
                    requirements.scheme, requirements.network
                );
                Box::pin(async move { Err(SignerError(why)) })
            }
        }
    }

    /// Asks each wallet whose limits admit the handle's network, in order, and returns the
    /// first answer from one that understood the handle (a chain's answer, or its failure to
    /// ask the chain). An authorization's state is public on its chain, so any wallet of its
    /// scheme can read it, whoever signed it; which one signed is not recorded.
    fn authorization_state<'a>(
        &'a self,
        handle: &'a AuthorizationHandle,
        rpc_url: &'a str,
    ) -> BoxFuture<'a, Result<AuthorizationState, StateError>> {
        Box::pin(async move {
            let mut last = StateError::Unsupported {
                scheme: handle.scheme.clone(),
            };
            for slot in &self.wallets {
                if !slot
                    .only
                    .as_ref()
                    .is_none_or(|p| p.matches(&handle.network))
                {
                    continue;
                }
                match slot.wallet.authorization_state(handle, rpc_url).await {
                    Err(e @ (StateError::Unsupported { .. } | StateError::BadHandle(_))) => {
                        last = e;
                    }
                    answer => return answer,
                }
            }
            Err(last)
        })
    }

    fn session(&self, requirements: &PaymentRequirements) -> Option<&dyn SessionPayer> {
        self.wallet_for(requirements)
            .and_then(|w| w.session(requirements))
    }

    /// The first wallet, among those whose limits admit `network`, that can sign in there.
    fn sign_in(&self, network: &tollgate_proto::Network) -> Option<&dyn tollgate_core::SiwxSigner> {
        self.wallets
            .iter()
            .filter(|s| s.only.as_ref().is_none_or(|p| p.matches(network)))
            .find_map(|s| s.wallet.sign_in(network))
    }
}
