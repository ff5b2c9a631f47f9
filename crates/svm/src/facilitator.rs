//! `exact` on Solana as a facilitator (the *sponsor*) runs it: [`ExactSvmFacilitator`].
//!
//! Verification is [`verify::check`](crate::verify::check) then a simulation of the
//! transaction as it would be sent — signed by the fee payer, against its own blockhash — so a
//! payment that would fail on chain (insufficient balance, an expired blockhash, a mint's
//! frozen account) is refused before anything is sent. Settlement sends that transaction and
//! waits for the cluster to confirm it.
//!
//! A Solana transaction's id is its first signature, the fee payer's; Ed25519 signatures are
//! deterministic, so the id is fixed the moment the client's message is known. The ledger
//! records a payment under the hash of that message, and after a crash
//! [`find_settlement`](SchemeFacilitator::find_settlement) recomputes the signature and asks
//! the cluster for it: nothing about a settlement lives only in memory.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use solana_address::Address;
use solana_keypair::Keypair;
use solana_signature::Signature;
use solana_signer::Signer;
use tollgate_core::{
    BoxFuture, ChainOps, PaymentIdentity, SchemeError, SchemeFacilitator, Settled, SignerStatus,
    Verified,
};
use tollgate_proto::{
    ErrorReason, Network, PaymentPayload, PaymentRequirements, Scheme, SupportedKind, X402Version,
    U256,
};

use crate::payload::PaymentTransaction;
use crate::programs::TransferChecked;
use crate::reason::SvmReason;
use crate::rpc::{RpcError, SolanaRpc};
use crate::verify::{self, Expected, Limits};

/// How the facilitator settles on one Solana cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SvmFacilitatorConfig {
    /// The sponsor's caps on compute units, their price and the signer count.
    pub limits: Limits,
    /// How long to wait for a sent transaction to be confirmed before answering
    /// `settlement_pending`. A blockhash lives ~60–90 s, after which the transaction can no
    /// longer land.
    pub receipt_timeout: Duration,
    /// How often to ask for the signature's status while waiting.
    pub poll_interval: Duration,
    /// Each RPC call's bound.
    pub rpc_timeout: Duration,
    /// A fee payer holding fewer lamports is reported low on funds in `/health`.
    pub min_fee_payer_lamports: u64,
}

impl Default for SvmFacilitatorConfig {
    fn default() -> Self {
        Self {
            limits: Limits::default(),
            receipt_timeout: Duration::from_secs(60),
            poll_interval: Duration::from_millis(200),
            rpc_timeout: Duration::from_secs(10),
            min_fee_payer_lamports: 10_000_000,
        }
    }
}

/// Why [`ExactSvmFacilitator::connect`] failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// No fee payer key was given.
    #[error("no fee payer: a Solana facilitator signs every transaction as fee payer")]
    NoFeePayer,
    /// The node did not answer `getGenesisHash`.
    #[error("Solana RPC at {url}: {source}")]
    Rpc {
        /// The endpoint.
        url: String,
        /// Why.
        #[source]
        source: RpcError,
    },
    /// The genesis hash does not name a CAIP-2 network.
    #[error("Solana RPC at {url} reports genesis hash {hash:?}, which names no network")]
    BadGenesis {
        /// The endpoint.
        url: String,
        /// What it said.
        hash: String,
    },
}

/// The `exact` scheme on one Solana cluster, with its fee payer keys.
pub struct ExactSvmFacilitator {
    network: Network,
    rpc: SolanaRpc,
    fee_payers: Vec<Arc<Keypair>>,
    addresses: Vec<Address>,
    config: SvmFacilitatorConfig,
}

impl std::fmt::Debug for ExactSvmFacilitator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExactSvmFacilitator")
            .field("network", &self.network)
            .field("rpc", &self.rpc.url())
            .field("fee_payers", &self.addresses)
            .finish_non_exhaustive()
    }
}

/// The CAIP-2 id of the cluster whose genesis hash is `hash`.
pub fn network_of_genesis(hash: &str) -> Option<Network> {
    let reference: String = hash.chars().take(32).collect();
    if reference.len() < 32 {
        return None;
    }
    format!("solana:{reference}").parse().ok()
}

