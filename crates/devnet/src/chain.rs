//! The chain: state per block, the mempool, mining, and the block store.
//!
//! All of it sits behind one lock in [`crate::server`]; execution is synchronous and fast (a
//! payment settles in well under a millisecond of EVM time).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

use alloy_consensus::proofs::{calculate_receipt_root, calculate_transaction_root};
use alloy_consensus::transaction::{Recovered, SignerRecoverable};
use alloy_consensus::{
    Eip658Value, Header, Receipt, ReceiptEnvelope, ReceiptWithBloom, Transaction as _, TxEnvelope,
};
use alloy_eips::eip1559::{calc_next_block_base_fee, BaseFeeParams};
use alloy_eips::eip2718::{Decodable2718, Encodable2718};
use alloy_eips::BlockNumberOrTag;
use alloy_primitives::{keccak256, logs_bloom, Address, Bytes, B256, U256};
use alloy_rpc_types_eth::state::StateOverride;
use alloy_rpc_types_eth::{
    Filter, FilterBlockOption, Log, Transaction, TransactionReceipt, TransactionRequest,
};
use revm::context::result::ExecutionResult;
use revm::context::BlockEnv;
use revm::database::{CacheDB, InMemoryDB};
use revm::state::{AccountInfo, Bytecode};
use revm::DatabaseRef;

use crate::executor::{self, ExecError, Mode, BLOCK_GAS_LIMIT};

/// Base fee of the genesis block: 1 gwei, as anvil.
pub const INITIAL_BASE_FEE: u64 = 1_000_000_000;

/// The priority fee the node suggests: 1 gwei.
pub const SUGGESTED_TIP: u128 = 1_000_000_000;

/// How many recent blocks keep their state for queries at a block tag.
const STATE_HISTORY: usize = 512;

/// The most blocks one `eth_getLogs` may span.
const MAX_LOG_RANGE: u64 = 10_000;

/// Why a request against the chain failed. [`crate::rpc`] turns each into a JSON-RPC error.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ChainError {
    /// The request's parameters are malformed.
    #[error("{0}")]
    InvalidParams(String),
    /// A transaction was refused (decoding, signature, chain id, nonce, funds, fees, gas).
    #[error("{0}")]
    Rejected(String),
    /// Execution reverted; `data` is the revert payload.
    #[error("execution reverted{}", reason.as_deref().map(|r| format!(": {r}")).unwrap_or_default())]
    Reverted {
        /// The decoded `Error(string)` reason, when there is one.
        reason: Option<String>,
        /// The raw revert data.
        data: Bytes,
    },
    /// Execution halted (out of gas, invalid opcode, …).
    #[error("execution halted: {0}")]
    Halted(String),
    /// The block asked for does not exist, or its state is no longer kept.
    #[error("{0}")]
    UnknownBlock(String),
    /// The EVM failed internally.
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<ExecError> for ChainError {
    fn from(e: ExecError) -> Self {
        match e {
            ExecError::Invalid(m) => ChainError::Rejected(m),
            ExecError::Internal(m) => ChainError::Internal(m),
        }
    }
}

/// A mined block: its header (with hash) and its transactions' hashes.
#[derive(Debug, Clone)]
pub struct BlockRecord {
    /// The header; `hash` is the keccak of its RLP encoding.
    pub header: alloy_rpc_types_eth::Header,
    /// Transaction hashes, in order.
    pub transactions: Vec<B256>,
}

/// A mined transaction and its receipt, as the RPC serves them.
#[derive(Debug, Clone)]
pub struct MinedTx {
    /// The transaction with its block position.
    pub tx: Transaction,
    /// Its receipt.
    pub receipt: TransactionReceipt,
}

/// A signed transaction waiting in the mempool.
#[derive(Debug, Clone)]
pub struct PendingTx {
    /// The envelope.
    pub envelope: TxEnvelope,
    /// The recovered sender.
    pub from: Address,
    /// Its hash.
    pub hash: B256,
}

