//! The ledger: litesvm, plus what a validator puts around it.
//!
//! litesvm executes transactions with the real runtime and programs, but it knows a single
//! blockhash and no slots. A validator accepts any of the last [`MAX_PROCESSING_AGE`]
//! blockhashes, so a transaction signed a few seconds ago still lands after the chain moved
//! on, and a stale one is refused with `BlockhashNotFound`. [`Chain`] therefore runs litesvm
//! with its blockhash check and its signature verification off and does, in a validator's
//! order, what `sendTransaction`/`simulateTransaction` do:
//!
//! 1. sanitize (and resolve address lookup tables) — a malformed transaction is refused;
//! 2. verify signatures (always when sending with preflight; on request when simulating);
//! 3. check the blockhash's age against the queue of recent blockhashes;
//! 4. check the status cache (litesvm's signature history): `AlreadyProcessed`;
//! 5. execute.
//!
//! The status cache is litesvm's signature history: it survives blockhash changes
//! (`expire_blockhash` leaves it alone) and records successes and fee-paying failures, as a
//! validator's does — but litesvm consults it only when its own signature verification is
//! on, so step 4 is done here, for sends and simulations alike.
//!
//! Every slot gets a fresh blockhash (derived from the previous one) and block height =
//! slot. Executed transactions are recorded with their slot, time, balances and logs for
//! `getSignatureStatuses` and `getTransaction`.

use std::collections::{HashMap, HashSet, VecDeque};

use litesvm::types::TransactionMetadata;
use litesvm::LiteSVM;
use solana_account::Account;
use solana_address::Address;
use solana_clock::Clock;
use solana_hash::Hash;
use solana_instruction::{AccountMeta, Instruction};
use solana_message::inner_instruction::InnerInstructionsList;
use solana_message::v0::LoadedAddresses;
use solana_message::{Message, VersionedMessage};
use solana_signature::Signature;
use solana_signer::Signer;
use solana_transaction::sanitized::{MessageHash, SanitizedTransaction};
use solana_transaction::versioned::VersionedTransaction;
use solana_transaction_error::TransactionError;

use crate::genesis::{self, DevAccount};
use crate::token::{self, TokenState, COMPUTE_BUDGET_PROGRAM, MEMO_PROGRAM, SYSTEM_PROGRAM};
use crate::SvmDevnetError;

/// How many blocks a blockhash stays usable: a transaction is valid while the block height
/// is at most the height of its blockhash plus this (Agave's `MAX_PROCESSING_AGE`).
pub const MAX_PROCESSING_AGE: u64 = 150;

/// The base fee per signature, in lamports.
pub const LAMPORTS_PER_SIGNATURE: u64 = 5_000;

/// How many executed transactions the status cache and the transaction store keep (the
/// oldest go first). Deduplication needs only the last 150 slots' worth.
pub const HISTORY_CAPACITY: usize = 10_000;

/// Slots per epoch (mainnet's and devnet's, without warm-up).
pub const SLOTS_PER_EPOCH: u64 = 432_000;

/// The compute-unit limit per instruction when a transaction sets none.
const DEFAULT_INSTRUCTION_COMPUTE_UNIT_LIMIT: u64 = 200_000;

/// The highest compute-unit limit a transaction may set.
const MAX_COMPUTE_UNIT_LIMIT: u64 = 1_400_000;

/// Why a transaction was refused before it could be simulated or executed (a JSON-RPC error,
/// not a transaction result).
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    /// It does not sanitize (bad indexes, unknown lookup table, …).
    #[error("invalid transaction: {0}")]
    Invalid(TransactionError),
    /// A signature does not verify.
    #[error("Transaction signature verification failure")]
    Signature,
    /// Preflight simulation failed (`sendTransaction` without `skipPreflight`).
    #[error("Transaction simulation failed: {}", .0.err.as_ref().map(ToString::to_string).unwrap_or_default())]
    Preflight(Box<Simulation>),
}