impl ExactSvmFacilitator {
    /// Asks the node at `rpc_url` which cluster it serves and sponsors payments there with
    /// `fee_payers`.
    pub async fn connect(
        rpc_url: &str,
        fee_payers: Vec<Keypair>,
        config: SvmFacilitatorConfig,
    ) -> Result<Self, ConnectError> {
        if fee_payers.is_empty() {
            return Err(ConnectError::NoFeePayer);
        }
        let rpc = SolanaRpc::new(rpc_url, config.rpc_timeout);
        let hash = rpc
            .genesis_hash()
            .await
            .map_err(|source| ConnectError::Rpc {
                url: rpc_url.to_owned(),
                source,
            })?;
        let network = network_of_genesis(&hash).ok_or_else(|| ConnectError::BadGenesis {
            url: rpc_url.to_owned(),
            hash: hash.clone(),
        })?;
        Ok(Self::new(network, rpc, fee_payers, config))
    }

    /// A facilitator for `network` through `rpc`, trusting that the node serves it.
    pub fn new(
        network: Network,
        rpc: SolanaRpc,
        fee_payers: Vec<Keypair>,
        config: SvmFacilitatorConfig,
    ) -> Self {
        let addresses = fee_payers.iter().map(Signer::pubkey).collect();
        Self {
            network,
            rpc,
            fee_payers: fee_payers.into_iter().map(Arc::new).collect(),
            addresses,
            config,
        }
    }

    /// The cluster.
    pub fn network(&self) -> &Network {
        &self.network
    }

    /// The fee payers' addresses; the first is the one `/supported` advertises.
    pub fn fee_payers(&self) -> &[Address] {
        &self.addresses
    }

    /// The RPC client.
    pub fn rpc(&self) -> &SolanaRpc {
        &self.rpc
    }

    fn fee_payer_key(&self, address: &Address) -> Option<&Keypair> {
        self.addresses
            .iter()
            .position(|a| a == address)
            .map(|i| &*self.fee_payers[i])
    }

    /// Parses the requirements into what the transaction must do.
    fn expected(
        &self,
        payment: &PaymentPayload,
        requirements: &PaymentRequirements,
    ) -> Result<Expected, SchemeError> {
        let fault =
            |reason: SvmReason, message: String| SchemeError::payment(reason.into(), message);
        if payment.accepted.scheme != Scheme::Exact || requirements.scheme != Scheme::Exact {
            return Err(fault(
                SvmReason::UnsupportedScheme,
                format!(
                    "payload scheme {}, requirements scheme {}",
                    payment.accepted.scheme, requirements.scheme
                ),
            ));
        }
        if payment.accepted.network != requirements.network || requirements.network != self.network
        {
            return Err(fault(
                SvmReason::NetworkMismatch,
                format!(
                    "payload for {}, requirements for {}, this facilitator settles on {}",
                    payment.accepted.network, requirements.network, self.network
                ),
            ));
        }
        let fee_payer = match requirements.extra_str("feePayer") {
            None => {
                return Err(fault(
                    SvmReason::MissingFeePayer,
                    "the requirements' extra has no feePayer".to_owned(),
                ))
            }
            Some(text) => text.parse::<Address>().map_err(|_| {
                fault(
                    SvmReason::FeePayerNotManaged,
                    format!("extra.feePayer {text:?} is not a Solana address"),
                )
            })?,
        };
        if !self.addresses.contains(&fee_payer) {
            return Err(fault(
                SvmReason::FeePayerNotManaged,
                format!("{fee_payer} is not one of this facilitator's fee payers"),
            ));
        }
        let invalid = |message: String| {
            SchemeError::payment(ErrorReason::InvalidPaymentRequirements, message)
        };
        let mint =
            parse_address(&requirements.asset).map_err(|e| invalid(format!("asset: {e}")))?;
        let pay_to =
            parse_address(&requirements.pay_to).map_err(|e| invalid(format!("payTo: {e}")))?;
        let amount = u64::try_from(requirements.amount.get()).map_err(|_| {
            invalid(format!(
                "amount {} does not fit a token amount (u64)",
                requirements.amount.get()
            ))
        })?;
        let memo = requirements.extra_str("memo").map(str::to_owned);
        if memo.as_ref().is_some_and(|m| m.len() > 256) {
            return Err(invalid("extra.memo is longer than 256 bytes".to_owned()));
        }
        Ok(Expected {
            fee_payer,
            mint,
            pay_to,
            amount,
            memo,
        })
    }

    /// The transaction signed by the fee payer it names, as it will be sent.
    fn cosign(
        &self,
        tx: &PaymentTransaction,
        fee_payer: &Address,
    ) -> Result<(PaymentTransaction, Signature), SchemeError> {
        let key = self.fee_payer_key(fee_payer).ok_or_else(|| {
            SchemeError::payment(
                SvmReason::FeePayerNotManaged.into(),
                format!("{fee_payer} is not one of this facilitator's fee payers"),
            )
        })?;
        let signature = key.sign_message(&tx.message);
        let mut signed = tx.clone();
        signed.transaction.signatures[0] = signature;
        Ok((signed, signature))
    }