/// The whole chain.
#[derive(Debug)]
pub struct Chain {
    chain_id: u64,
    automine: bool,
    blocks: Vec<BlockRecord>,
    by_hash: HashMap<B256, u64>,
    txs: HashMap<B256, MinedTx>,
    /// State after each of the most recent blocks.
    states: VecDeque<(u64, Arc<InMemoryDB>)>,
    /// The mempool, by sender and nonce.
    pool: BTreeMap<(Address, u64), PendingTx>,
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Chain {
    /// A chain whose block 0 has `genesis` as its state.
    pub fn new(chain_id: u64, genesis: InMemoryDB, timestamp: u64) -> Self {
        let header = Header {
            number: 0,
            timestamp,
            gas_limit: BLOCK_GAS_LIMIT,
            base_fee_per_gas: Some(INITIAL_BASE_FEE),
            transactions_root: calculate_transaction_root::<TxEnvelope>(&[]),
            receipts_root: calculate_receipt_root::<ReceiptEnvelope>(&[]),
            ommers_hash: alloy_consensus::constants::EMPTY_OMMER_ROOT_HASH,
            state_root: state_digest(&genesis),
            withdrawals_root: Some(alloy_consensus::constants::EMPTY_WITHDRAWALS),
            blob_gas_used: Some(0),
            excess_blob_gas: Some(0),
            parent_beacon_block_root: Some(B256::ZERO),
            requests_hash: Some(alloy_eips::eip7685::EMPTY_REQUESTS_HASH),
            ..Header::default()
        };
        let header = alloy_rpc_types_eth::Header::new(header);
        let mut by_hash = HashMap::new();
        by_hash.insert(header.hash, 0);
        let mut states = VecDeque::new();
        states.push_back((0, Arc::new(genesis)));
        Self {
            chain_id,
            automine: true,
            blocks: vec![BlockRecord {
                header,
                transactions: Vec::new(),
            }],
            by_hash,
            txs: HashMap::new(),
            states,
            pool: BTreeMap::new(),
        }
    }

    /// The chain id.
    pub fn chain_id(&self) -> u64 {
        self.chain_id
    }

    /// Whether each transaction is mined into its own block on arrival.
    pub fn automine(&self) -> bool {
        self.automine
    }

    /// Turns automine on or off (`evm_setAutomine`).
    pub fn set_automine(&mut self, on: bool) {
        self.automine = on;
    }

    /// The latest block's number.
    pub fn head_number(&self) -> u64 {
        self.blocks.len() as u64 - 1
    }

    fn head(&self) -> &BlockRecord {
        &self.blocks[self.blocks.len() - 1]
    }

    fn head_state(&self) -> Arc<InMemoryDB> {
        Arc::clone(
            &self
                .states
                .back()
                .expect("the genesis state is always kept")
                .1,
        )
    }

    /// The base fee of the next block (EIP-1559 from the head's gas use).
    pub fn next_base_fee(&self) -> u64 {
        let head = &self.head().header.inner;
        calc_next_block_base_fee(
            head.gas_used,
            head.gas_limit,
            head.base_fee_per_gas.unwrap_or(INITIAL_BASE_FEE),
            BaseFeeParams::ethereum(),
        )
    }

    /// The block number a tag means (`pending` is the head: its state is the head's).
    pub fn resolve(&self, tag: BlockNumberOrTag) -> Result<u64, ChainError> {
        let n = match tag {
            BlockNumberOrTag::Earliest => 0,
            BlockNumberOrTag::Number(n) => n,
            _ => self.head_number(),
        };
        if n > self.head_number() {
            return Err(ChainError::UnknownBlock(format!(
                "block {n} is beyond the head ({})",
                self.head_number()
            )));
        }
        Ok(n)
    }

    /// The number of the block with `hash`.
    pub fn number_of(&self, hash: B256) -> Option<u64> {
        self.by_hash.get(&hash).copied()
    }

    /// The block `n`.
    pub fn block(&self, n: u64) -> Option<&BlockRecord> {
        self.blocks.get(usize::try_from(n).ok()?)
    }

    /// A mined transaction by hash.
    pub fn mined(&self, hash: &B256) -> Option<&MinedTx> {
        self.txs.get(hash)
    }

    /// A transaction waiting in the mempool, by hash.
    pub fn pending_tx(&self, hash: &B256) -> Option<&PendingTx> {
        self.pool.values().find(|p| p.hash == *hash)
    }

    /// The mempool, by sender and nonce.
    pub fn pool(&self) -> &BTreeMap<(Address, u64), PendingTx> {
        &self.pool
    }

    fn state(&self, n: u64) -> Result<Arc<InMemoryDB>, ChainError> {
        self.states
            .iter()
            .rev()
            .find(|(m, _)| *m == n)
            .map(|(_, db)| Arc::clone(db))
            .ok_or_else(|| {
                ChainError::UnknownBlock(format!(
                    "state of block {n} is not kept (only the last {STATE_HISTORY} blocks)"
                ))
            })
    }

    /// An account at block `n`.
    pub fn account(&self, address: Address, n: u64) -> Result<AccountInfo, ChainError> {
        let db = self.state(n)?;
        Ok(db
            .basic_ref(address)
            .map_err(|e| ChainError::Internal(e.to_string()))?
            .unwrap_or_default())
    }

    /// The code at `address` at block `n`.
    pub fn code(&self, address: Address, n: u64) -> Result<Bytes, ChainError> {
        let db = self.state(n)?;
        let Some(info) = db
            .basic_ref(address)
            .map_err(|e| ChainError::Internal(e.to_string()))?
        else {
            return Ok(Bytes::new());
        };
        let code = match info.code {
            Some(code) => code,
            None => db
                .code_by_hash_ref(info.code_hash)
                .map_err(|e| ChainError::Internal(e.to_string()))?,
        };
        Ok(code.original_bytes())
    }

    /// A storage slot at block `n`.
    pub fn storage(&self, address: Address, slot: U256, n: u64) -> Result<U256, ChainError> {
        self.state(n)?
            .storage_ref(address, slot)
            .map_err(|e| ChainError::Internal(e.to_string()))
    }

    /// The next nonce of `address`, counting its transactions in the mempool.
    pub fn pending_nonce(&self, address: Address) -> Result<u64, ChainError> {
        let mut nonce = self.account(address, self.head_number())?.nonce;
        while self.pool.contains_key(&(address, nonce)) {
            nonce += 1;
        }
        Ok(nonce)
    }

    /// The environment of the block being built on the head.
    fn next_block_env(&self, timestamp: Option<u64>) -> BlockEnv {
        let head = &self.head().header.inner;
        BlockEnv {
            number: U256::from(head.number + 1),
            timestamp: U256::from(timestamp.unwrap_or_else(|| now_secs().max(head.timestamp))),
            gas_limit: BLOCK_GAS_LIMIT,
            basefee: self.next_base_fee(),
            prevrandao: Some(B256::ZERO),
            ..BlockEnv::default()
        }
    }

    fn block_env(&self, n: u64) -> BlockEnv {
        if n == self.head_number() {
            // Calls at the head see the next block, as on anvil: the time is now.
            return self.next_block_env(None);
        }
        let h = &self.blocks[n as usize].header.inner;
        BlockEnv {
            number: U256::from(h.number),
            timestamp: U256::from(h.timestamp),
            gas_limit: h.gas_limit,
            basefee: h.base_fee_per_gas.unwrap_or_default(),
            prevrandao: Some(B256::ZERO),
            ..BlockEnv::default()
        }
    }

    /// Runs `req` as `eth_call` on the state of block `n`; changes nothing.
    pub fn call(&self, req: &TransactionRequest, n: u64) -> Result<Bytes, ChainError> {
        self.call_with_overrides(req, n, None)
    }

    /// `eth_call` with geth's state override set: the accounts' balance, nonce, code and
    /// storage are replaced for this call only. Facilitators run helper contracts this way
    /// (code that is never deployed), so the devnet must answer as geth and anvil do.
    pub fn call_with_overrides(
        &self,
        req: &TransactionRequest,
        n: u64,
        overrides: Option<&StateOverride>,
    ) -> Result<Bytes, ChainError> {
        let result = self.simulate_with(req, n, BLOCK_GAS_LIMIT, overrides)?;
        outcome(result).map(|(_, out)| out)
    }

    fn simulate(
        &self,
        req: &TransactionRequest,
        n: u64,
        gas: u64,
    ) -> Result<ExecutionResult, ChainError> {
        self.simulate_with(req, n, gas, None)
    }

    fn simulate_with(
        &self,
        req: &TransactionRequest,
        n: u64,
        gas: u64,
        overrides: Option<&StateOverride>,
    ) -> Result<ExecutionResult, ChainError> {
        let snapshot = self.state(n)?;
        let mut db = CacheDB::new(&*snapshot);
        if let Some(overrides) = overrides {
            apply_overrides(&mut db, overrides)?;
        }
        let mut tx = executor::call_env(req, BLOCK_GAS_LIMIT);
        tx.gas_limit = tx.gas_limit.min(gas);
        Ok(executor::run(
            db,
            executor::cfg(self.chain_id, Mode::Call),
            self.block_env(n),
            tx,
            false,
        )?)
    }

    /// The least gas with which `req` succeeds (binary search, as geth), or why it fails.
    pub fn estimate_gas(&self, req: &TransactionRequest, n: u64) -> Result<u64, ChainError> {
        let cap = req.gas.unwrap_or(BLOCK_GAS_LIMIT).min(BLOCK_GAS_LIMIT);
        let first = self.simulate(req, n, cap)?;
        let used = executor::gas_used(&first);
        outcome(first)?;
        let succeeds = |gas: u64| {
            self.simulate(req, n, gas)
                .map(|r| r.is_success())
                .unwrap_or(false)
        };
        if succeeds(used) {
            return Ok(used);
        }
        let (mut lo, mut hi) = (used, cap);
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if succeeds(mid) {
                hi = mid;
            } else {
                lo = mid;
            }
        }
        Ok(hi)
    }

