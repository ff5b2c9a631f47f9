//! JSON-RPC 2.0: parsing requests (single and batch), dispatching Solana's methods to the
//! [`Chain`], and error objects with Agave's codes. No input makes this panic: every
//! malformed request gets an error object.
//!
//! Methods (the ones `@solana/kit` and `@x402/svm` call, and a few more):
//! - chain: `getHealth`, `getVersion`, `getGenesisHash`, `getSlot`, `getBlockHeight`,
//!   `getEpochInfo`, `getEpochSchedule`, `getTransactionCount`, `getLatestBlockhash`,
//!   `isBlockhashValid`, `getFeeForMessage`, `getMinimumBalanceForRentExemption`,
//!   `getRecentPrioritizationFees` (always `[]`: no fee market here);
//! - accounts: `getAccountInfo`, `getMultipleAccounts`, `getBalance`,
//!   `getTokenAccountBalance`, `getTokenSupply`, `getTokenAccountsByOwner`;
//! - transactions: `simulateTransaction`, `sendTransaction`, `getSignatureStatuses`,
//!   `getTransaction`, `requestAirdrop`.
//!
//! Every commitment level means the same (a slot is final at once): statuses are
//! `finalized`.

use std::str::FromStr;
use std::sync::{Mutex, MutexGuard};

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};
use solana_address::Address;
use solana_hash::Hash;
use solana_signature::Signature;
use solana_transaction::versioned::TransactionVersion;

use crate::chain::{Chain, Refused, SLOTS_PER_EPOCH};
use crate::genesis::DEVNET_GENESIS_HASH;
use crate::token::{self, TokenState};
use crate::wire::{self, AccountEncoding, BinaryEncoding, DataSlice, TransactionEncoding};

/// The Agave version the devnet answers `getVersion` with (and `apiVersion` in contexts).
pub const SOLANA_CORE_VERSION: &str = "2.3.0";

/// The `feature-set` id `getVersion` reports.
pub const FEATURE_SET: u32 = 3_640_012_085;

/// Most accounts `getMultipleAccounts` takes at once (Agave's limit).
const MAX_MULTIPLE_ACCOUNTS: usize = 100;

/// Most signatures `getSignatureStatuses` takes at once (Agave's limit).
const MAX_SIGNATURE_STATUSES: usize = 256;

/// JSON-RPC and Agave error codes.
pub mod code {
    /// The body is not JSON.
    pub const PARSE_ERROR: i64 = -32700;
    /// Not a valid request object.
    pub const INVALID_REQUEST: i64 = -32600;
    /// No such method.
    pub const METHOD_NOT_FOUND: i64 = -32601;
    /// Bad parameters.
    pub const INVALID_PARAMS: i64 = -32602;
    /// Internal error.
    pub const INTERNAL: i64 = -32603;
    /// `sendTransaction`'s preflight simulation failed (data: the simulation).
    pub const SEND_TRANSACTION_PREFLIGHT_FAILURE: i64 = -32002;
    /// A signature does not verify.
    pub const TRANSACTION_SIGNATURE_VERIFICATION_FAILURE: i64 = -32003;
    /// The transaction's version is above the caller's `maxSupportedTransactionVersion`.
    pub const UNSUPPORTED_TRANSACTION_VERSION: i64 = -32015;
    /// `minContextSlot` is ahead of the node.
    pub const MIN_CONTEXT_SLOT_NOT_REACHED: i64 = -32016;
}

/// A JSON-RPC error object.
#[derive(Debug, Clone, PartialEq)]
pub struct RpcError {
    /// The error code.
    pub code: i64,
    /// A human-readable message.
    pub message: String,
    /// Extra data (the simulation, for a failed preflight).
    pub data: Option<Value>,
}

impl RpcError {
    /// An error with a code and a message.
    pub fn new(code: i64, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            data: None,
        }
    }

    /// Invalid params (-32602).
    pub fn params(message: impl std::fmt::Display) -> Self {
        Self::new(code::INVALID_PARAMS, format!("Invalid params: {message}"))
    }

    fn to_json(&self) -> Value {
        let mut v = json!({ "code": self.code, "message": self.message });
        if let Some(data) = &self.data {
            v["data"] = data.clone();
        }
        v
    }
}