    async fn verify_inner(
        &self,
        payment: &PaymentPayload,
        requirements: &PaymentRequirements,
    ) -> Result<VerifiedSvm, SchemeError> {
        let expected = self.expected(payment, requirements)?;
        let tx = decode(payment)?;
        let transfer = verify::check(&tx, &expected, &self.addresses, &self.config.limits)
            .map_err(|r| SchemeError::payment(r.reason.into(), r.message))?;
        let (signed, signature) = self.cosign(&tx, &expected.fee_payer)?;
        let encoded = signed.to_base64();
        let simulation = self
            .rpc
            .simulate(&encoded)
            .await
            .map_err(|e| rpc_failure(&e, "simulating"))?;
        if let Some(err) = simulation.err {
            return Err(simulation_refusal(&err, &simulation.logs));
        }
        Ok(VerifiedSvm {
            transfer,
            message_id: tx.message_id(),
            signed: encoded,
            signature,
        })
    }
}

/// What verification proved, carried to settlement.
#[derive(Debug, Clone)]
pub struct VerifiedSvm {
    /// The one transfer.
    pub transfer: TransferChecked,
    /// SHA-256 of the message, hex: the payment's identity.
    pub message_id: String,
    /// Base64 of the fee-payer-signed transaction.
    pub signed: String,
    /// Its signature: the transaction id it will have on chain.
    pub signature: Signature,
}

fn parse_address(text: &str) -> Result<Address, String> {
    let address: Address = text
        .parse()
        .map_err(|_| format!("{text:?} is not a base58 Solana address"))?;
    // One spelling per address: base58 has no case or padding variants, but leading-zero
    // bytes make "1…" prefixes significant, so compare the canonical form.
    if address.to_string() != text {
        return Err(format!(
            "{text:?} is not the canonical spelling of {address}"
        ));
    }
    Ok(address)
}

fn decode(payment: &PaymentPayload) -> Result<PaymentTransaction, SchemeError> {
    PaymentTransaction::from_payload(&Value::Object(payment.payload.clone()))
        .map_err(|e| SchemeError::payment(e.reason().into(), e.to_string()))
}

fn rpc_failure(e: &RpcError, doing: &str) -> SchemeError {
    SchemeError::unavailable(
        ErrorReason::UnexpectedSettleError,
        format!("{doing} on the Solana node failed: {e}"),
    )
}