    /// Decodes, checks and accepts a signed transaction: mined at once with automine, else
    /// queued. Nothing changes when it is refused.
    pub fn send_raw(&mut self, raw: &[u8]) -> Result<B256, ChainError> {
        let mut buf = raw;
        let envelope = TxEnvelope::decode_2718(&mut buf).map_err(|e| {
            ChainError::Rejected(format!("failed to decode signed transaction: {e}"))
        })?;
        if !buf.is_empty() {
            return Err(ChainError::Rejected(
                "failed to decode signed transaction: trailing bytes".into(),
            ));
        }
        match envelope {
            TxEnvelope::Legacy(_) | TxEnvelope::Eip2930(_) | TxEnvelope::Eip1559(_) => {}
            _ => {
                return Err(ChainError::Rejected(
                    "transaction type not supported by this devnet (legacy, EIP-2930 and \
                     EIP-1559 only)"
                        .into(),
                ))
            }
        }
        let hash = *envelope.tx_hash();
        if self.txs.contains_key(&hash) || self.pending_tx(&hash).is_some() {
            return Err(ChainError::Rejected("already known".into()));
        }
        match envelope.chain_id() {
            None => {
                return Err(ChainError::Rejected(
                    "only replay-protected (EIP-155) transactions allowed over RPC".into(),
                ))
            }
            Some(id) if id != self.chain_id => {
                return Err(ChainError::Rejected(format!(
                    "invalid chain id for signer: have {id} want {}",
                    self.chain_id
                )))
            }
            Some(_) => {}
        }
        let from = envelope
            .recover_signer()
            .map_err(|e| ChainError::Rejected(format!("invalid sender: {e}")))?;
        let pending = PendingTx {
            envelope,
            from,
            hash,
        };
        tracing::debug!(%hash, %from, nonce = pending.envelope.nonce(), "transaction received");
        if self.automine && self.pool.is_empty() {
            // Refused by the EVM (nonce, funds, fees, gas): nothing is mined, nothing changes.
            self.mine_block(vec![pending], true, None)?;
        } else if self.automine {
            // Automine was turned back on with transactions still waiting: mine them all.
            self.enqueue(pending)?;
            self.mine(None)?;
        } else {
            self.enqueue(pending)?;
        }
        Ok(hash)
    }