/// What a simulation (or a preflight) found.
#[derive(Debug, Clone, Default)]
pub struct Simulation {
    /// The transaction error, `None` on success.
    pub err: Option<TransactionError>,
    /// Program logs.
    pub logs: Vec<String>,
    /// Compute units consumed.
    pub units_consumed: u64,
    /// The fee it would pay.
    pub fee: u64,
    /// The last program's return data: `(program, data)`.
    pub return_data: Option<(Address, Vec<u8>)>,
    /// Inner instructions, per top-level instruction.
    pub inner_instructions: InnerInstructionsList,
    /// The accounts the transaction loaded, as they would be after it.
    pub post_accounts: Vec<(Address, Account)>,
    /// The blockhash simulated against, with `replaceRecentBlockhash`: `(hash, last valid
    /// block height)`.
    pub replacement_blockhash: Option<(Hash, u64)>,
}

/// A token balance in a transaction's accounts (for `pre/postTokenBalances`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenBalance {
    /// Index into the transaction's account keys.
    pub account_index: usize,
    /// The mint.
    pub mint: Address,
    /// The token account's owner.
    pub owner: Address,
    /// The token program.
    pub program: Address,
    /// The balance, in base units.
    pub amount: u64,
    /// The mint's decimals.
    pub decimals: u8,
}

/// An executed transaction (successful, or failed after paying its fee).
#[derive(Debug, Clone)]
pub struct Record {
    /// The slot it executed in.
    pub slot: u64,
    /// Unix time of execution.
    pub block_time: i64,
    /// The transaction as received.
    pub transaction: VersionedTransaction,
    /// Addresses loaded from lookup tables.
    pub loaded: LoadedAddresses,
    /// Whether each account key (static, then loaded) was writable.
    pub writable: Vec<bool>,
    /// The error, `None` on success.
    pub err: Option<TransactionError>,
    /// Logs, compute units, inner instructions, return data and fee.
    pub meta: TransactionMetadata,
    /// Lamports of each account key before.
    pub pre_balances: Vec<u64>,
    /// Lamports of each account key after.
    pub post_balances: Vec<u64>,
    /// Token balances before.
    pub pre_token_balances: Vec<TokenBalance>,
    /// Token balances after.
    pub post_token_balances: Vec<TokenBalance>,
}

/// litesvm plus slots, the blockhash queue and the transaction store.
pub struct Chain {
    svm: LiteSVM,
    slot: u64,
    /// Recent blockhashes, oldest first, with the block height each was produced at.
    blockhashes: VecDeque<(Hash, u64)>,
    records: HashMap<Signature, Record>,
    /// Signatures of `records`, oldest first (for eviction).
    order: VecDeque<Signature>,
    transaction_count: u64,
    airdrops: u64,
}

impl std::fmt::Debug for Chain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Chain")
            .field("slot", &self.slot)
            .field("transactions", &self.transaction_count)
            .finish_non_exhaustive()
    }
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

impl Chain {
    /// A chain at genesis: litesvm with the SPL programs, the genesis accounts written in.
    pub fn new(accounts: &[DevAccount]) -> Result<Self, SvmDevnetError> {
        let mut svm = LiteSVM::new()
            .with_sigverify(false)
            .with_blockhash_check(false)
            .with_transaction_history(HISTORY_CAPACITY);
        genesis::install(&mut svm, accounts)?;
        // Start at the slot litesvm's clock starts at: its programs are deployed there, and
        // a program is only visible from its deployment slot on.
        let slot = svm.get_sysvar::<Clock>().slot;
        let mut chain = Self {
            svm,
            slot,
            blockhashes: VecDeque::new(),
            records: HashMap::new(),
            order: VecDeque::new(),
            transaction_count: 0,
            airdrops: 0,
        };
        chain.set_clock();
        let genesis_blockhash = chain.svm.latest_blockhash();
        chain.blockhashes.push_back((genesis_blockhash, slot));
        Ok(chain)
    }

    /// The current slot.
    pub fn slot(&self) -> u64 {
        self.slot
    }

    /// The current block height (one block per slot).
    pub fn block_height(&self) -> u64 {
        self.slot
    }

    /// Transactions executed so far.
    pub fn transaction_count(&self) -> u64 {
        self.transaction_count
    }

    /// The latest blockhash and the last block height at which a transaction using it lands.
    pub fn latest_blockhash(&self) -> (Hash, u64) {
        (
            self.svm.latest_blockhash(),
            self.block_height() + MAX_PROCESSING_AGE,
        )
    }

