//! The Solana programs an `exact` payment touches, and the few instruction layouts the scheme
//! reads or writes: compute budget, SPL Token / Token-2022 `TransferChecked`, Memo.
//!
//! These are fixed, tiny byte layouts; decoding them here (rather than pulling in the SPL
//! interface crates and their dependency trees) keeps the verifier's view of an instruction to
//! exactly the bytes the programs themselves read.

use solana_address::Address;
use solana_instruction::{AccountMeta, Instruction};

/// The SPL Token program.
pub const TOKEN_PROGRAM: Address =
    Address::from_str_const("TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA");
/// The Token-2022 program.
pub const TOKEN_2022_PROGRAM: Address =
    Address::from_str_const("TokenzQdBNbLqP5VEhdkAS6EPFLC1PHnBqCXEpPxuEb");
/// The Associated Token Account program.
pub const ASSOCIATED_TOKEN_PROGRAM: Address =
    Address::from_str_const("ATokenGPvbdGVxr1b2hvZbsiqW5xWH25efTNsLJA8knL");
/// The compute budget program.
pub const COMPUTE_BUDGET_PROGRAM: Address =
    Address::from_str_const("ComputeBudget111111111111111111111111111111");
/// The SPL Memo program (v2), which the client uses to make each payment unique.
pub const MEMO_PROGRAM: Address =
    Address::from_str_const("MemoSq4gqABAXKb96qnH8TysNcWxMyWCqXgDLGmfcHr");
/// Lighthouse: the assertion program Phantom and Solflare inject to protect their users; the
/// reference verifier allows it after the transfer.
pub const LIGHTHOUSE_PROGRAM: Address =
    Address::from_str_const("L2TExMFKdjpN9kozasaurPirfHy9P8sbXoAN1qA3S95");

/// `SetComputeUnitLimit`'s discriminator.
const SET_COMPUTE_UNIT_LIMIT: u8 = 2;
/// `SetComputeUnitPrice`'s discriminator.
const SET_COMPUTE_UNIT_PRICE: u8 = 3;
/// `TransferChecked`'s discriminator, the same in both token programs.
const TRANSFER_CHECKED: u8 = 12;

/// Whether `program` is one of the two token programs.
pub fn is_token_program(program: &Address) -> bool {
    *program == TOKEN_PROGRAM || *program == TOKEN_2022_PROGRAM
}

/// The associated token account of `owner` for `mint` under `token_program`, or `None` in
/// the (astronomically unlikely, but not impossible) case that no bump seed gives an
/// off-curve address.
pub fn associated_token_address(
    owner: &Address,
    mint: &Address,
    token_program: &Address,
) -> Option<Address> {
    Address::try_find_program_address(
        &[owner.as_ref(), token_program.as_ref(), mint.as_ref()],
        &ASSOCIATED_TOKEN_PROGRAM,
    )
    .map(|(address, _)| address)
}

/// `SetComputeUnitLimit(units)`.
pub fn set_compute_unit_limit(units: u32) -> Instruction {
    let mut data = vec![SET_COMPUTE_UNIT_LIMIT];
    data.extend_from_slice(&units.to_le_bytes());
    Instruction::new_with_bytes(COMPUTE_BUDGET_PROGRAM, &data, vec![])
}

/// `SetComputeUnitPrice(micro_lamports)`.
pub fn set_compute_unit_price(micro_lamports: u64) -> Instruction {
    let mut data = vec![SET_COMPUTE_UNIT_PRICE];
    data.extend_from_slice(&micro_lamports.to_le_bytes());
    Instruction::new_with_bytes(COMPUTE_BUDGET_PROGRAM, &data, vec![])
}

/// A `Memo` with no signer accounts, as the official client sends it.
pub fn memo(data: &[u8]) -> Instruction {
    Instruction::new_with_bytes(MEMO_PROGRAM, data, vec![])
}

/// The accounts and data of a `TransferChecked`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransferChecked {
    /// The token program that runs it.
    pub program: Address,
    /// The debited token account.
    pub source: Address,
    /// The mint.
    pub mint: Address,
    /// The credited token account.
    pub destination: Address,
    /// The owner or delegate of `source` who signs the transfer.
    pub authority: Address,
    /// Atomic units.
    pub amount: u64,
    /// The mint's decimals, which the program checks.
    pub decimals: u8,
}

impl TransferChecked {
    /// The instruction.
    pub fn instruction(&self) -> Instruction {
        let mut data = Vec::with_capacity(10);
        data.push(TRANSFER_CHECKED);
        data.extend_from_slice(&self.amount.to_le_bytes());
        data.push(self.decimals);
        Instruction::new_with_bytes(
            self.program,
            &data,
            vec![
                AccountMeta::new(self.source, false),
                AccountMeta::new_readonly(self.mint, false),
                AccountMeta::new(self.destination, false),
                AccountMeta::new_readonly(self.authority, true),
            ],
        )
    }