impl From<Refused> for RpcError {
    fn from(refused: Refused) -> Self {
        let message = refused.to_string();
        match refused {
            Refused::Invalid(_) => RpcError::new(code::INVALID_PARAMS, message),
            Refused::Signature => {
                RpcError::new(code::TRANSACTION_SIGNATURE_VERIFICATION_FAILURE, message)
            }
            Refused::Preflight(simulation) => RpcError {
                code: code::SEND_TRANSACTION_PREFLIGHT_FAILURE,
                message,
                data: Some(wire::simulation_json(&simulation, false)),
            },
        }
    }
}

type RpcResult = Result<Value, RpcError>;

/// Handles one HTTP body: a request object or a batch; `None` when nothing is to be answered
/// (only notifications).
pub fn handle_body(chain: &Mutex<Chain>, body: &[u8]) -> Option<Value> {
    let value: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => {
            return Some(response(
                Value::Null,
                Err(RpcError::new(
                    code::PARSE_ERROR,
                    format!("Parse error: {e}"),
                )),
            ))
        }
    };
    match value {
        Value::Array(items) if items.is_empty() => Some(response(
            Value::Null,
            Err(RpcError::new(
                code::INVALID_REQUEST,
                "Invalid request: empty batch",
            )),
        )),
        Value::Array(items) => {
            let answers: Vec<Value> = items
                .into_iter()
                .filter_map(|item| handle_one(chain, item))
                .collect();
            (!answers.is_empty()).then_some(Value::Array(answers))
        }
        other => handle_one(chain, other),
    }
}

fn handle_one(chain: &Mutex<Chain>, request: Value) -> Option<Value> {
    let Value::Object(obj) = request else {
        return Some(response(
            Value::Null,
            Err(RpcError::new(
                code::INVALID_REQUEST,
                "Invalid request: not an object",
            )),
        ));
    };
    let id = obj.get("id").cloned();
    let Some(method) = obj.get("method").and_then(Value::as_str) else {
        return Some(response(
            id.unwrap_or(Value::Null),
            Err(RpcError::new(
                code::INVALID_REQUEST,
                "Invalid request: no method",
            )),
        ));
    };
    let params = obj.get("params").cloned().unwrap_or(Value::Null);
    let span = tracing::debug_span!("rpc", method);
    let _enter = span.enter();
    let result = dispatch(chain, method, &params);
    if let Err(e) = &result {
        tracing::debug!(code = e.code, message = %e.message, "rpc error");
    }
    // A request without an id is a notification: no answer.
    id.map(|id| response(id, result))
}

fn response(id: Value, result: RpcResult) -> Value {
    match result {
        Ok(result) => json!({ "jsonrpc": "2.0", "id": id, "result": result }),
        Err(e) => json!({ "jsonrpc": "2.0", "id": id, "error": e.to_json() }),
    }
}

/// Parameter `i` (required).
fn param<T: DeserializeOwned>(params: &Value, i: usize) -> Result<T, RpcError> {
    opt_param(params, i)?.ok_or_else(|| RpcError::params(format!("missing parameter {i}")))
}

/// Parameter `i`, absent or `null` meaning `None`.
fn opt_param<T: DeserializeOwned>(params: &Value, i: usize) -> Result<Option<T>, RpcError> {
    let v = match params {
        Value::Array(a) => a.get(i),
        Value::Null => None,
        _ => return Err(RpcError::params("params must be an array")),
    };
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(v) => serde_json::from_value(v.clone())
            .map(Some)
            .map_err(|e| RpcError::params(format!("parameter {i}: {e}"))),
    }
}

/// A configuration object, `{}` when absent.
fn config<T: DeserializeOwned + Default>(params: &Value, i: usize) -> Result<T, RpcError> {
    Ok(opt_param(params, i)?.unwrap_or_default())
}

fn parse<T: FromStr>(s: &str, what: &str) -> Result<T, RpcError>
where
    T::Err: std::fmt::Display,
{
    s.parse()
        .map_err(|e| RpcError::params(format!("invalid {what} {s:?}: {e}")))
}

