//! The EVM: revm configured for the devnet, and conversions between alloy's transaction types
//! and revm's environment.

use alloy_consensus::{Transaction as _, TxEnvelope};
use alloy_primitives::{Address, Bytes, TxKind, U256};
use alloy_rpc_types_eth::TransactionRequest;
use revm::context::result::{EVMError, ExecutionResult, InvalidTransaction};
use revm::context::{BlockEnv, CfgEnv, TxEnv};
use revm::primitives::hardfork::SpecId;
use revm::{
    Context, Database, DatabaseCommit, ExecuteCommitEvm, ExecuteEvm, MainBuilder, MainContext,
};

/// The hard fork the devnet runs (the one anvil defaults to).
pub const SPEC: SpecId = SpecId::PRAGUE;

/// Gas limit of every block.
pub const BLOCK_GAS_LIMIT: u64 = 30_000_000;

/// What executing one transaction can end in, short of a result.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ExecError {
    /// The transaction is invalid (nonce, funds, fees, gas): it is not included.
    #[error("{0}")]
    Invalid(String),
    /// The EVM itself failed (a database or internal error).
    #[error("EVM error: {0}")]
    Internal(String),
}

/// How a transaction is run: for real (nonce, balance and base fee checked) or as a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A transaction in a block.
    Transact,
    /// `eth_call` / `eth_estimateGas`: no nonce check, no base fee.
    Call,
}

/// The revm configuration of the devnet for `mode`.
pub fn cfg(chain_id: u64, mode: Mode) -> CfgEnv {
    let mut cfg = CfgEnv::new_with_spec(SPEC);
    cfg.chain_id = chain_id;
    if mode == Mode::Call {
        cfg.disable_nonce_check = true;
        cfg.disable_base_fee = true;
        // Calls may come "from" a contract (EIP-1271 wallets, Multicall3), as on geth.
        cfg.disable_eip3607 = true;
        // A call is not a signed transaction: nothing to replay. Clients (viem) estimate typed
        // transactions without a `chainId`, which geth and anvil fill in; revm would refuse.
        cfg.tx_chain_id_check = false;
    }
    cfg
}

/// Runs `tx` on `db`; commits the state change when `commit` is set.
pub fn run<DB>(
    db: DB,
    cfg: CfgEnv,
    block: BlockEnv,
    tx: TxEnv,
    commit: bool,
) -> Result<ExecutionResult, ExecError>
where
    DB: Database + DatabaseCommit,
{
    let mut evm = Context::mainnet()
        .with_db(db)
        .with_cfg(cfg)
        .with_block(block)
        .build_mainnet();
    let result = if commit {
        evm.transact_commit(tx)
    } else {
        evm.transact(tx).map(|r| r.result)
    };
    result.map_err(map_error)
}

fn map_error<E: std::fmt::Display>(err: EVMError<E, InvalidTransaction>) -> ExecError {
    match err {
        EVMError::Transaction(invalid) => ExecError::Invalid(invalid_message(&invalid)),
        EVMError::Header(h) => ExecError::Internal(format!("invalid block header: {h}")),
        EVMError::Database(e) => ExecError::Internal(e.to_string()),
        other => ExecError::Internal(other.to_string()),
    }
}

/// The message a geth-like node gives for an invalid transaction (client libraries match on
/// some of these strings, e.g. "nonce too low").
pub fn invalid_message(invalid: &InvalidTransaction) -> String {
    match invalid {
        InvalidTransaction::NonceTooLow { tx, state } => {
            format!("nonce too low: next nonce {state}, tx nonce {tx}")
        }
        InvalidTransaction::NonceTooHigh { tx, state } => {
            format!("nonce too high: next nonce {state}, tx nonce {tx}")
        }
        InvalidTransaction::LackOfFundForMaxFee { fee, balance } => {
            format!("insufficient funds for gas * price + value: balance {balance}, tx cost {fee}")
        }
        InvalidTransaction::GasPriceLessThanBasefee => {
            "max fee per gas less than block base fee".into()
        }
        InvalidTransaction::CallerGasLimitMoreThanBlock => "exceeds block gas limit".into(),
        InvalidTransaction::CallGasCostMoreThanGasLimit { .. }
        | InvalidTransaction::GasFloorMoreThanGasLimit { .. } => "intrinsic gas too low".into(),
        InvalidTransaction::InvalidChainId | InvalidTransaction::MissingChainId => {
            "invalid chain id for signer".into()
        }
        InvalidTransaction::PriorityFeeGreaterThanMaxFee => {
            "max priority fee per gas higher than max fee per gas".into()
        }
        InvalidTransaction::RejectCallerWithCode => {
            "sender not an eoa: the sender has contract code".into()
        }
        other => other.to_string(),
    }
}

/// The revm environment of a signed transaction from `caller`.
pub fn tx_env(tx: &TxEnvelope, caller: Address) -> TxEnv {
    TxEnv {
        tx_type: tx.tx_type() as u8,
        caller,
        gas_limit: tx.gas_limit(),
        gas_price: tx.max_fee_per_gas(),
        kind: tx.kind(),
        value: tx.value(),
        data: tx.input().clone(),
        nonce: tx.nonce(),
        chain_id: tx.chain_id(),
        access_list: tx.access_list().cloned().unwrap_or_default(),
        gas_priority_fee: tx.max_priority_fee_per_gas(),
        ..TxEnv::default()
    }
}

/// The revm environment of an `eth_call` / `eth_estimateGas` request.
pub fn call_env(req: &TransactionRequest, gas_limit: u64) -> TxEnv {
    let gas_price = req.gas_price.or(req.max_fee_per_gas).unwrap_or(0);
    let tx_type = if req.max_fee_per_gas.is_some() || req.max_priority_fee_per_gas.is_some() {
        2
    } else if req.access_list.is_some() {
        1
    } else {
        0
    };
    TxEnv {
        tx_type,
        caller: req.from.unwrap_or(Address::ZERO),
        gas_limit: req.gas.unwrap_or(gas_limit).min(gas_limit),
        gas_price,
        kind: req.to.unwrap_or(TxKind::Create),
        value: req.value.unwrap_or(U256::ZERO),
        data: req.input.input().cloned().unwrap_or_else(Bytes::new),
        nonce: req.nonce.unwrap_or(0),
        chain_id: None,
        access_list: req.access_list.clone().unwrap_or_default(),
        gas_priority_fee: if tx_type == 2 {
            Some(req.max_priority_fee_per_gas.unwrap_or(0).min(gas_price))
        } else {
            None
        },
        ..TxEnv::default()
    }
}

/// Gas used as a receipt reports it (after refunds and the EIP-7623 floor).
pub fn gas_used(result: &ExecutionResult) -> u64 {
    match result {
        ExecutionResult::Success { gas, .. }
        | ExecutionResult::Revert { gas, .. }
        | ExecutionResult::Halt { gas, .. } => gas.tx_gas_used(),
    }
}