    fn enqueue(&mut self, tx: PendingTx) -> Result<(), ChainError> {
        let state = self.account(tx.from, self.head_number())?;
        let nonce = tx.envelope.nonce();
        if nonce < state.nonce {
            return Err(ChainError::Rejected(format!(
                "nonce too low: next nonce {}, tx nonce {nonce}",
                state.nonce
            )));
        }
        let next = self.pending_nonce(tx.from)?;
        if nonce > next {
            return Err(ChainError::Rejected(format!(
                "nonce too high: next nonce {next}, tx nonce {nonce}"
            )));
        }
        let cost = U256::from(tx.envelope.gas_limit())
            .saturating_mul(U256::from(tx.envelope.max_fee_per_gas()))
            .saturating_add(tx.envelope.value());
        if cost > state.balance {
            return Err(ChainError::Rejected(format!(
                "insufficient funds for gas * price + value: balance {}, tx cost {cost}",
                state.balance
            )));
        }
        if tx.envelope.gas_limit() > BLOCK_GAS_LIMIT {
            return Err(ChainError::Rejected("exceeds block gas limit".into()));
        }
        if let Some(old) = self.pool.get(&(tx.from, nonce)) {
            // A replacement must raise both fees by at least 10%, as geth and anvil require.
            let bumped = |new: u128, old: u128| new >= old + old.div_ceil(10);
            let tip = |t: &TxEnvelope| t.max_priority_fee_per_gas().unwrap_or(t.max_fee_per_gas());
            if !bumped(
                tx.envelope.max_fee_per_gas(),
                old.envelope.max_fee_per_gas(),
            ) || !bumped(tip(&tx.envelope), tip(&old.envelope))
            {
                return Err(ChainError::Rejected(
                    "replacement transaction underpriced".into(),
                ));
            }
            tracing::debug!(old = %old.hash, new = %tx.hash, "mempool transaction replaced");
        }
        self.pool.insert((tx.from, nonce), tx);
        Ok(())
    }

