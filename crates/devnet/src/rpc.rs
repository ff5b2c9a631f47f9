//! JSON-RPC 2.0: parsing requests (single and batch), dispatching methods to the [`Chain`],
//! and error objects. No input makes this panic: every malformed request is an error object.

use std::sync::Mutex;

use alloy_eips::{BlockId, BlockNumberOrTag};
use alloy_primitives::{Address, Bytes, B256, U256, U64};
use alloy_rpc_types_eth::state::StateOverride;
use alloy_rpc_types_eth::{
    Block, BlockTransactions, FeeHistory, Filter, Transaction, TransactionRequest,
};
use serde::de::DeserializeOwned;
use serde_json::{json, Value};

use crate::chain::{Chain, ChainError, SUGGESTED_TIP};

/// Standard JSON-RPC and Ethereum error codes.
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
    /// A transaction or call was refused (geth's generic server error).
    pub const SERVER: i64 = -32000;
    /// Execution reverted (with the revert data in `data`).
    pub const EXECUTION_REVERTED: i64 = 3;
}

/// A JSON-RPC error object.
#[derive(Debug, Clone, PartialEq)]
pub struct RpcError {
    /// The error code.
    pub code: i64,
    /// A human-readable message.
    pub message: String,
    /// Extra data (revert data for code 3).
    pub data: Option<Value>,
}

impl RpcError {
    fn new(code: i64, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            data: None,
        }
    }

    fn params(message: impl std::fmt::Display) -> Self {
        Self::new(code::INVALID_PARAMS, format!("invalid params: {message}"))
    }

    fn to_json(&self) -> Value {
        let mut v = json!({ "code": self.code, "message": self.message });
        if let Some(data) = &self.data {
            v["data"] = data.clone();
        }
        v
    }
}

impl From<ChainError> for RpcError {
    fn from(e: ChainError) -> Self {
        match &e {
            ChainError::InvalidParams(m) => RpcError::params(m),
            ChainError::Rejected(m) => RpcError::new(code::SERVER, m.clone()),
            ChainError::Reverted { data, .. } => RpcError {
                code: code::EXECUTION_REVERTED,
                message: e.to_string(),
                data: Some(json!(data)),
            },
            ChainError::Halted(_) => RpcError::new(code::SERVER, e.to_string()),
            ChainError::UnknownBlock(m) => RpcError::new(code::SERVER, m.clone()),
            ChainError::Internal(m) => RpcError::new(code::INTERNAL, m.clone()),
        }
    }
}

type RpcResult = Result<Value, RpcError>;

/// Handles one HTTP body: a request object or a batch; `None` when nothing is to be answered
/// (only notifications).
pub fn handle_body(chain: &Mutex<Chain>, accounts: &[Address], body: &[u8]) -> Option<Value> {
    let value: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => {
            return Some(response(
                Value::Null,
                Err(RpcError::new(
                    code::PARSE_ERROR,
                    format!("parse error: {e}"),
                )),
            ))
        }
    };
    match value {
        Value::Array(items) if items.is_empty() => Some(response(
            Value::Null,
            Err(RpcError::new(code::INVALID_REQUEST, "empty batch")),
        )),
        Value::Array(items) => {
            let answers: Vec<Value> = items
                .into_iter()
                .filter_map(|item| handle_one(chain, accounts, item))
                .collect();
            (!answers.is_empty()).then_some(Value::Array(answers))
        }
        other => handle_one(chain, accounts, other),
    }
}

fn handle_one(chain: &Mutex<Chain>, accounts: &[Address], request: Value) -> Option<Value> {
    let Value::Object(obj) = request else {
        return Some(response(
            Value::Null,
            Err(RpcError::new(
                code::INVALID_REQUEST,
                "request must be an object",
            )),
        ));
    };
    let id = obj.get("id").cloned();
    let Some(method) = obj.get("method").and_then(Value::as_str) else {
        return Some(response(
            id.unwrap_or(Value::Null),
            Err(RpcError::new(code::INVALID_REQUEST, "missing method")),
        ));
    };
    let params = obj.get("params").cloned().unwrap_or(Value::Null);
    let span = tracing::debug_span!("rpc", method);
    let _enter = span.enter();
    let result = dispatch(chain, accounts, method, &params);
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

fn to_json<T: serde::Serialize>(v: T) -> RpcResult {
    serde_json::to_value(v).map_err(|e| RpcError::new(code::INTERNAL, e.to_string()))
}

fn lock(chain: &Mutex<Chain>) -> std::sync::MutexGuard<'_, Chain> {
    chain.lock().unwrap_or_else(|p| p.into_inner())
}