    /// Whether a transaction with this recent blockhash would still be accepted.
    pub fn is_blockhash_valid(&self, hash: &Hash) -> bool {
        self.blockhashes.iter().any(|(h, _)| h == hash)
    }

    /// Advances `n` slots, each with a fresh blockhash; blockhashes older than
    /// [`MAX_PROCESSING_AGE`] blocks leave the queue.
    pub fn advance(&mut self, n: u64) {
        for _ in 0..n {
            self.slot += 1;
            self.svm.expire_blockhash();
            self.set_clock();
            let hash = self.svm.latest_blockhash();
            self.blockhashes.push_back((hash, self.slot));
            while self
                .blockhashes
                .front()
                .is_some_and(|(_, height)| height + MAX_PROCESSING_AGE < self.slot)
            {
                self.blockhashes.pop_front();
            }
        }
    }

    /// The Clock sysvar follows the slot, the wall clock and the epoch (what `warp_to_slot`
    /// does, plus the time programs read).
    fn set_clock(&mut self) {
        let mut clock = self.svm.get_sysvar::<Clock>();
        clock.slot = self.slot;
        clock.epoch = self.slot / SLOTS_PER_EPOCH;
        clock.leader_schedule_epoch = clock.epoch + 1;
        clock.unix_timestamp = now();
        self.svm.set_sysvar(&clock);
    }

    /// An account, `None` if it does not exist.
    pub fn account(&self, address: &Address) -> Option<Account> {
        self.svm.get_account(address).filter(|a| {
            // litesvm keeps closed accounts as empty system accounts; a node reports them
            // as absent.
            a.lamports > 0 || !a.data.is_empty() || a.executable
        })
    }

    /// Lamports of an account (0 if absent).
    pub fn lamports(&self, address: &Address) -> u64 {
        self.svm.get_balance(address).unwrap_or(0)
    }

    /// All accounts a program owns.
    pub fn program_accounts(&self, program: &Address) -> Vec<(Address, Account)> {
        self.svm.get_program_accounts(program)
    }

    /// The rent-exempt minimum of an account with `len` bytes of data.
    pub fn rent_exempt_minimum(&self, len: usize) -> u64 {
        self.svm.minimum_balance_for_rent_exemption(len)
    }

    /// An executed transaction.
    pub fn record(&self, signature: &Signature) -> Option<&Record> {
        self.records.get(signature)
    }

    /// The balance `owner`'s associated token account holds of `mint` (0 if none).
    pub fn token_balance(&self, owner: &Address, mint: &Address) -> u64 {
        let Some(mint_account) = self.svm.get_account(mint) else {
            return 0;
        };
        let ata = token::associated_token_address(owner, mint, &mint_account.owner);
        match self
            .account(&ata)
            .and_then(|a| token::unpack(&a.owner, &a.data))
        {
            Some(TokenState::Account(account, _)) if account.mint == *mint => account.amount,
            _ => 0,
        }
    }

    /// The decimals of `mint`, if it is a mint.
    pub fn mint_decimals(&self, mint: &Address) -> Option<u8> {
        let account = self.account(mint)?;
        match token::unpack(&account.owner, &account.data)? {
            TokenState::Mint(m, _) => Some(m.decimals),
            TokenState::Account(..) => None,
        }
    }

    fn sanitize(&self, tx: &VersionedTransaction) -> Result<SanitizedTransaction, Refused> {
        SanitizedTransaction::try_create(
            tx.clone(),
            MessageHash::Compute,
            Some(false),
            self.svm.accounts_db(),
            &HashSet::new(),
        )
        .map_err(Refused::Invalid)
    }

    /// The blockhash age check and the status cache, in a validator's order.
    fn check_age_and_status(&self, tx: &SanitizedTransaction) -> Result<(), TransactionError> {
        if !self.is_blockhash_valid(tx.message().recent_blockhash()) {
            return Err(TransactionError::BlockhashNotFound);
        }
        if self.svm.get_transaction(tx.signature()).is_some() {
            return Err(TransactionError::AlreadyProcessed);
        }
        Ok(())
    }