    /// Mines one block with every executable transaction of the mempool (`evm_mine`).
    pub fn mine(&mut self, timestamp: Option<u64>) -> Result<u64, ChainError> {
        let pool = std::mem::take(&mut self.pool);
        // Highest tip first across senders; each sender's transactions in nonce order.
        let mut by_sender: BTreeMap<Address, Vec<PendingTx>> = BTreeMap::new();
        for ((from, _), tx) in pool {
            by_sender.entry(from).or_default().push(tx);
        }
        let mut ordered: Vec<PendingTx> = Vec::new();
        let mut queues: Vec<VecDeque<PendingTx>> =
            by_sender.into_values().map(VecDeque::from).collect();
        let base_fee = self.next_base_fee();
        loop {
            let best = queues
                .iter()
                .enumerate()
                .filter_map(|(i, q)| {
                    q.front()
                        .map(|t| (i, t.envelope.effective_tip_per_gas(base_fee)))
                })
                .max_by_key(|(_, tip)| tip.unwrap_or(0));
            let Some((i, _)) = best else { break };
            if let Some(tx) = queues[i].pop_front() {
                ordered.push(tx);
            }
        }
        self.mine_block(ordered, false, timestamp)
    }

    /// Builds a block on the head from `txs`. With `strict`, an invalid transaction fails the
    /// whole call and nothing changes; otherwise invalid ones are dropped.
    fn mine_block(
        &mut self,
        txs: Vec<PendingTx>,
        strict: bool,
        timestamp: Option<u64>,
    ) -> Result<u64, ChainError> {
        let env = self.next_block_env(timestamp);
        let number = self.head_number() + 1;
        let base_fee = env.basefee;
        let mut db = (*self.head_state()).clone();
        let mut included: Vec<(PendingTx, ExecutionResult, u64)> = Vec::new();
        let mut cumulative = 0u64;
        for tx in txs {
            let tx_env = executor::tx_env(&tx.envelope, tx.from);
            if cumulative.saturating_add(tx_env.gas_limit) > BLOCK_GAS_LIMIT {
                if strict {
                    return Err(ChainError::Rejected("exceeds block gas limit".into()));
                }
                // Left for the next block.
                self.pool.insert((tx.from, tx.envelope.nonce()), tx);
                continue;
            }
            match executor::run(
                &mut db,
                executor::cfg(self.chain_id, Mode::Transact),
                env.clone(),
                tx_env,
                true,
            ) {
                Ok(result) => {
                    cumulative += executor::gas_used(&result);
                    included.push((tx, result, cumulative));
                }
                Err(e) if strict => return Err(e.into()),
                Err(e) => {
                    tracing::warn!(hash = %tx.hash, error = %e, "dropping invalid mempool transaction");
                }
            }
        }
        db.cache.logs.clear();

        // Receipts with consensus logs first (for the roots), then the RPC objects.
        let mut receipts = Vec::with_capacity(included.len());
        for (tx, result, cumulative) in &included {
            let logs = match result {
                ExecutionResult::Success { logs, .. }
                | ExecutionResult::Revert { logs, .. }
                | ExecutionResult::Halt { logs, .. } => logs.clone(),
            };
            let bloom = logs_bloom(logs.iter());
            let receipt = Receipt {
                status: Eip658Value::Eip658(result.is_success()),
                cumulative_gas_used: *cumulative,
                logs,
            };
            receipts.push(ReceiptEnvelope::from_typed(
                tx.envelope.tx_type(),
                ReceiptWithBloom::new(receipt, bloom),
            ));
        }
        let envelopes: Vec<TxEnvelope> =
            included.iter().map(|(t, ..)| t.envelope.clone()).collect();
        let parent = &self.head().header;
        let header = Header {
            parent_hash: parent.hash,
            ommers_hash: alloy_consensus::constants::EMPTY_OMMER_ROOT_HASH,
            beneficiary: env.beneficiary,
            state_root: state_digest(&db),
            transactions_root: calculate_transaction_root(&envelopes),
            receipts_root: calculate_receipt_root(&receipts),
            logs_bloom: receipts.iter().fold(Default::default(), |acc, r| {
                let mut acc: alloy_primitives::Bloom = acc;
                acc.accrue_bloom(r.logs_bloom());
                acc
            }),
            number,
            gas_limit: BLOCK_GAS_LIMIT,
            gas_used: cumulative,
            timestamp: env.timestamp.saturating_to(),
            base_fee_per_gas: Some(base_fee),
            withdrawals_root: Some(alloy_consensus::constants::EMPTY_WITHDRAWALS),
            blob_gas_used: Some(0),
            excess_blob_gas: Some(0),
            parent_beacon_block_root: Some(B256::ZERO),
            requests_hash: Some(alloy_eips::eip7685::EMPTY_REQUESTS_HASH),
            ..Header::default()
        };
        let header = alloy_rpc_types_eth::Header::new(header);
        let block_hash = header.hash;
        let timestamp = header.inner.timestamp;

        let mut log_index = 0u64;
        let mut hashes = Vec::with_capacity(included.len());
        for (index, ((tx, result, _), receipt)) in included.into_iter().zip(receipts).enumerate() {
            let index = index as u64;
            let gas_used = executor::gas_used(&result);
            let effective_gas_price = tx.envelope.effective_gas_price(Some(base_fee));
            let to = tx.envelope.to();
            let contract_address = result.created_address();
            let hash = tx.hash;
            let receipt = receipt.map_logs(|inner| {
                let log = Log {
                    inner,
                    block_hash: Some(block_hash),
                    block_number: Some(number),
                    block_timestamp: Some(timestamp),
                    transaction_hash: Some(hash),
                    transaction_index: Some(index),
                    log_index: Some(log_index),
                    removed: false,
                };
                log_index += 1;
                log
            });
            let rpc_receipt = TransactionReceipt {
                inner: receipt,
                transaction_hash: hash,
                transaction_index: Some(index),
                block_hash: Some(block_hash),
                block_number: Some(number),
                gas_used,
                effective_gas_price,
                blob_gas_used: None,
                blob_gas_price: None,
                from: tx.from,
                to,
                contract_address,
            };
            let rpc_tx = Transaction {
                inner: Recovered::new_unchecked(tx.envelope, tx.from),
                block_hash: Some(block_hash),
                block_number: Some(number),
                transaction_index: Some(index),
                effective_gas_price: Some(effective_gas_price),
                block_timestamp: Some(timestamp),
            };
            self.txs.insert(
                hash,
                MinedTx {
                    tx: rpc_tx,
                    receipt: rpc_receipt,
                },
            );
            hashes.push(hash);
        }
        tracing::debug!(number, hash = %block_hash, txs = hashes.len(), "block mined");
        self.by_hash.insert(block_hash, number);
        self.blocks.push(BlockRecord {
            header,
            transactions: hashes,
        });
        self.states.push_back((number, Arc::new(db)));
        while self.states.len() > STATE_HISTORY {
            self.states.pop_front();
        }
        Ok(number)
    }

