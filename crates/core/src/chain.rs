//! What every chain reports, whatever its schemes.

use tollgate_proto::{Network, U256};

use crate::BoxFuture;

/// A settlement signer, as `/health` and `/metrics` report it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignerStatus {
    /// Its network.
    pub network: Network,
    /// Its address, in the chain's own notation.
    pub address: String,
    /// Native balance in the chain's smallest unit (wei, lamports), if the node answered.
    pub balance: Option<U256>,
    /// Balance below the chain's threshold: settlements will soon fail for want of gas.
    pub low_on_gas: bool,
    /// Transactions sent and not yet seen final.
    pub in_flight: usize,
}

/// One network's settlement plumbing (node connection, signer pool), as the facilitator's
/// `/health` and metrics see it. Each chain crate implements it once per network; every
/// scheme registered on that network shares it.
pub trait ChainOps: Send + Sync + 'static {
    /// The network.
    fn network(&self) -> &Network;

    /// The chain's head (latest block or slot) as its node reports it now; `None` when no
    /// node answered. `/health` is degraded while any network's head is unknown.
    fn head(&self) -> BoxFuture<'_, Option<u64>>;

    /// Every settlement signer, its balance read now.
    fn signer_status(&self) -> BoxFuture<'_, Vec<SignerStatus>>;
}
