//! A Solana JSON-RPC client for the few methods the scheme needs.
//!
//! The official `solana-rpc-client` brings the validator's dependency tree (hundreds of
//! crates); the scheme calls nine methods with small, stable shapes, so they are spelled out
//! here over the `reqwest` the rest of Tollgate already links. Every failure says whether the
//! node was unreachable (`Transport`, retryable) or answered with an error (`Rpc`).

use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};
use solana_address::Address;
use solana_hash::Hash;
use solana_signature::Signature;

/// Why an RPC call failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RpcError {
    /// The node could not be reached or did not answer in time.
    #[error("Solana RPC {method} unreachable: {message}")]
    Transport {
        /// The method.
        method: &'static str,
        /// What the HTTP client said.
        message: String,
    },
    /// The node answered with a JSON-RPC error.
    #[error("Solana RPC {method} failed ({code}): {message}")]
    Rpc {
        /// The method.
        method: &'static str,
        /// The JSON-RPC error code.
        code: i64,
        /// Its message.
        message: String,
        /// Its data (a failed preflight carries the transaction error here).
        data: Option<Value>,
    },
    /// The node answered something that is not the method's result shape.
    #[error("Solana RPC {method} returned an unexpected result: {message}")]
    Malformed {
        /// The method.
        method: &'static str,
        /// What was wrong.
        message: String,
    },
}

impl RpcError {
    /// Whether the node, not the transaction, failed: the call may succeed later.
    pub fn is_transport(&self) -> bool {
        matches!(self, Self::Transport { .. })
    }
}

/// An account as `getAccountInfo` returns it (base64 data decoded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountInfo {
    /// The owning program.
    pub owner: Address,
    /// Its lamports.
    pub lamports: u64,
    /// Its data.
    pub data: Vec<u8>,
}

/// A signature's status as `getSignatureStatuses` reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct SignatureStatus {
    /// The slot it was processed in.
    pub slot: u64,
    /// The transaction error when it failed on chain, in Solana's JSON form.
    pub err: Option<Value>,
    /// `processed`, `confirmed` or `finalized`.
    pub confirmation: String,
}

impl SignatureStatus {
    /// Whether the cluster has confirmed it (a supermajority voted on its block).
    pub fn is_confirmed(&self) -> bool {
        self.confirmation == "confirmed" || self.confirmation == "finalized"
    }
}

/// A simulation's outcome.
#[derive(Debug, Clone, PartialEq)]
pub struct Simulation {
    /// The transaction error, when it would fail.
    pub err: Option<Value>,
    /// The programs' logs.
    pub logs: Vec<String>,
}

/// A Solana JSON-RPC endpoint.
#[derive(Debug, Clone)]
pub struct SolanaRpc {
    url: String,
    http: reqwest::Client,
}

impl SolanaRpc {
    /// A client of the node at `url`, each call bounded by `timeout`.
    pub fn new(url: impl Into<String>, timeout: Duration) -> Self {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .unwrap_or_default();
        Self {
            url: url.into(),
            http,
        }
    }

    /// The endpoint.
    pub fn url(&self) -> &str {
        &self.url
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: &'static str,
        params: Value,
    ) -> Result<T, RpcError> {
        let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
        let transport = |e: reqwest::Error| RpcError::Transport {
            method,
            message: e.to_string(),
        };
        let response = self
            .http
            .post(&self.url)
            .json(&body)
            .send()
            .await
            .map_err(transport)?;
        let status = response.status();
        let value: Value = response.json().await.map_err(|e| {
            if status.is_server_error() {
                RpcError::Transport {
                    method,
                    message: format!("HTTP {status}"),
                }
            } else {
                RpcError::Malformed {
                    method,
                    message: e.to_string(),
                }
            }
        })?;
        if let Some(error) = value.get("error") {
            return Err(RpcError::Rpc {
                method,
                code: error.get("code").and_then(Value::as_i64).unwrap_or(0),
                message: error
                    .get("message")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
                data: error.get("data").cloned(),
            });
        }
        let result = value.get("result").cloned().unwrap_or(Value::Null);
        serde_json::from_value(result).map_err(|e| RpcError::Malformed {
            method,
            message: e.to_string(),
        })
    }

    /// `getGenesisHash`: names the cluster (its CAIP-2 id is `solana:` and the hash's first 32
    /// characters).
    pub async fn genesis_hash(&self) -> Result<String, RpcError> {
        self.call("getGenesisHash", json!([])).await
    }

