//! The paying side: [`ExactSvmClient`] turns `exact` requirements on Solana into a partially
//! signed transaction, as the official client builds it — `SetComputeUnitLimit`,
//! `SetComputeUnitPrice`, one `TransferChecked` from the payer's associated token account to
//! `payTo`'s, and a `Memo` (the seller's `extra.memo`, else 16 random bytes in hex, so two
//! equal payments are two different transactions). The fee payer's signature slot is left
//! empty for the facilitator.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use base64::Engine as _;
use solana_address::Address;
use solana_hash::Hash;
use solana_keypair::Keypair;
use solana_message::{v0, VersionedMessage};
use solana_signature::Signature;
use solana_signer::Signer;
use solana_transaction::versioned::VersionedTransaction;
use tollgate_core::{AuthorizationHandle, BoxFuture, PaymentSigner, SignedPayment, SignerError};
use tollgate_proto::{PaymentPayload, PaymentRequirements, ResourceInfo, Scheme, V2};

use crate::payload::{ExactSvmPayload, PaymentTransaction};
use crate::programs::{self, TransferChecked};
use crate::rpc::SolanaRpc;

/// The compute unit limit the client asks for: a `TransferChecked` and a `Memo` use well under
/// it (the official client's value).
pub const DEFAULT_COMPUTE_UNIT_LIMIT: u32 = 20_000;
/// The priority fee, in micro-lamports per compute unit (the official client's value).
pub const DEFAULT_COMPUTE_UNIT_PRICE: u64 = 1;
/// The longest seller memo the scheme allows, in bytes.
pub const MAX_MEMO_BYTES: usize = 256;

/// Why a payment could not be built.
#[derive(Debug, thiserror::Error)]
pub enum SvmSignError {
    /// Not `exact` on a `solana:` network.
    #[error("requirements are {scheme} on {network}, not exact on Solana")]
    Unsupported {
        /// The scheme.
        scheme: String,
        /// The network.
        network: String,
    },
    /// A field that must be an address is not.
    #[error("{field} {value:?} is not a Solana address")]
    BadAddress {
        /// Which field.
        field: &'static str,
        /// Its text.
        value: String,
    },
    /// The requirements cannot be paid as given.
    #[error("cannot pay these requirements: {0}")]
    Requirements(String),
    /// The mint could not be read.
    #[error("mint {mint}: {reason}")]
    Mint {
        /// The mint.
        mint: Address,
        /// Why.
        reason: String,
    },
    /// The node failed.
    #[error(transparent)]
    Rpc(#[from] crate::rpc::RpcError),
    /// The transaction could not be assembled.
    #[error("building the transaction failed: {0}")]
    Build(String),
}

/// A Solana wallet paying `exact` requirements through a node at an RPC URL.
pub struct ExactSvmClient {
    keypair: Keypair,
    rpc: SolanaRpc,
    compute_unit_limit: u32,
    compute_unit_price: u64,
    mints: Mutex<HashMap<Address, (Address, u8)>>,
}

impl std::fmt::Debug for ExactSvmClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExactSvmClient")
            .field("address", &self.keypair.pubkey())
            .field("rpc", &self.rpc.url())
            .finish_non_exhaustive()
    }
}

fn address(field: &'static str, value: &str) -> Result<Address, SvmSignError> {
    value.parse().map_err(|_| SvmSignError::BadAddress {
        field,
        value: value.to_owned(),
    })
}

impl ExactSvmClient {
    /// A wallet with `keypair`, reading mints and blockhashes from the node at `rpc_url`.
    pub fn new(keypair: Keypair, rpc_url: impl Into<String>) -> Self {
        Self {
            keypair,
            rpc: SolanaRpc::new(rpc_url, Duration::from_secs(10)),
            compute_unit_limit: DEFAULT_COMPUTE_UNIT_LIMIT,
            compute_unit_price: DEFAULT_COMPUTE_UNIT_PRICE,
            mints: Mutex::new(HashMap::new()),
        }
    }

    /// The wallet's keypair (for signing other messages, such as a sign-in).
    pub(crate) fn keypair(&self) -> &Keypair {
        &self.keypair
    }

    /// Sets the compute unit limit and price the client asks for.
    pub fn with_compute_budget(mut self, limit: u32, micro_lamports_per_unit: u64) -> Self {
        self.compute_unit_limit = limit;
        self.compute_unit_price = micro_lamports_per_unit;
        self
    }

    /// The wallet's address.
    pub fn address(&self) -> Address {
        self.keypair.pubkey()
    }

    /// Whether these requirements are `exact` on a Solana network with a fee payer.
    pub fn can_pay(requirements: &PaymentRequirements) -> bool {
        requirements.scheme == Scheme::Exact
            && requirements.network.namespace() == "solana"
            && requirements
                .extra_str("feePayer")
                .is_some_and(|f| f.parse::<Address>().is_ok())
    }

    /// The mint's token program and decimals (cached: a mint's program and decimals never
    /// change).
    async fn mint(&self, mint: Address) -> Result<(Address, u8), SvmSignError> {
        if let Some(found) = self.mints.lock().ok().and_then(|m| m.get(&mint).copied()) {
            return Ok(found);
        }
        let account = self
            .rpc
            .account(&mint)
            .await?
            .ok_or_else(|| SvmSignError::Mint {
                mint,
                reason: "no such account".to_owned(),
            })?;
        if !programs::is_token_program(&account.owner) {
            return Err(SvmSignError::Mint {
                mint,
                reason: format!("owned by {}, not a token program", account.owner),
            });
        }
        // The Mint layout: authority (36), supply (8), decimals (1), is_initialized (1), ….
        if account.data.len() < 82 || account.data[45] != 1 {
            return Err(SvmSignError::Mint {
                mint,
                reason: "not an initialized mint".to_owned(),
            });
        }
        let found = (account.owner, account.data[44]);
        if let Ok(mut m) = self.mints.lock() {
            m.insert(mint, found);
        }
        Ok(found)
    }