    /// Reads a `TransferChecked` from a compiled instruction's program, resolved accounts and
    /// data; `None` when it is anything else. Exactly the four single-signer accounts: a
    /// multisig authority would need signers beyond the client, which the scheme forbids.
    pub fn decode(program: &Address, accounts: &[Address], data: &[u8]) -> Option<Self> {
        if !is_token_program(program) || data.len() != 10 || data[0] != TRANSFER_CHECKED {
            return None;
        }
        let [source, mint, destination, authority] = accounts else {
            return None;
        };
        Some(Self {
            program: *program,
            source: *source,
            mint: *mint,
            destination: *destination,
            authority: *authority,
            amount: u64::from_le_bytes(data[1..9].try_into().ok()?),
            decimals: data[9],
        })
    }
}

/// A compute budget instruction the scheme accepts: exactly the limit or the price, in their
/// exact encodings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ComputeBudget {
    /// `SetComputeUnitLimit`.
    UnitLimit(u32),
    /// `SetComputeUnitPrice`, in micro-lamports per compute unit.
    UnitPrice(u64),
}

impl ComputeBudget {
    /// Reads a compute budget instruction; `None` for another program, another instruction
    /// of the compute budget program, accounts where there should be none, or a wrong length.
    pub fn decode(program: &Address, accounts: &[Address], data: &[u8]) -> Option<Self> {
        if *program != COMPUTE_BUDGET_PROGRAM || !accounts.is_empty() {
            return None;
        }
        match (data.first(), data.len()) {
            (Some(&SET_COMPUTE_UNIT_LIMIT), 5) => Some(Self::UnitLimit(u32::from_le_bytes(
                data[1..5].try_into().ok()?,
            ))),
            (Some(&SET_COMPUTE_UNIT_PRICE), 9) => Some(Self::UnitPrice(u64::from_le_bytes(
                data[1..9].try_into().ok()?,
            ))),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instructions_round_trip_through_their_decoders() {
        let t = TransferChecked {
            program: TOKEN_2022_PROGRAM,
            source: Address::new_from_array([1; 32]),
            mint: Address::new_from_array([2; 32]),
            destination: Address::new_from_array([3; 32]),
            authority: Address::new_from_array([4; 32]),
            amount: 1_234_567,
            decimals: 6,
        };
        let ix = t.instruction();
        let accounts: Vec<Address> = ix.accounts.iter().map(|a| a.pubkey).collect();
        assert_eq!(
            TransferChecked::decode(&ix.program_id, &accounts, &ix.data),
            Some(t)
        );
        // A plain `Transfer` (3), or a truncated one, is not a TransferChecked.
        let mut plain = ix.data.clone();
        plain[0] = 3;
        assert_eq!(
            TransferChecked::decode(&ix.program_id, &accounts, &plain),
            None
        );
        assert_eq!(
            TransferChecked::decode(&ix.program_id, &accounts, &ix.data[..9]),
            None
        );
        assert_eq!(
            TransferChecked::decode(&MEMO_PROGRAM, &accounts, &ix.data),
            None
        );

        let limit = set_compute_unit_limit(20_000);
        assert_eq!(
            ComputeBudget::decode(&limit.program_id, &[], &limit.data),
            Some(ComputeBudget::UnitLimit(20_000))
        );
        let price = set_compute_unit_price(7);
        assert_eq!(
            ComputeBudget::decode(&price.program_id, &[], &price.data),
            Some(ComputeBudget::UnitPrice(7))
        );
        // RequestHeapFrame (1) is not accepted.
        assert_eq!(
            ComputeBudget::decode(&COMPUTE_BUDGET_PROGRAM, &[], &[1, 0, 0, 1, 0]),
            None
        );
    }

    #[test]
    fn each_token_program_derives_its_own_associated_account() {
        // (That the derivation is the ATA program's own is proven on the devnet, where the
        // real program creates the account at this address.)
        let owner = Address::from_str_const("7xKXtg2CW87d97TXJSDpbD5jBkheTqA83TZRuJosgAsU");
        let usdc = Address::from_str_const("EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v");
        let ata = associated_token_address(&owner, &usdc, &TOKEN_PROGRAM).unwrap();
        assert_ne!(ata, owner);
        // Token-2022 derives a different account for the same owner and mint.
        assert_ne!(
            associated_token_address(&owner, &usdc, &TOKEN_2022_PROGRAM).unwrap(),
            ata
        );
    }
}