/// The reason for a transaction error in Solana's JSON form.
fn simulation_refusal(err: &Value, logs: &[String]) -> SchemeError {
    // `{"InstructionError": [2, {"Custom": 1}]}`: the token program's InsufficientFunds at
    // the transfer (both token programs number it 1).
    let insufficient = err
        .get("InstructionError")
        .and_then(Value::as_array)
        .is_some_and(|a| a.first() == Some(&json!(2)) && a.get(1) == Some(&json!({"Custom": 1})));
    let last_log = logs.last().map(String::as_str).unwrap_or("");
    if insufficient {
        return SchemeError::payment(
            ErrorReason::InsufficientFunds,
            format!("the payer's token balance is below the amount ({last_log})"),
        );
    }
    if err == &json!("AlreadyProcessed") {
        return SchemeError::payment(
            SvmReason::DuplicateSettlement.into(),
            "this transaction was already processed on chain".to_owned(),
        );
    }
    let why = if err == &json!("BlockhashNotFound") {
        "its blockhash is expired or unknown to the cluster".to_owned()
    } else {
        format!("{err} ({last_log})")
    };
    SchemeError::payment(
        SvmReason::SimulationFailed.into(),
        format!("the transaction would fail: {why}"),
    )
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The payer a transaction names: its transfer's authority, else its first non-fee-payer
/// signer.
fn payer_of(tx: &PaymentTransaction) -> String {
    let message = &tx.transaction.message;
    let keys = message.static_account_keys();
    if let Some(ix) = message.instructions().get(2) {
        let program = keys[usize::from(ix.program_id_index)];
        let accounts: Vec<Address> = ix.accounts.iter().map(|&i| keys[usize::from(i)]).collect();
        if let Some(t) = TransferChecked::decode(&program, &accounts, &ix.data) {
            return t.authority.to_string();
        }
    }
    keys.get(1).map(ToString::to_string).unwrap_or_default()
}

impl SchemeFacilitator for ExactSvmFacilitator {
    fn scheme(&self) -> Scheme {
        Scheme::Exact
    }

    fn supported(&self) -> Vec<SupportedKind> {
        let extra = self
            .addresses
            .first()
            .map(|a| serde_json::Map::from_iter([("feePayer".to_owned(), json!(a.to_string()))]));
        let mut kinds = Vec::with_capacity(2);
        if self.network.v1_name().is_some() {
            kinds.push(SupportedKind {
                x402_version: X402Version::V1,
                scheme: Scheme::Exact,
                network: self.network.clone(),
                extra: extra.clone(),
            });
        }
        kinds.push(SupportedKind {
            x402_version: X402Version::V2,
            scheme: Scheme::Exact,
            network: self.network.clone(),
            extra,
        });
        kinds
    }

    fn signers(&self) -> Vec<(String, Vec<String>)> {
        vec![(
            "solana:*".to_owned(),
            self.addresses.iter().map(ToString::to_string).collect(),
        )]
    }

    fn receipt_timeout(&self) -> Duration {
        self.config.receipt_timeout
    }

    fn already_used_reason(&self) -> ErrorReason {
        SvmReason::DuplicateSettlement.into()
    }

    fn identify(
        &self,
        payment: &PaymentPayload,
        requirements: &PaymentRequirements,
    ) -> Result<PaymentIdentity, SchemeError> {
        let tx = decode(payment)?;
        let asset = parse_address(&requirements.asset).map_err(|e| {
            SchemeError::payment(
                ErrorReason::InvalidPaymentRequirements,
                format!("asset: {e}"),
            )
        })?;
        Ok(PaymentIdentity {
            asset: asset.to_string(),
            payer: payer_of(&tx),
            id: tx.message_id(),
            valid_before: None,
        })
    }

    fn verify<'a>(
        &'a self,
        payment: &'a PaymentPayload,
        requirements: &'a PaymentRequirements,
    ) -> BoxFuture<'a, Result<Verified, SchemeError>> {
        Box::pin(async move {
            let verified = self.verify_inner(payment, requirements).await?;
            let identity = PaymentIdentity {
                asset: verified.transfer.mint.to_string(),
                payer: verified.transfer.authority.to_string(),
                id: verified.message_id.clone(),
                // A blockhash is valid for 150 blocks (~60–90 s): past this the transaction
                // can never land, and the ledger may forget an unsettled verification.
                valid_before: Some(unix_now() + 180),
            };
            Ok(Verified {
                identity,
                proof: Box::new(verified),
            })
        })
    }

    fn same_payment<'a>(
        &'a self,
        stored: &'a PaymentPayload,
        stored_pay_to: &'a str,
        presented: &'a PaymentPayload,
        requirements: &'a PaymentRequirements,
    ) -> BoxFuture<'a, Result<bool, SchemeError>> {
        Box::pin(async move {
            let (Ok(a), Ok(b)) = (decode(stored), decode(presented)) else {
                return Ok(false);
            };
            let same_payee = match (
                parse_address(stored_pay_to),
                parse_address(&requirements.pay_to),
            ) {
                (Ok(x), Ok(y)) => x == y,
                _ => false,
            };
            Ok(a.message == b.message && same_payee && requirements.scheme == Scheme::Exact)
        })
    }

    fn submit<'a>(&'a self, verified: &'a Verified) -> BoxFuture<'a, Result<String, SchemeError>> {
        Box::pin(async move {
            let proof = verified
                .proof
                .downcast_ref::<VerifiedSvm>()
                .ok_or_else(|| {
                    SchemeError::unavailable(
                        ErrorReason::UnexpectedSettleError,
                        "verification proof is not an exact SVM one",
                    )
                })?;
            let span = tracing::info_span!("svm_send", signature = %proof.signature);
            let _enter = span.enter();
            match self.rpc.send(&proof.signed).await {
                Ok(signature) if signature == proof.signature => Ok(signature.to_string()),
                Ok(other) => Err(SchemeError::unavailable(
                    ErrorReason::UnexpectedSettleError,
                    format!(
                        "the node reports signature {other}, expected {}",
                        proof.signature
                    ),
                )),
                Err(e) if e.is_transport() => {
                    // The node may or may not have it: the signature is known, so wait on it
                    // (a transaction that never arrived is found missing, and its blockhash
                    // expiry bounds the wait).
                    tracing::warn!(error = %e, "send outcome unknown; awaiting the signature");
                    Ok(proof.signature.to_string())
                }
                Err(e) => Err(SchemeError::payment(
                    SvmReason::TransactionFailed.into(),
                    format!("the node refused the transaction: {e}"),
                )),
            }
        })
    }

    fn await_settlement<'a>(
        &'a self,
        payment: &'a PaymentPayload,
        _requirements: &'a PaymentRequirements,
        transaction: &'a str,
    ) -> BoxFuture<'a, Result<Settled, SchemeError>> {
        Box::pin(async move {
            let signature: Signature = transaction.parse().map_err(|_| {
                SchemeError::unavailable(
                    ErrorReason::UnexpectedSettleError,
                    format!("{transaction:?} is not a Solana signature"),
                )
            })?;
            let tx = decode(payment).ok();
            let payer = tx.as_ref().map(payer_of).unwrap_or_default();
            let blockhash = tx.map(|tx| *tx.transaction.message.recent_blockhash());
            let deadline = Instant::now() + self.config.receipt_timeout;
            let mut expired = false;
            loop {
                match self.rpc.signature_status(&signature).await {
                    Ok(Some(status)) if status.is_confirmed() => {
                        return match status.err {
                            None => Ok(Settled::new(transaction, payer)),
                            Some(err) => Err(SchemeError::payment(
                                SvmReason::TransactionFailed.into(),
                                format!("the transaction failed on chain: {err}"),
                            )
                            .with_transaction(transaction.to_owned())),
                        };
                    }
                    // Not seen after its blockhash expired (checked once more since): it can
                    // never land, so the payment failed and nothing moved.
                    Ok(None) if expired => {
                        return Err(SchemeError::payment(
                            SvmReason::TransactionFailed.into(),
                            "the transaction's blockhash expired before it landed",
                        )
                        .with_transaction(transaction.to_owned()))
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "signature status unavailable"),
                }
                if let Some(hash) = &blockhash {
                    expired = matches!(self.rpc.is_blockhash_valid(hash).await, Ok(false));
                }
                if Instant::now() >= deadline {
                    return Err(SchemeError::pending(
                        ErrorReason::SettlementPending,
                        "the transaction is not confirmed yet",
                        transaction.to_owned(),
                    ));
                }
                tokio::time::sleep(self.config.poll_interval).await;
            }
        })
    }

    fn find_settlement<'a>(
        &'a self,
        payment: &'a PaymentPayload,
        requirements: &'a PaymentRequirements,
    ) -> BoxFuture<'a, Result<Option<Settled>, SchemeError>> {
        Box::pin(async move {
            let tx = decode(payment)?;
            let fee_payer = tx
                .transaction
                .message
                .static_account_keys()
                .first()
                .copied()
                .ok_or_else(|| {
                    SchemeError::payment(
                        SvmReason::TransactionCouldNotBeDecoded.into(),
                        "the transaction has no accounts",
                    )
                })?;
            let _ = requirements;
            let (_, signature) = self.cosign(&tx, &fee_payer)?;
            let status = self
                .rpc
                .signature_status(&signature)
                .await
                .map_err(|e| rpc_failure(&e, "looking up the settlement"))?;
            match status {
                Some(s) if s.is_confirmed() && s.err.is_none() => {
                    Ok(Some(Settled::new(signature.to_string(), payer_of(&tx))))
                }
                Some(s) if s.is_confirmed() => Err(SchemeError::payment(
                    SvmReason::TransactionFailed.into(),
                    format!(
                        "the transaction failed on chain: {}",
                        s.err.unwrap_or_default()
                    ),
                )
                .with_transaction(signature.to_string())),
                _ => Ok(None),
            }
        })
    }
}

impl ChainOps for ExactSvmFacilitator {
    fn network(&self) -> &Network {
        &self.network
    }

    fn head(&self) -> BoxFuture<'_, Option<u64>> {
        Box::pin(async move { self.rpc.block_height().await.ok() })
    }

    fn signer_status(&self) -> BoxFuture<'_, Vec<SignerStatus>> {
        Box::pin(async move {
            let mut out = Vec::with_capacity(self.addresses.len());
            for address in &self.addresses {
                let balance = self.rpc.balance(address).await.ok();
                out.push(SignerStatus {
                    network: self.network.clone(),
                    address: address.to_string(),
                    balance: balance.map(U256::from),
                    low_on_gas: balance.is_some_and(|b| b < self.config.min_fee_payer_lamports),
                    in_flight: 0,
                });
            }
            out
        })
    }
}