    /// Builds and signs the payment for `requirements`.
    pub async fn sign_payment(
        &self,
        requirements: &PaymentRequirements,
        resource: Option<ResourceInfo>,
    ) -> Result<(PaymentPayload, PaymentTransaction), SvmSignError> {
        if !(requirements.scheme == Scheme::Exact && requirements.network.namespace() == "solana") {
            return Err(SvmSignError::Unsupported {
                scheme: requirements.scheme.to_string(),
                network: requirements.network.to_string(),
            });
        }
        let fee_payer = address(
            "extra.feePayer",
            requirements.extra_str("feePayer").ok_or_else(|| {
                SvmSignError::Requirements("extra.feePayer is required on Solana".to_owned())
            })?,
        )?;
        let mint = address("asset", &requirements.asset)?;
        let pay_to = address("payTo", &requirements.pay_to)?;
        let amount = u64::try_from(requirements.amount.get()).map_err(|_| {
            SvmSignError::Requirements(format!(
                "amount {} does not fit a token amount",
                requirements.amount.get()
            ))
        })?;
        let memo = match requirements.extra_str("memo") {
            Some(memo) if memo.len() > MAX_MEMO_BYTES => {
                return Err(SvmSignError::Requirements(format!(
                    "extra.memo is {} bytes, more than {MAX_MEMO_BYTES}",
                    memo.len()
                )))
            }
            Some(memo) => memo.as_bytes().to_vec(),
            None => rand::random::<[u8; 16]>()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
                .into_bytes(),
        };
        let (token_program, decimals) = self.mint(mint).await?;
        let owner = self.keypair.pubkey();
        let ata = |who: &Address| {
            programs::associated_token_address(who, &mint, &token_program).ok_or_else(|| {
                SvmSignError::Build(format!("no associated token account for {who}"))
            })
        };
        let transfer = TransferChecked {
            program: token_program,
            source: ata(&owner)?,
            mint,
            destination: ata(&pay_to)?,
            authority: owner,
            amount,
            decimals,
        };
        let blockhash = match requirements
            .extra_str("recentBlockhash")
            .and_then(|h| h.parse::<Hash>().ok())
        {
            Some(hash) => hash,
            None => self.rpc.latest_blockhash().await?.0,
        };
        let instructions = [
            programs::set_compute_unit_limit(self.compute_unit_limit),
            programs::set_compute_unit_price(self.compute_unit_price),
            transfer.instruction(),
            programs::memo(&memo),
        ];
        let message = v0::Message::try_compile(&fee_payer, &instructions, &[], blockhash)
            .map_err(|e| SvmSignError::Build(e.to_string()))?;
        let message = VersionedMessage::V0(message);
        let bytes = message.serialize();
        let required = usize::from(message.header().num_required_signatures);
        let mut signatures = vec![Signature::default(); required];
        let index = message
            .static_account_keys()
            .iter()
            .position(|k| *k == owner)
            .filter(|&i| i < required)
            .ok_or_else(|| SvmSignError::Build("the payer is not a signer".to_owned()))?;
        signatures[index] = self.keypair.sign_message(&bytes);
        let transaction = VersionedTransaction {
            signatures,
            message,
        };
        let encoded =
            wincode::serialize(&transaction).map_err(|e| SvmSignError::Build(e.to_string()))?;
        let text = base64::engine::general_purpose::STANDARD.encode(&encoded);
        let decoded = PaymentTransaction::from_bytes(&encoded)
            .map_err(|e| SvmSignError::Build(e.to_string()))?;
        let payload = serde_json::to_value(ExactSvmPayload { transaction: text })
            .ok()
            .and_then(|v| v.as_object().cloned())
            .unwrap_or_default();
        Ok((
            PaymentPayload {
                x402_version: V2,
                resource,
                accepted: requirements.clone(),
                payload,
                extensions: None,
            },
            decoded,
        ))
    }
}

impl PaymentSigner for ExactSvmClient {
    fn supports(&self, requirements: &PaymentRequirements) -> bool {
        Self::can_pay(requirements)
    }

    fn payer(&self, _requirements: &PaymentRequirements) -> String {
        self.keypair.pubkey().to_string()
    }

    /// Signs in with Ed25519 on every Solana network (`crate::siwx`).
    fn sign_in(&self, network: &tollgate_proto::Network) -> Option<&dyn tollgate_core::SiwxSigner> {
        (network.namespace() == "solana").then_some(self as &dyn tollgate_core::SiwxSigner)
    }

    fn sign<'a>(
        &'a self,
        requirements: &'a PaymentRequirements,
        resource: Option<ResourceInfo>,
    ) -> BoxFuture<'a, Result<SignedPayment, SignerError>> {
        Box::pin(async move {
            let (payload, tx) = self
                .sign_payment(requirements, resource)
                .await
                .map_err(|e| SignerError(e.to_string()))?;
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            Ok(SignedPayment {
                authorization: AuthorizationHandle {
                    scheme: "exact".to_owned(),
                    network: requirements.network.clone(),
                    asset: requirements.asset.clone(),
                    payer: self.keypair.pubkey().to_string(),
                    id: tx.message_id(),
                    // The blockhash's lifetime (150 blocks) bounds when it can land.
                    valid_before: now + 120,
                },
                payload,
            })
        })
    }
}