/// The block number a block id names (`latest` when absent).
fn block_number(chain: &Chain, id: Option<BlockId>) -> Result<u64, RpcError> {
    match id {
        None => Ok(chain.head_number()),
        Some(BlockId::Number(tag)) => Ok(chain.resolve(tag)?),
        Some(BlockId::Hash(h)) => chain
            .number_of(h.block_hash)
            .ok_or_else(|| RpcError::new(code::SERVER, format!("unknown block {}", h.block_hash))),
    }
}

fn block_json(chain: &Chain, n: u64, full: bool) -> RpcResult {
    let Some(record) = chain.block(n) else {
        return Ok(Value::Null);
    };
    let transactions = if full {
        BlockTransactions::Full(
            record
                .transactions
                .iter()
                .filter_map(|h| chain.mined(h).map(|m| m.tx.clone()))
                .collect::<Vec<Transaction>>(),
        )
    } else {
        BlockTransactions::Hashes(record.transactions.clone())
    };
    let block = Block {
        header: record.header.clone(),
        uncles: Vec::new(),
        transactions,
        withdrawals: Some(Default::default()),
    };
    to_json(block)
}

fn dispatch(chain: &Mutex<Chain>, accounts: &[Address], method: &str, p: &Value) -> RpcResult {
    match method {
        "web3_clientVersion" => Ok(json!(concat!(
            "tollgate-devnet/v",
            env!("CARGO_PKG_VERSION")
        ))),
        "eth_chainId" => to_json(U64::from(lock(chain).chain_id())),
        "net_version" => Ok(json!(lock(chain).chain_id().to_string())),
        "net_listening" => Ok(json!(true)),
        "eth_syncing" => Ok(json!(false)),
        "eth_mining" => Ok(json!(lock(chain).automine())),
        "eth_accounts" => to_json(accounts),
        "eth_blockNumber" => to_json(U64::from(lock(chain).head_number())),
        "eth_getBalance" => {
            let address: Address = param(p, 0)?;
            let c = lock(chain);
            let n = block_number(&c, opt_param(p, 1)?)?;
            to_json(c.account(address, n)?.balance)
        }
        "eth_getTransactionCount" => {
            let address: Address = param(p, 0)?;
            let id: Option<BlockId> = opt_param(p, 1)?;
            let c = lock(chain);
            if matches!(id, Some(BlockId::Number(BlockNumberOrTag::Pending))) {
                return to_json(U64::from(c.pending_nonce(address)?));
            }
            let n = block_number(&c, id)?;
            to_json(U64::from(c.account(address, n)?.nonce))
        }
        "eth_getCode" => {
            let address: Address = param(p, 0)?;
            let c = lock(chain);
            let n = block_number(&c, opt_param(p, 1)?)?;
            to_json(c.code(address, n)?)
        }
        "eth_getStorageAt" => {
            let address: Address = param(p, 0)?;
            let slot: U256 = param(p, 1)?;
            let c = lock(chain);
            let n = block_number(&c, opt_param(p, 2)?)?;
            to_json(B256::from(c.storage(address, slot, n)?))
        }
        "eth_call" => {
            let req: TransactionRequest = param(p, 0)?;
            let overrides: Option<StateOverride> = opt_param(p, 2)?;
            if opt_param::<Value>(p, 3)?.is_some() {
                return Err(RpcError::params("block overrides are not supported"));
            }
            let c = lock(chain);
            let n = block_number(&c, opt_param(p, 1)?)?;
            to_json(c.call_with_overrides(&req, n, overrides.as_ref())?)
        }
        "eth_estimateGas" => {
            let req: TransactionRequest = param(p, 0)?;
            let c = lock(chain);
            let n = block_number(&c, opt_param(p, 1)?)?;
            to_json(U64::from(c.estimate_gas(&req, n)?))
        }
        "eth_gasPrice" => {
            let c = lock(chain);
            to_json(U256::from(u128::from(c.next_base_fee()) + SUGGESTED_TIP))
        }
        "eth_maxPriorityFeePerGas" => to_json(U256::from(SUGGESTED_TIP)),
        "eth_blobBaseFee" => to_json(U256::from(1u8)),
        "eth_feeHistory" => {
            let count: U64 = param(p, 0)?;
            let newest: BlockNumberOrTag = param(p, 1)?;
            let percentiles: Option<Vec<f64>> = opt_param(p, 2)?;
            let c = lock(chain);
            to_json(fee_history(&c, count.to::<u64>(), newest, percentiles)?)
        }
        "eth_getBlockByNumber" => {
            let tag: BlockNumberOrTag = param(p, 0)?;
            let full: bool = opt_param(p, 1)?.unwrap_or(false);
            let c = lock(chain);
            let n = match tag {
                BlockNumberOrTag::Number(n) => n,
                other => c.resolve(other)?,
            };
            block_json(&c, n, full)
        }
        "eth_getBlockByHash" => {
            let hash: B256 = param(p, 0)?;
            let full: bool = opt_param(p, 1)?.unwrap_or(false);
            let c = lock(chain);
            match c.number_of(hash) {
                Some(n) => block_json(&c, n, full),
                None => Ok(Value::Null),
            }
        }
        "eth_getBlockTransactionCountByNumber" => {
            let tag: BlockNumberOrTag = param(p, 0)?;
            let c = lock(chain);
            let n = c.resolve(tag)?;
            to_json(c.block(n).map(|b| U64::from(b.transactions.len())))
        }
        "eth_sendRawTransaction" => {
            let raw: Bytes = param(p, 0)?;
            to_json(lock(chain).send_raw(&raw)?)
        }
        "eth_sendTransaction" => Err(RpcError::new(
            code::SERVER,
            "eth_sendTransaction is not supported: sign locally and use eth_sendRawTransaction",
        )),
        "eth_getTransactionReceipt" => {
            let hash: B256 = param(p, 0)?;
            to_json(lock(chain).mined(&hash).map(|m| m.receipt.clone()))
        }
        "eth_getTransactionByHash" => {
            let hash: B256 = param(p, 0)?;
            let c = lock(chain);
            if let Some(m) = c.mined(&hash) {
                return to_json(&m.tx);
            }
            to_json(c.pending_tx(&hash).map(pending_json))
        }
        "eth_getLogs" => {
            let filter: Filter = param(p, 0)?;
            to_json(lock(chain).logs(&filter)?)
        }
        "txpool_content" => {
            let c = lock(chain);
            let mut pending = serde_json::Map::new();
            for ((from, nonce), tx) in c.pool() {
                let entry = pending
                    .entry(from.to_checksum(None))
                    .or_insert_with(|| json!({}));
                entry[nonce.to_string()] = to_json(pending_json(tx))?;
            }
            Ok(json!({ "pending": pending, "queued": {} }))
        }
        "evm_setAutomine" => {
            let on: bool = param(p, 0)?;
            lock(chain).set_automine(on);
            Ok(json!(true))
        }
        "evm_mine" => {
            let timestamp: Option<Value> = opt_param(p, 0)?;
            let timestamp = match timestamp {
                Some(Value::Number(n)) => n.as_u64(),
                Some(Value::String(s)) => Some(
                    serde_json::from_value::<U64>(json!(s))
                        .map_err(RpcError::params)?
                        .to::<u64>(),
                ),
                _ => None,
            };
            lock(chain).mine(timestamp)?;
            Ok(json!("0x0"))
        }
        "anvil_mine" => {
            let blocks: Option<U64> = opt_param(p, 0)?;
            let blocks = blocks.map(|b| b.to::<u64>()).unwrap_or(1);
            if blocks > 10_000 {
                return Err(RpcError::params("at most 10000 blocks at once"));
            }
            let mut c = lock(chain);
            for _ in 0..blocks {
                c.mine(None)?;
            }
            Ok(Value::Null)
        }
        "anvil_setBalance" | "hardhat_setBalance" => {
            let address: Address = param(p, 0)?;
            let balance: U256 = param(p, 1)?;
            lock(chain).set_balance(address, balance)?;
            Ok(Value::Null)
        }
        "anvil_setNonce" => {
            let address: Address = param(p, 0)?;
            let nonce: U64 = param(p, 1)?;
            lock(chain).set_nonce(address, nonce.to::<u64>())?;
            Ok(Value::Null)
        }
        "anvil_setCode" => {
            let address: Address = param(p, 0)?;
            let code: Bytes = param(p, 1)?;
            lock(chain).set_code(address, code)?;
            Ok(Value::Null)
        }
        other => Err(RpcError::new(
            code::METHOD_NOT_FOUND,
            format!("method {other} is not supported by tollgate-devnet"),
        )),
    }
}