    /// Simulates `tx` without changing anything. `sig_verify`: verify signatures first;
    /// `replace_recent_blockhash`: simulate against the latest blockhash instead of the
    /// transaction's own. Blockhash and status-cache failures are results, not errors, as on
    /// a node.
    pub fn simulate(
        &self,
        mut tx: VersionedTransaction,
        sig_verify: bool,
        replace_recent_blockhash: bool,
    ) -> Result<Simulation, Refused> {
        let replacement = replace_recent_blockhash.then(|| {
            let (hash, last_valid) = self.latest_blockhash();
            tx.message.set_recent_blockhash(hash);
            (hash, last_valid)
        });
        let sanitized = self.sanitize(&tx)?;
        if sig_verify && sanitized.verify().is_err() {
            return Err(Refused::Signature);
        }
        let mut simulation = self.simulate_sanitized(tx, &sanitized);
        simulation.replacement_blockhash = replacement;
        Ok(simulation)
    }

    fn simulate_sanitized(
        &self,
        tx: VersionedTransaction,
        sanitized: &SanitizedTransaction,
    ) -> Simulation {
        if let Err(err) = self.check_age_and_status(sanitized) {
            return Simulation {
                err: Some(err),
                ..Simulation::default()
            };
        }
        match self.svm.simulate_transaction(tx) {
            Ok(info) => Simulation {
                post_accounts: info
                    .post_accounts
                    .into_iter()
                    .map(|(address, account)| (address, account.into()))
                    .collect(),
                ..simulation_from(None, info.meta)
            },
            Err(failed) => simulation_from(Some(failed.err), failed.meta),
        }
    }

    /// Sends `tx`: without `skip_preflight` its signatures are verified and it is simulated
    /// first, and a failure is refused with nothing changed. Then it executes at once. With
    /// `skip_preflight` a transaction a validator would drop (bad signature, unknown or
    /// expired blockhash, already processed) is dropped — its signature is returned and never
    /// gets a status — while one that fails in execution pays its fee and is recorded with
    /// its error.
    pub fn send(
        &mut self,
        tx: VersionedTransaction,
        skip_preflight: bool,
    ) -> Result<Signature, Refused> {
        let sanitized = self.sanitize(&tx)?;
        let signature = *sanitized.signature();
        let signatures_ok = sanitized.verify().is_ok();
        if !skip_preflight {
            if !signatures_ok {
                return Err(Refused::Signature);
            }
            let preflight = self.simulate_sanitized(tx.clone(), &sanitized);
            if preflight.err.is_some() {
                return Err(Refused::Preflight(Box::new(preflight)));
            }
        }
        if !signatures_ok {
            tracing::warn!(%signature, "dropped: signature verification failed");
            return Ok(signature);
        }
        if let Err(err) = self.check_age_and_status(&sanitized) {
            tracing::warn!(%signature, %err, "dropped");
            return Ok(signature);
        }
        self.execute(tx, &sanitized);
        Ok(signature)
    }

    fn execute(&mut self, tx: VersionedTransaction, sanitized: &SanitizedTransaction) {
        let signature = *sanitized.signature();
        let message = sanitized.message();
        let keys: Vec<Address> = message.account_keys().iter().copied().collect();
        let writable = (0..keys.len()).map(|i| message.is_writable(i)).collect();
        let loaded = sanitized.get_loaded_addresses();
        let pre_balances = keys.iter().map(|k| self.lamports(k)).collect();
        let pre_token_balances = self.token_balances(&keys);
        let (err, meta) = match self.svm.send_transaction(tx.clone()) {
            Ok(meta) => (None, meta),
            Err(failed) => (Some(failed.err), failed.meta),
        };
        // litesvm records what a block would include: successes, and failures that paid
        // their fee. Anything else (e.g. a fee payer without funds) is dropped.
        if self.svm.get_transaction(&signature).is_none() {
            tracing::warn!(
                %signature,
                err = %err.as_ref().map(ToString::to_string).unwrap_or_default(),
                "dropped: not executable"
            );
            return;
        }
        match &err {
            None => tracing::debug!(%signature, slot = self.slot, "executed"),
            Some(e) => tracing::debug!(%signature, slot = self.slot, err = %e, "executed, failed"),
        }
        let record = Record {
            slot: self.slot,
            block_time: now(),
            transaction: tx,
            loaded,
            writable,
            err,
            meta,
            post_balances: keys.iter().map(|k| self.lamports(k)).collect(),
            post_token_balances: self.token_balances(&keys),
            pre_balances,
            pre_token_balances,
        };
        self.transaction_count += 1;
        self.records.insert(signature, record);
        self.order.push_back(signature);
        while self.order.len() > HISTORY_CAPACITY {
            if let Some(old) = self.order.pop_front() {
                self.records.remove(&old);
            }
        }
    }