    /// Edits the head state in place (for `anvil_setBalance` and friends).
    fn edit_head(&mut self, edit: impl FnOnce(&mut InMemoryDB)) {
        if let Some((_, db)) = self.states.back_mut() {
            edit(Arc::make_mut(db));
        }
    }

    /// Sets an account's ETH balance at the head (`anvil_setBalance`).
    pub fn set_balance(&mut self, address: Address, balance: U256) -> Result<(), ChainError> {
        let mut info = self.account(address, self.head_number())?;
        info.balance = balance;
        self.edit_head(|db| db.insert_account_info(address, info));
        Ok(())
    }

    /// Sets an account's nonce at the head (`anvil_setNonce`).
    pub fn set_nonce(&mut self, address: Address, nonce: u64) -> Result<(), ChainError> {
        let mut info = self.account(address, self.head_number())?;
        info.nonce = nonce;
        self.edit_head(|db| db.insert_account_info(address, info));
        Ok(())
    }

    /// Sets an account's code at the head (`anvil_setCode`).
    pub fn set_code(&mut self, address: Address, code: Bytes) -> Result<(), ChainError> {
        let mut info = self.account(address, self.head_number())?;
        let bytecode = Bytecode::new_raw(code);
        info.code_hash = bytecode.hash_slow();
        info.code = Some(bytecode);
        self.edit_head(|db| db.insert_account_info(address, info));
        Ok(())
    }