    /// `getLatestBlockhash` at `confirmed`: the blockhash and the last block height at which a
    /// transaction using it can land.
    pub async fn latest_blockhash(&self) -> Result<(Hash, u64), RpcError> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Latest {
            blockhash: String,
            last_valid_block_height: u64,
        }
        #[derive(Deserialize)]
        struct Ctx {
            value: Latest,
        }
        let r: Ctx = self
            .call("getLatestBlockhash", json!([{"commitment": "confirmed"}]))
            .await?;
        let hash = r.value.blockhash.parse().map_err(|e| RpcError::Malformed {
            method: "getLatestBlockhash",
            message: format!("blockhash {:?}: {e:?}", r.value.blockhash),
        })?;
        Ok((hash, r.value.last_valid_block_height))
    }

    /// `getBlockHeight` at `confirmed`.
    pub async fn block_height(&self) -> Result<u64, RpcError> {
        self.call("getBlockHeight", json!([{"commitment": "confirmed"}]))
            .await
    }

    /// `isBlockhashValid` at `confirmed`: whether a transaction using `hash` can still land.
    pub async fn is_blockhash_valid(&self, hash: &Hash) -> Result<bool, RpcError> {
        #[derive(Deserialize)]
        struct Ctx {
            value: bool,
        }
        let r: Ctx = self
            .call(
                "isBlockhashValid",
                json!([hash.to_string(), {"commitment": "confirmed"}]),
            )
            .await?;
        Ok(r.value)
    }

    /// `getBalance` in lamports.
    pub async fn balance(&self, address: &Address) -> Result<u64, RpcError> {
        #[derive(Deserialize)]
        struct Ctx {
            value: u64,
        }
        let r: Ctx = self
            .call(
                "getBalance",
                json!([address.to_string(), {"commitment": "confirmed"}]),
            )
            .await?;
        Ok(r.value)
    }

    /// `getAccountInfo` (base64): `None` when the account does not exist.
    pub async fn account(&self, address: &Address) -> Result<Option<AccountInfo>, RpcError> {
        use base64::Engine as _;
        #[derive(Deserialize)]
        struct Raw {
            owner: String,
            lamports: u64,
            data: (String, String),
        }
        #[derive(Deserialize)]
        struct Ctx {
            value: Option<Raw>,
        }
        let method = "getAccountInfo";
        let r: Ctx = self
            .call(
                method,
                json!([address.to_string(), {"encoding": "base64", "commitment": "confirmed"}]),
            )
            .await?;
        let Some(raw) = r.value else {
            return Ok(None);
        };
        let malformed = |message: String| RpcError::Malformed { method, message };
        let owner = raw
            .owner
            .parse()
            .map_err(|e| malformed(format!("owner {:?}: {e:?}", raw.owner)))?;
        let data = base64::engine::general_purpose::STANDARD
            .decode(&raw.data.0)
            .map_err(|e| malformed(format!("data: {e}")))?;
        Ok(Some(AccountInfo {
            owner,
            lamports: raw.lamports,
            data,
        }))
    }

    /// `simulateTransaction` of a fully signed transaction, verifying its signatures against
    /// its own blockhash (no replacement: an expired blockhash must fail here as it would
    /// on send).
    pub async fn simulate(&self, transaction_base64: &str) -> Result<Simulation, RpcError> {
        #[derive(Deserialize)]
        struct Value_ {
            err: Option<Value>,
            logs: Option<Vec<String>>,
        }
        #[derive(Deserialize)]
        struct Ctx {
            value: Value_,
        }
        let r: Ctx = self
            .call(
                "simulateTransaction",
                json!([transaction_base64, {
                    "encoding": "base64",
                    "sigVerify": true,
                    "replaceRecentBlockhash": false,
                    "commitment": "confirmed",
                }]),
            )
            .await?;
        Ok(Simulation {
            err: r.value.err,
            logs: r.value.logs.unwrap_or_default(),
        })
    }

    /// `sendTransaction` without preflight (the facilitator simulated it already): the node's
    /// signature for it.
    pub async fn send(&self, transaction_base64: &str) -> Result<Signature, RpcError> {
        let method = "sendTransaction";
        let signature: String = self
            .call(
                method,
                json!([transaction_base64, {
                    "encoding": "base64",
                    "skipPreflight": true,
                    "maxRetries": 0,
                }]),
            )
            .await?;
        signature.parse().map_err(|e| RpcError::Malformed {
            method,
            message: format!("signature {signature:?}: {e:?}"),
        })
    }

    /// `getSignatureStatuses` of one signature, searching the transaction history so a
    /// restart finds an old settlement too.
    pub async fn signature_status(
        &self,
        signature: &Signature,
    ) -> Result<Option<SignatureStatus>, RpcError> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Raw {
            slot: u64,
            err: Option<Value>,
            confirmation_status: Option<String>,
        }
        #[derive(Deserialize)]
        struct Ctx {
            value: Vec<Option<Raw>>,
        }
        let r: Ctx = self
            .call(
                "getSignatureStatuses",
                json!([[signature.to_string()], {"searchTransactionHistory": true}]),
            )
            .await?;
        Ok(r.value
            .into_iter()
            .next()
            .flatten()
            .map(|raw| SignatureStatus {
                slot: raw.slot,
                err: raw.err,
                confirmation: raw
                    .confirmation_status
                    .unwrap_or_else(|| "processed".to_owned()),
            }))
    }
}