    fn token_balances(&self, keys: &[Address]) -> Vec<TokenBalance> {
        keys.iter()
            .enumerate()
            .filter_map(|(account_index, key)| {
                let account = self.account(key)?;
                let TokenState::Account(state, _) = token::unpack(&account.owner, &account.data)?
                else {
                    return None;
                };
                Some(TokenBalance {
                    account_index,
                    decimals: self.mint_decimals(&state.mint)?,
                    mint: state.mint,
                    owner: state.owner,
                    program: account.owner,
                    amount: state.amount,
                })
            })
            .collect()
    }

    /// Sends `lamports` from the faucet to `to` in a real, recorded transaction.
    pub fn airdrop(&mut self, to: &Address, lamports: u64) -> Result<Signature, Refused> {
        let faucet = genesis::faucet();
        self.airdrops += 1;
        let mut transfer_data = 2u32.to_le_bytes().to_vec();
        transfer_data.extend_from_slice(&lamports.to_le_bytes());
        let instructions = [
            Instruction {
                program_id: SYSTEM_PROGRAM,
                accounts: vec![
                    AccountMeta::new(faucet.pubkey(), true),
                    AccountMeta::new(*to, false),
                ],
                data: transfer_data,
            },
            // Makes every airdrop's signature unique, even two equal ones in one slot.
            Instruction {
                program_id: MEMO_PROGRAM,
                accounts: Vec::new(),
                data: format!("airdrop {}", self.airdrops).into_bytes(),
            },
        ];
        let message = Message::new_with_blockhash(
            &instructions,
            Some(&faucet.pubkey()),
            &self.svm.latest_blockhash(),
        );
        let tx = VersionedTransaction::try_new(VersionedMessage::Legacy(message), &[&faucet])
            .map_err(|_| Refused::Signature)?;
        self.send(tx, false)
    }

    /// The fee a message pays: the base fee per signature plus its priority fee.
    pub fn fee_for_message(&self, message: &VersionedMessage) -> u64 {
        let signatures = u64::from(message.header().num_required_signatures);
        let keys = message.static_account_keys();
        let mut limit = None;
        let mut price = 0u64;
        let mut others = 0u64;
        for ix in message.instructions() {
            let is_budget =
                keys.get(usize::from(ix.program_id_index)) == Some(&COMPUTE_BUDGET_PROGRAM);
            match (is_budget, ix.data.split_first()) {
                (true, Some((2, rest))) => {
                    limit = rest
                        .get(..4)
                        .and_then(|b| b.try_into().ok())
                        .map(|b| u64::from(u32::from_le_bytes(b)));
                }
                (true, Some((3, rest))) => {
                    price = rest
                        .get(..8)
                        .and_then(|b| b.try_into().ok())
                        .map(u64::from_le_bytes)
                        .unwrap_or(0);
                }
                (true, _) => {}
                (false, _) => others += 1,
            }
        }
        let limit = limit
            .unwrap_or(others * DEFAULT_INSTRUCTION_COMPUTE_UNIT_LIMIT)
            .min(MAX_COMPUTE_UNIT_LIMIT);
        let priority = (u128::from(price) * u128::from(limit)).div_ceil(1_000_000);
        signatures
            .saturating_mul(LAMPORTS_PER_SIGNATURE)
            .saturating_add(u64::try_from(priority).unwrap_or(u64::MAX))
    }
}

fn simulation_from(err: Option<TransactionError>, meta: TransactionMetadata) -> Simulation {
    let return_data = (!meta.return_data.data.is_empty())
        .then(|| (meta.return_data.program_id, meta.return_data.data.clone()));
    Simulation {
        err,
        logs: meta.logs,
        units_consumed: meta.compute_units_consumed,
        fee: meta.fee,
        return_data,
        inner_instructions: meta.inner_instructions,
        post_accounts: Vec::new(),
        replacement_blockhash: None,
    }
}