    /// The logs matching `filter`.
    pub fn logs(&self, filter: &Filter) -> Result<Vec<Log>, ChainError> {
        let (from, to) = match filter.block_option {
            FilterBlockOption::AtBlockHash(hash) => {
                let n = self
                    .number_of(hash)
                    .ok_or_else(|| ChainError::UnknownBlock(format!("unknown block {hash}")))?;
                (n, n)
            }
            FilterBlockOption::Range {
                from_block,
                to_block,
            } => {
                let resolve = |tag: Option<BlockNumberOrTag>| match tag {
                    None => Ok(self.head_number()),
                    Some(BlockNumberOrTag::Number(n)) => Ok(n.min(self.head_number())),
                    Some(t) => self.resolve(t),
                };
                (resolve(from_block)?, resolve(to_block)?)
            }
        };
        if from > to {
            return Ok(Vec::new());
        }
        if to - from > MAX_LOG_RANGE {
            return Err(ChainError::InvalidParams(format!(
                "block range too large: at most {MAX_LOG_RANGE} blocks"
            )));
        }
        let mut out = Vec::new();
        for n in from..=to {
            let Some(block) = self.block(n) else { break };
            for hash in &block.transactions {
                let Some(mined) = self.txs.get(hash) else {
                    continue;
                };
                for log in mined.receipt.inner.logs() {
                    if filter.matches_address(log.address()) && filter.matches_topics(log.topics())
                    {
                        out.push(log.clone());
                    }
                }
            }
        }
        Ok(out)
    }
}