fn address_param(params: &Value, i: usize) -> Result<Address, RpcError> {
    parse(&param::<String>(params, i)?, "address")
}

fn lock(chain: &Mutex<Chain>) -> MutexGuard<'_, Chain> {
    chain.lock().unwrap_or_else(|p| p.into_inner())
}

/// Commitment levels; all are the same here (every slot is final at once).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Commitment {
    Processed,
    Confirmed,
    Finalized,
}

/// The fields every read method's configuration has.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ContextConfig {
    #[allow(dead_code)]
    commitment: Option<Commitment>,
    min_context_slot: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct AccountConfig {
    encoding: Option<AccountEncoding>,
    data_slice: Option<DataSlice>,
    #[serde(flatten)]
    context: ContextConfig,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SimulateAccounts {
    addresses: Vec<String>,
    encoding: Option<AccountEncoding>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SimulateConfig {
    encoding: Option<BinaryEncoding>,
    #[serde(default)]
    sig_verify: bool,
    #[serde(default)]
    replace_recent_blockhash: bool,
    #[serde(default)]
    inner_instructions: bool,
    accounts: Option<SimulateAccounts>,
    #[serde(flatten)]
    context: ContextConfig,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SendConfig {
    encoding: Option<BinaryEncoding>,
    #[serde(default)]
    skip_preflight: bool,
    #[allow(dead_code)]
    preflight_commitment: Option<Commitment>,
    #[allow(dead_code)]
    max_retries: Option<u64>,
    min_context_slot: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct TransactionConfig {
    encoding: Option<TransactionEncoding>,
    commitment: Option<Commitment>,
    max_supported_transaction_version: Option<u8>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct StatusesConfig {
    #[allow(dead_code)]
    search_transaction_history: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
enum TokenAccountsFilter {
    Mint(String),
    ProgramId(String),
}

/// `{context: {slot, apiVersion}, value}`.
fn with_context(chain: &Chain, value: Value) -> Value {
    json!({
        "context": { "slot": chain.slot(), "apiVersion": SOLANA_CORE_VERSION },
        "value": value,
    })
}

fn check_min_context_slot(chain: &Chain, min: Option<u64>) -> Result<(), RpcError> {
    match min {
        Some(min) if min > chain.slot() => Err(RpcError {
            code: code::MIN_CONTEXT_SLOT_NOT_REACHED,
            message: "Minimum context slot has not been reached".into(),
            data: Some(json!({ "contextSlot": chain.slot() })),
        }),
        _ => Ok(()),
    }
}

fn account_value(
    chain: &Chain,
    address: &Address,
    encoding: AccountEncoding,
    slice: Option<DataSlice>,
) -> RpcResult {
    match chain.account(address) {
        None => Ok(Value::Null),
        Some(account) => {
            wire::account_json(&account, encoding, slice, &|mint| chain.mint_decimals(mint))
        }
    }
}

fn dispatch(chain: &Mutex<Chain>, method: &str, p: &Value) -> RpcResult {
    match method {
        "getHealth" => Ok(json!("ok")),
        "getVersion" => Ok(json!({
            "solana-core": SOLANA_CORE_VERSION,
            "feature-set": FEATURE_SET,
        })),
        "getGenesisHash" => Ok(json!(DEVNET_GENESIS_HASH)),
        "getSlot" | "getBlockHeight" => {
            let cfg: ContextConfig = config(p, 0)?;
            let c = lock(chain);
            check_min_context_slot(&c, cfg.min_context_slot)?;
            Ok(json!(if method == "getSlot" {
                c.slot()
            } else {
                c.block_height()
            }))
        }
        "getTransactionCount" => Ok(json!(lock(chain).transaction_count())),
        "getEpochInfo" => {
            let c = lock(chain);
            Ok(json!({
                "absoluteSlot": c.slot(),
                "blockHeight": c.block_height(),
                "epoch": c.slot() / SLOTS_PER_EPOCH,
                "slotIndex": c.slot() % SLOTS_PER_EPOCH,
                "slotsInEpoch": SLOTS_PER_EPOCH,
                "transactionCount": c.transaction_count(),
            }))
        }
        "getEpochSchedule" => Ok(json!({
            "slotsPerEpoch": SLOTS_PER_EPOCH,
            "leaderScheduleSlotOffset": SLOTS_PER_EPOCH,
            "warmup": false,
            "firstNormalEpoch": 0,
            "firstNormalSlot": 0,
        })),
        "getLatestBlockhash" => {
            let cfg: ContextConfig = config(p, 0)?;
            let c = lock(chain);
            check_min_context_slot(&c, cfg.min_context_slot)?;
            let (hash, last_valid) = c.latest_blockhash();
            Ok(with_context(
                &c,
                json!({ "blockhash": hash.to_string(), "lastValidBlockHeight": last_valid }),
            ))
        }
        "isBlockhashValid" => {
            let hash: Hash = parse(&param::<String>(p, 0)?, "blockhash")?;
            let cfg: ContextConfig = config(p, 1)?;
            let c = lock(chain);
            check_min_context_slot(&c, cfg.min_context_slot)?;
            Ok(with_context(&c, json!(c.is_blockhash_valid(&hash))))
        }
        "getFeeForMessage" => {
            let message = wire::decode_message(&param::<String>(p, 0)?)?;
            let cfg: ContextConfig = config(p, 1)?;
            let c = lock(chain);
            check_min_context_slot(&c, cfg.min_context_slot)?;
            let fee = c
                .is_blockhash_valid(message.recent_blockhash())
                .then(|| c.fee_for_message(&message));
            Ok(with_context(&c, json!(fee)))
        }
        "getMinimumBalanceForRentExemption" => {
            let len: usize = param(p, 0)?;
            Ok(json!(lock(chain).rent_exempt_minimum(len)))
        }
        "getRecentPrioritizationFees" => Ok(json!([])),
        "getAccountInfo" => {
            let address = address_param(p, 0)?;
            let cfg: AccountConfig = config(p, 1)?;
            let c = lock(chain);
            check_min_context_slot(&c, cfg.context.min_context_slot)?;
            let encoding = cfg.encoding.unwrap_or(AccountEncoding::Binary);
            let value = account_value(&c, &address, encoding, cfg.data_slice)?;
            Ok(with_context(&c, value))
        }
        "getMultipleAccounts" => {
            let addresses: Vec<String> = param(p, 0)?;
            if addresses.len() > MAX_MULTIPLE_ACCOUNTS {
                return Err(RpcError::params(format!(
                    "Too many inputs provided; max {MAX_MULTIPLE_ACCOUNTS}"
                )));
            }
            let addresses = addresses
                .iter()
                .map(|a| parse::<Address>(a, "address"))
                .collect::<Result<Vec<_>, _>>()?;
            let cfg: AccountConfig = config(p, 1)?;
            let c = lock(chain);
            check_min_context_slot(&c, cfg.context.min_context_slot)?;
            let encoding = cfg.encoding.unwrap_or(AccountEncoding::Base64);
            let values = addresses
                .iter()
                .map(|a| account_value(&c, a, encoding, cfg.data_slice))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(with_context(&c, json!(values)))
        }
        "getBalance" => {
            let address = address_param(p, 0)?;
            let cfg: ContextConfig = config(p, 1)?;
            let c = lock(chain);
            check_min_context_slot(&c, cfg.min_context_slot)?;
            Ok(with_context(&c, json!(c.lamports(&address))))
        }
        "getTokenAccountBalance" => {
            let address = address_param(p, 0)?;
            let cfg: ContextConfig = config(p, 1)?;
            let c = lock(chain);
            check_min_context_slot(&c, cfg.min_context_slot)?;
            let account = c
                .account(&address)
                .ok_or_else(|| RpcError::params("could not find account"))?;
            let Some(TokenState::Account(state, _)) = token::unpack(&account.owner, &account.data)
            else {
                return Err(RpcError::params("not a Token account"));
            };
            let decimals = c
                .mint_decimals(&state.mint)
                .ok_or_else(|| RpcError::params("could not find mint"))?;
            Ok(with_context(
                &c,
                token::ui_token_amount(state.amount, decimals),
            ))
        }
        "getTokenSupply" => {
            let address = address_param(p, 0)?;
            let cfg: ContextConfig = config(p, 1)?;
            let c = lock(chain);
            check_min_context_slot(&c, cfg.min_context_slot)?;
            let account = c
                .account(&address)
                .ok_or_else(|| RpcError::params("could not find account"))?;
            let Some(TokenState::Mint(mint, _)) = token::unpack(&account.owner, &account.data)
            else {
                return Err(RpcError::params("not a Token mint"));
            };
            Ok(with_context(
                &c,
                token::ui_token_amount(mint.supply, mint.decimals),
            ))
        }
        "getTokenAccountsByOwner" => {
            let owner = address_param(p, 0)?;
            let filter: TokenAccountsFilter = param(p, 1)?;
            let cfg: AccountConfig = config(p, 2)?;
            let c = lock(chain);
            check_min_context_slot(&c, cfg.context.min_context_slot)?;
            let (programs, mint) = match filter {
                TokenAccountsFilter::Mint(mint) => {
                    let mint: Address = parse(&mint, "mint")?;
                    let program = c
                        .account(&mint)
                        .map(|a| a.owner)
                        .filter(token::is_token_program)
                        .ok_or_else(|| RpcError::params("could not find mint"))?;
                    (vec![program], Some(mint))
                }
                TokenAccountsFilter::ProgramId(program) => {
                    let program: Address = parse(&program, "program id")?;
                    if !token::is_token_program(&program) {
                        return Err(RpcError::params(format!(
                            "unrecognized Token program id {program}"
                        )));
                    }
                    (vec![program], None)
                }
            };
            let encoding = cfg.encoding.unwrap_or(AccountEncoding::Binary);
            let mut values = Vec::new();
            for program in programs {
                for (address, account) in c.program_accounts(&program) {
                    let Some(TokenState::Account(state, _)) =
                        token::unpack(&account.owner, &account.data)
                    else {
                        continue;
                    };
                    if state.owner != owner || mint.is_some_and(|m| m != state.mint) {
                        continue;
                    }
                    let json = wire::account_json(&account, encoding, cfg.data_slice, &|m| {
                        c.mint_decimals(m)
                    })?;
                    values.push(json!({ "pubkey": address.to_string(), "account": json }));
                }
            }
            Ok(with_context(&c, json!(values)))
        }
        "simulateTransaction" => simulate(chain, p),
        "sendTransaction" => {
            let data: String = param(p, 0)?;
            let cfg: SendConfig = config(p, 1)?;
            let tx = wire::decode_transaction(&data, cfg.encoding.unwrap_or_default())?;
            let mut c = lock(chain);
            check_min_context_slot(&c, cfg.min_context_slot)?;
            let signature = c.send(tx, cfg.skip_preflight)?;
            Ok(json!(signature.to_string()))
        }
        "requestAirdrop" => {
            let address = address_param(p, 0)?;
            let lamports: u64 = param(p, 1)?;
            let signature = lock(chain).airdrop(&address, lamports).map_err(|e| {
                RpcError::new(code::INTERNAL, format!("airdrop request failed: {e}"))
            })?;
            Ok(json!(signature.to_string()))
        }
        "getSignatureStatuses" => {
            let signatures: Vec<String> = param(p, 0)?;
            if signatures.len() > MAX_SIGNATURE_STATUSES {
                return Err(RpcError::params(format!(
                    "Too many inputs provided; max {MAX_SIGNATURE_STATUSES}"
                )));
            }
            let signatures = signatures
                .iter()
                .map(|s| parse::<Signature>(s, "signature"))
                .collect::<Result<Vec<_>, _>>()?;
            let _: StatusesConfig = config(p, 1)?;
            let c = lock(chain);
            let statuses: Vec<Value> = signatures
                .iter()
                .map(|s| match c.record(s) {
                    None => Value::Null,
                    Some(r) => json!({
                        "slot": r.slot,
                        "confirmations": null,
                        "err": r.err.as_ref().map(wire::error_json),
                        "status": wire::status_json(r.err.as_ref()),
                        "confirmationStatus": "finalized",
                    }),
                })
                .collect();
            Ok(with_context(&c, json!(statuses)))
        }
        "getTransaction" => {
            let signature: Signature = parse(&param::<String>(p, 0)?, "signature")?;
            // The configuration, or (legacy) just the encoding.
            let cfg: TransactionConfig = match opt_param::<Value>(p, 1)? {
                Some(Value::String(encoding)) => TransactionConfig {
                    encoding: Some(
                        serde_json::from_value(Value::String(encoding))
                            .map_err(|e| RpcError::params(format!("parameter 1: {e}")))?,
                    ),
                    ..TransactionConfig::default()
                },
                Some(v) => serde_json::from_value(v)
                    .map_err(|e| RpcError::params(format!("parameter 1: {e}")))?,
                None => TransactionConfig::default(),
            };
            if cfg.commitment == Some(Commitment::Processed) {
                return Err(RpcError::params(
                    "Method does not support commitment below `confirmed`",
                ));
            }
            let c = lock(chain);
            let Some(record) = c.record(&signature) else {
                return Ok(Value::Null);
            };
            let version = match record.transaction.version() {
                TransactionVersion::Legacy(_) => None,
                TransactionVersion::Number(n) => Some(n),
            };
            if let Some(n) = version {
                if cfg
                    .max_supported_transaction_version
                    .is_none_or(|max| n > max)
                {
                    return Err(RpcError::new(
                        code::UNSUPPORTED_TRANSACTION_VERSION,
                        format!(
                            "Transaction version ({n}) is not supported by the requesting \
                             client. Please try the request again with the following \
                             configuration parameter: \"maxSupportedTransactionVersion\": {n}"
                        ),
                    ));
                }
            }
            Ok(wire::record_json(
                record,
                cfg.encoding.unwrap_or_default(),
                cfg.max_supported_transaction_version.is_some(),
            ))
        }
        other => Err(RpcError::new(
            code::METHOD_NOT_FOUND,
            format!("Method not found: {other} is not supported by tollgate-svm-devnet"),
        )),
    }
}

fn simulate(chain: &Mutex<Chain>, p: &Value) -> RpcResult {
    let data: String = param(p, 0)?;
    let cfg: SimulateConfig = config(p, 1)?;
    if cfg.sig_verify && cfg.replace_recent_blockhash {
        return Err(RpcError::params(
            "sigVerify may not be used with replaceRecentBlockhash",
        ));
    }
    let tx = wire::decode_transaction(&data, cfg.encoding.unwrap_or_default())?;
    let addresses = match &cfg.accounts {
        None => None,
        Some(accounts) => {
            let encoding = accounts.encoding.unwrap_or(AccountEncoding::Base64);
            if matches!(encoding, AccountEncoding::Binary | AccountEncoding::Base58) {
                return Err(RpcError::params("base58 encoding not supported"));
            }
            let addresses = accounts
                .addresses
                .iter()
                .map(|a| parse::<Address>(a, "address"))
                .collect::<Result<Vec<_>, _>>()?;
            Some((addresses, encoding))
        }
    };
    let c = lock(chain);
    check_min_context_slot(&c, cfg.context.min_context_slot)?;
    let simulation = c.simulate(tx, cfg.sig_verify, cfg.replace_recent_blockhash)?;
    let mut value = wire::simulation_json(&simulation, cfg.inner_instructions);
    if let Some((addresses, encoding)) = addresses {
        let accounts = addresses
            .iter()
            .map(|address| {
                let after = simulation
                    .post_accounts
                    .iter()
                    .find(|(a, _)| a == address)
                    .map(|(_, account)| account.clone())
                    .or_else(|| c.account(address));
                match after {
                    None => Ok(Value::Null),
                    Some(account) => {
                        wire::account_json(&account, encoding, None, &|m| c.mint_decimals(m))
                    }
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        value["accounts"] = json!(accounts);
    }
    Ok(with_context(&c, value))
}
