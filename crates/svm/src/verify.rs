//! The sponsor's checks of an `exact` transaction before it signs as fee payer: the
//! specification's static layout (its "Path 1", what standard wallets and every official client
//! build) with fee-payer isolation, signer-set integrity and compute budget caps. No I/O: the
//! facilitator runs these, then simulates.
//!
//! Stricter than the reference verifier in two places, both refusing only transactions no
//! official client builds: the fee payer may appear in **no** instruction's accounts (the
//! reference checks the transfer authority only; the specification's §2.1.1 says any), and a
//! transaction may require at most the client's and the fee payer's signatures by default.
//! Smart-wallet transactions (the specification's optional "Path 2", verified by simulating
//! a CPI trace) are not accepted.

use solana_address::Address;
use solana_signature::Signature;

use crate::payload::PaymentTransaction;
use crate::programs::{self, ComputeBudget, TransferChecked};
use crate::reason::SvmReason;

/// The sponsor's caps on what a transaction may cost it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The highest `SetComputeUnitLimit` accepted (the specification's reference default is
    /// 400,000).
    pub max_compute_units: u32,
    /// The highest `SetComputeUnitPrice`, in micro-lamports per compute unit (the reference
    /// verifier's default, 5 lamports per unit).
    pub max_compute_unit_price: u64,
    /// The most signatures a transaction may require: the fee payer's and the client's.
    pub max_required_signatures: u8,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_compute_units: 400_000,
            max_compute_unit_price: 5_000_000,
            max_required_signatures: 2,
        }
    }
}

/// What the requirements ask for, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expected {
    /// `extra.feePayer`.
    pub fee_payer: Address,
    /// The mint (`asset`).
    pub mint: Address,
    /// `payTo`.
    pub pay_to: Address,
    /// `amount`.
    pub amount: u64,
    /// `extra.memo`, when the seller set one.
    pub memo: Option<String>,
}

/// A refused transaction: the reason code, a sentence, and the payer when it could be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}: {message}")]
pub struct Refusal {
    /// The code.
    pub reason: SvmReason,
    /// What exactly was wrong.
    pub message: String,
    /// The transfer's authority, once the transfer was found.
    pub payer: Option<Address>,
}

fn refuse(reason: SvmReason, message: impl Into<String>) -> Refusal {
    Refusal {
        reason,
        message: message.into(),
        payer: None,
    }
}