/// A digest of the whole state, standing in for the state trie's root (the devnet keeps no
/// Merkle-Patricia trie; the value changes exactly when the state does).
fn state_digest(db: &InMemoryDB) -> B256 {
    let mut accounts: Vec<_> = db.cache.accounts.iter().collect();
    accounts.sort_by_key(|(a, _)| **a);
    let mut buf = Vec::new();
    for (address, account) in accounts {
        buf.extend_from_slice(address.as_slice());
        buf.extend_from_slice(&account.info.balance.to_be_bytes::<32>());
        buf.extend_from_slice(&account.info.nonce.to_be_bytes());
        buf.extend_from_slice(account.info.code_hash.as_slice());
        let mut slots: Vec<_> = account.storage.iter().collect();
        slots.sort_by_key(|(k, _)| **k);
        for (k, v) in slots {
            buf.extend_from_slice(&k.to_be_bytes::<32>());
            buf.extend_from_slice(&v.to_be_bytes::<32>());
        }
    }
    keccak256(buf)
}

/// A successful result's gas and output, or the revert/halt as an error.
fn outcome(result: ExecutionResult) -> Result<(u64, Bytes), ChainError> {
    let gas = executor::gas_used(&result);
    match result {
        ExecutionResult::Success { output, .. } => Ok((gas, output.into_data())),
        ExecutionResult::Revert { output, .. } => Err(ChainError::Reverted {
            reason: decode_revert_reason(&output),
            data: output,
        }),
        ExecutionResult::Halt { reason, .. } => Err(ChainError::Halted(format!("{reason:?}"))),
    }
}

/// The string of an `Error(string)` revert, if that is what `data` is.
fn decode_revert_reason(data: &[u8]) -> Option<String> {
    use alloy_sol_types::SolError;
    alloy_sol_types::Revert::abi_decode(data)
        .ok()
        .map(|r| r.reason)
}

/// Encodes a transaction for `eth_getRawTransactionByHash`-style uses and tests.
pub fn encode(tx: &TxEnvelope) -> Bytes {
    tx.encoded_2718().into()
}

/// Applies a state override set to a call's throw-away state.
fn apply_overrides<DB: DatabaseRef>(
    db: &mut CacheDB<DB>,
    overrides: &StateOverride,
) -> Result<(), ChainError>
where
    DB::Error: std::fmt::Display,
{
    for (address, o) in overrides {
        if o.move_precompile_to.is_some() {
            return Err(ChainError::InvalidParams(
                "state override movePrecompileToAddress is not supported".into(),
            ));
        }
        if o.state.is_some() && o.state_diff.is_some() {
            return Err(ChainError::InvalidParams(format!(
                "state override of {address}: state and stateDiff are exclusive"
            )));
        }
        let mut info = db
            .basic_ref(*address)
            .map_err(|e| ChainError::Internal(e.to_string()))?
            .unwrap_or_default();
        if let Some(balance) = o.balance {
            info.balance = balance;
        }
        if let Some(nonce) = o.nonce {
            info.nonce = nonce;
        }
        if let Some(code) = &o.code {
            let bytecode = Bytecode::new_raw(code.clone());
            info.code_hash = bytecode.hash_slow();
            info.code = Some(bytecode);
        } else if info.code.is_none() && info.code_hash != revm::primitives::KECCAK_EMPTY {
            // Keep the account's own code when only its balance or storage is overridden.
            info.code = Some(
                db.code_by_hash_ref(info.code_hash)
                    .map_err(|e| ChainError::Internal(e.to_string()))?,
            );
        }
        db.insert_account_info(*address, info);
        if let Some(state) = &o.state {
            let slots = state
                .iter()
                .map(|(k, v)| (U256::from_be_bytes(k.0), U256::from_be_bytes(v.0)))
                .collect();
            db.replace_account_storage(*address, slots)
                .map_err(|e| ChainError::Internal(e.to_string()))?;
        }
        if let Some(diff) = &o.state_diff {
            for (k, v) in diff {
                db.insert_account_storage(
                    *address,
                    U256::from_be_bytes(k.0),
                    U256::from_be_bytes(v.0),
                )
                .map_err(|e| ChainError::Internal(e.to_string()))?;
            }
        }
    }
    Ok(())
}