/// A mempool transaction as the RPC shows it (no block yet).
fn pending_json(tx: &crate::chain::PendingTx) -> Transaction {
    Transaction {
        inner: alloy_consensus::transaction::Recovered::new_unchecked(tx.envelope.clone(), tx.from),
        block_hash: None,
        block_number: None,
        transaction_index: None,
        effective_gas_price: None,
        block_timestamp: None,
    }
}

fn fee_history(
    chain: &Chain,
    count: u64,
    newest: BlockNumberOrTag,
    percentiles: Option<Vec<f64>>,
) -> Result<FeeHistory, RpcError> {
    let newest = chain.resolve(newest)?;
    let count = count.clamp(1, 1024).min(newest + 1);
    let oldest = newest + 1 - count;
    if let Some(p) = &percentiles {
        if p.len() > 100
            || p.windows(2).any(|w| w[0] > w[1])
            || p.iter().any(|x| !(0.0..=100.0).contains(x))
        {
            return Err(RpcError::params(
                "reward percentiles must be ascending, within 0..=100",
            ));
        }
    }
    let mut base_fee_per_gas = Vec::new();
    let mut gas_used_ratio = Vec::new();
    let mut reward = Vec::new();
    for n in oldest..=newest {
        let Some(block) = chain.block(n) else { break };
        let h = &block.header.inner;
        let base = h.base_fee_per_gas.unwrap_or_default();
        base_fee_per_gas.push(u128::from(base));
        gas_used_ratio.push(h.gas_used as f64 / h.gas_limit as f64);
        if let Some(p) = &percentiles {
            use alloy_consensus::Transaction as _;
            // Tips of the block's transactions, weighted by gas, at each percentile.
            let mut tips: Vec<(u128, u64)> = block
                .transactions
                .iter()
                .filter_map(|hash| chain.mined(hash))
                .map(|m| {
                    (
                        m.tx.inner.effective_tip_per_gas(base).unwrap_or(0),
                        m.receipt.gas_used,
                    )
                })
                .collect();
            tips.sort();
            let total: u64 = tips.iter().map(|t| t.1).sum();
            let row = p
                .iter()
                .map(|pct| {
                    if tips.is_empty() {
                        return 0;
                    }
                    let threshold = (total as f64 * pct / 100.0) as u64;
                    let mut acc = 0;
                    for (tip, gas) in &tips {
                        acc += gas;
                        if acc >= threshold {
                            return *tip;
                        }
                    }
                    tips[tips.len() - 1].0
                })
                .collect();
            reward.push(row);
        }
    }
    // The base fee of the block after the newest.
    let next = if newest == chain.head_number() {
        chain.next_base_fee()
    } else {
        chain
            .block(newest + 1)
            .and_then(|b| b.header.inner.base_fee_per_gas)
            .unwrap_or_default()
    };
    base_fee_per_gas.push(u128::from(next));
    Ok(FeeHistory {
        base_fee_per_gas,
        gas_used_ratio,
        base_fee_per_blob_gas: Vec::new(),
        blob_gas_used_ratio: Vec::new(),
        oldest_block: oldest,
        reward: percentiles.map(|_| reward),
    })
}