/// Checks `tx` against `expected` and the sponsor's `limits`, `managed` being every key the
/// facilitator signs with (none of them may move funds). Returns the one transfer.
pub fn check(
    tx: &PaymentTransaction,
    expected: &Expected,
    managed: &[Address],
    limits: &Limits,
) -> Result<TransferChecked, Refusal> {
    let message = &tx.transaction.message;
    if message
        .address_table_lookups()
        .is_some_and(|lookups| !lookups.is_empty())
    {
        return Err(refuse(
            SvmReason::AltResolutionNotAvailable,
            "the transaction loads accounts from address lookup tables; only its static accounts can be checked",
        ));
    }
    let keys = message.static_account_keys();
    if keys.first() != Some(&expected.fee_payer) {
        return Err(refuse(
            SvmReason::FeePayerMismatch,
            format!(
                "the transaction's fee payer is {}, not {}",
                keys.first().map(ToString::to_string).unwrap_or_default(),
                expected.fee_payer
            ),
        ));
    }
    let required = message.header().num_required_signatures;
    if required > limits.max_required_signatures {
        return Err(refuse(
            SvmReason::ExcessiveSigners,
            format!(
                "the transaction requires {required} signatures; at most {} (the client's and the fee payer's) are accepted",
                limits.max_required_signatures
            ),
        ));
    }
    check_signatures(tx, keys, required)?;

    let instructions = message.instructions();
    if !(3..=7).contains(&instructions.len()) {
        return Err(refuse(
            SvmReason::InstructionsLength,
            format!("{} instructions; 3 to 7 are accepted", instructions.len()),
        ));
    }
    // Resolve every instruction once; sanitize() guaranteed the indices are in range.
    let resolved: Vec<(Address, Vec<Address>, &[u8])> = instructions
        .iter()
        .map(|ix| {
            let program = keys[usize::from(ix.program_id_index)];
            let accounts = ix.accounts.iter().map(|&i| keys[usize::from(i)]).collect();
            (program, accounts, ix.data.as_slice())
        })
        .collect();

    let (program, accounts, data) = &resolved[0];
    match ComputeBudget::decode(program, accounts, data) {
        Some(ComputeBudget::UnitLimit(units)) if units > limits.max_compute_units => {
            return Err(refuse(
                SvmReason::ComputeLimitTooHigh,
                format!(
                    "compute unit limit {units} is above {}",
                    limits.max_compute_units
                ),
            ))
        }
        Some(ComputeBudget::UnitLimit(_)) => {}
        _ => {
            return Err(refuse(
                SvmReason::ComputeLimitInstruction,
                "the first instruction must be SetComputeUnitLimit",
            ))
        }
    }
    let (program, accounts, data) = &resolved[1];
    match ComputeBudget::decode(program, accounts, data) {
        Some(ComputeBudget::UnitPrice(price)) if price > limits.max_compute_unit_price => {
            return Err(refuse(
                SvmReason::ComputePriceTooHigh,
                format!(
                    "compute unit price {price} micro-lamports is above {}",
                    limits.max_compute_unit_price
                ),
            ))
        }
        Some(ComputeBudget::UnitPrice(_)) => {}
        _ => {
            return Err(refuse(
                SvmReason::ComputePriceInstruction,
                "the second instruction must be SetComputeUnitPrice",
            ))
        }
    }

    let (program, accounts, data) = &resolved[2];
    let transfer = TransferChecked::decode(program, accounts, data).ok_or_else(|| {
        refuse(
            SvmReason::NoTransferInstruction,
            "the third instruction must be an SPL Token or Token-2022 TransferChecked with four accounts",
        )
    })?;
    let with_payer = |reason: SvmReason, message: String| Refusal {
        reason,
        message,
        payer: Some(transfer.authority),
    };

    // Fee payer isolation (§2.1.1): no key the facilitator signs with may be referenced by
    // any instruction, as an account or as the program. Unreferenced, the runtime cannot
    // debit it beyond the fee.
    for (index, (program, accounts, _)) in resolved.iter().enumerate() {
        if let Some(key) = managed
            .iter()
            .find(|k| *k == program || accounts.contains(k))
        {
            let role = if index == 2 && transfer.authority == *key {
                "the transfer's authority"
            } else if index == 2 && transfer.source == *key {
                "the transfer's source"
            } else {
                "an account"
            };
            return Err(with_payer(
                SvmReason::FeePayerTransferringFunds,
                format!("facilitator key {key} is {role} of instruction {index}"),
            ));
        }
    }

    if transfer.mint != expected.mint {
        return Err(with_payer(
            SvmReason::MintMismatch,
            format!("transfers mint {}, not {}", transfer.mint, expected.mint),
        ));
    }
    let destination =
        programs::associated_token_address(&expected.pay_to, &expected.mint, &transfer.program);
    if destination != Some(transfer.destination) {
        return Err(with_payer(
            SvmReason::RecipientMismatch,
            format!(
                "credits {}, which is not the associated token account of payTo {}",
                transfer.destination, expected.pay_to
            ),
        ));
    }
    if transfer.amount != expected.amount {
        return Err(with_payer(
            SvmReason::AmountMismatch,
            format!(
                "transfers {} atomic units, the requirements ask {}",
                transfer.amount, expected.amount
            ),
        ));
    }

    let optional = &resolved[3..];
    for (i, (program, _, _)) in optional.iter().enumerate() {
        if *program != programs::MEMO_PROGRAM && *program != programs::LIGHTHOUSE_PROGRAM {
            let reason = [
                SvmReason::UnknownFourthInstruction,
                SvmReason::UnknownFifthInstruction,
                SvmReason::UnknownSixthInstruction,
                SvmReason::UnknownSeventhInstruction,
            ][i];
            return Err(with_payer(
                reason,
                format!("instruction {} runs program {program}", i + 3),
            ));
        }
    }
    if let Some(memo) = &expected.memo {
        let memos: Vec<&[u8]> = optional
            .iter()
            .filter(|(p, _, _)| *p == programs::MEMO_PROGRAM)
            .map(|(_, _, data)| *data)
            .collect();
        let [data] = memos.as_slice() else {
            return Err(with_payer(
                SvmReason::MemoCount,
                format!(
                    "{} Memo instructions; the seller's memo needs exactly one",
                    memos.len()
                ),
            ));
        };
        if *data != memo.as_bytes() {
            return Err(with_payer(
                SvmReason::MemoMismatch,
                format!(
                    "the Memo says {:?}, the seller asked {memo:?}",
                    String::from_utf8_lossy(data)
                ),
            ));
        }
    }
    Ok(transfer)
}

/// Every required signature but the fee payer's (slot 0) is present and valid over the
/// message. The fee payer's slot is the facilitator's to fill.
fn check_signatures(
    tx: &PaymentTransaction,
    keys: &[Address],
    required: u8,
) -> Result<(), Refusal> {
    let signatures = &tx.transaction.signatures;
    if signatures.len() != usize::from(required) {
        return Err(refuse(
            SvmReason::SignatureInvalid,
            format!(
                "{} signatures for {required} required signers",
                signatures.len()
            ),
        ));
    }
    for (i, (signature, key)) in signatures.iter().zip(keys).enumerate().skip(1) {
        if *signature == Signature::default() || !signature.verify(key.as_ref(), &tx.message) {
            return Err(refuse(
                SvmReason::SignatureInvalid,
                format!("signature {i} (of {key}) is missing or does not sign the message"),
            ));
        }
    }
    Ok(())
}
