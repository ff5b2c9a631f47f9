//! The genesis state: ten funded dev accounts, two 6-decimal mints (SPL Token at Circle's
//! devnet USDC address, and Token-2022) and every dev account's associated token account for
//! each, written straight into the accounts database as a cluster's genesis is.
//!
//! Every key is derived from a fixed label with SHA-256, so addresses are the same in every
//! run and in every process (a test, the CLI and a TypeScript client agree without talking).

use litesvm::LiteSVM;
use sha2::{Digest, Sha256};
use solana_account::Account;
use solana_address::Address;
use solana_keypair::Keypair;
use solana_signer::Signer;

use crate::token::{
    associated_token_address, AccountState, Mint, TokenAccount, TOKEN_2022_PROGRAM, TOKEN_PROGRAM,
};
use crate::SvmDevnetError;

/// Solana devnet's genesis hash: `getGenesisHash` answers it, so the devnet's CAIP-2 id is
/// devnet's (`solana:EtWTRABZaYq6iMfeYKouRu166VU2xqa1`) and x402 clients and facilitators
/// configured for Solana devnet accept it unchanged.
pub const DEVNET_GENESIS_HASH: &str = "EtWTRABZaYq6iMfeYKouRu166VU2xqa1wcaWoxPkrZBG";

/// Circle's USDC mint address on Solana devnet, where the devnet's SPL Token mint sits (so
/// code that knows devnet USDC finds it here).
pub const USDC_MINT: &str = "4zMMC9srt5Ri5X14GAgXhaHii3GnPAEERYPJgZJDncDU";

/// Base units of each mint every dev account holds at genesis: 1,000 tokens at 6 decimals.
pub const INITIAL_TOKENS: u64 = 1_000_000_000;

/// Lamports every dev account holds at genesis: 1,000 SOL.
pub const INITIAL_LAMPORTS: u64 = 1_000 * LAMPORTS_PER_SOL;

/// Decimals of both genesis mints (USDC's).
pub const TOKEN_DECIMALS: u8 = 6;

/// How many dev accounts genesis funds.
pub const DEV_ACCOUNT_COUNT: usize = 10;

/// Lamports per SOL.
pub const LAMPORTS_PER_SOL: u64 = 1_000_000_000;

/// What the faucet behind `requestAirdrop` holds: a billion SOL.
pub const FAUCET_LAMPORTS: u64 = 1_000_000_000 * LAMPORTS_PER_SOL;

/// The label the Token-2022 mint's key is derived from.
const TOKEN_2022_MINT_LABEL: &str = "tollgate-svm-devnet token-2022 mint";

/// The label the faucet's key is derived from.
const FAUCET_LABEL: &str = "tollgate-svm-devnet faucet";

/// A funded dev account: its address and its ed25519 secret (the 32-byte seed,
/// [`Keypair::new_from_array`]). `Debug` never prints the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct DevAccount {
    /// The account's address (its public key).
    pub address: Address,
    /// The ed25519 seed: `sha256("tollgate-svm-devnet account {i}")`. Public test material,
    /// never for real funds.
    pub secret: [u8; 32],
}

impl std::fmt::Debug for DevAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevAccount")
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

impl DevAccount {
    /// The account's keypair, to sign with.
    pub fn keypair(&self) -> Keypair {
        Keypair::new_from_array(self.secret)
    }
}

/// SHA-256 of `label`: the seed of a derived key.
fn seed(label: &str) -> [u8; 32] {
    Sha256::digest(label.as_bytes()).into()
}

/// The ten dev accounts, in order.
pub fn dev_accounts() -> Vec<DevAccount> {
    (0..DEV_ACCOUNT_COUNT)
        .map(|i| {
            let secret = seed(&format!("tollgate-svm-devnet account {i}"));
            DevAccount {
                address: Keypair::new_from_array(secret).pubkey(),
                secret,
            }
        })
        .collect()
}

/// The SPL Token mint, at [`USDC_MINT`].
pub fn usdc_mint() -> Address {
    Address::from_str_const(USDC_MINT)
}

/// The Token-2022 mint: the public key of `sha256("tollgate-svm-devnet token-2022 mint")`.
pub fn token_2022_mint() -> Address {
    Keypair::new_from_array(seed(TOKEN_2022_MINT_LABEL)).pubkey()
}

/// The faucet that pays `requestAirdrop`.
pub fn faucet() -> Keypair {
    Keypair::new_from_array(seed(FAUCET_LABEL))
}

/// A genesis mint: where it is and which token program owns it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GenesisMint {
    /// The mint's address.
    pub address: Address,
    /// SPL Token or Token-2022.
    pub token_program: Address,
    /// Its decimals.
    pub decimals: u8,
}

/// The two genesis mints: USDC (SPL Token), then the Token-2022 mint.
pub fn mints() -> [GenesisMint; 2] {
    [
        GenesisMint {
            address: usdc_mint(),
            token_program: TOKEN_PROGRAM,
            decimals: TOKEN_DECIMALS,
        },
        GenesisMint {
            address: token_2022_mint(),
            token_program: TOKEN_2022_PROGRAM,
            decimals: TOKEN_DECIMALS,
        },
    ]
}

/// Writes the genesis accounts into `svm`: lamports for the dev accounts and the faucet, the
/// mints (dev account 0 is their mint authority, the supply is what the accounts hold) and
/// one associated token account per dev account and mint, each rent-exempt.
pub fn install(svm: &mut LiteSVM, accounts: &[DevAccount]) -> Result<(), SvmDevnetError> {
    for dev in accounts {
        svm_set(svm, dev.address, system_account(INITIAL_LAMPORTS))?;
    }
    svm_set(svm, faucet().pubkey(), system_account(FAUCET_LAMPORTS))?;
    let supply = INITIAL_TOKENS.saturating_mul(accounts.len() as u64);
    for mint in mints() {
        let data = Mint {
            mint_authority: accounts.first().map(|a| a.address),
            supply,
            decimals: mint.decimals,
            is_initialized: true,
            freeze_authority: None,
        }
        .pack();
        let lamports = svm.minimum_balance_for_rent_exemption(data.len());
        svm_set(
            svm,
            mint.address,
            owned(lamports, &data, mint.token_program),
        )?;
        for dev in accounts {
            let data = TokenAccount {
                mint: mint.address,
                owner: dev.address,
                amount: INITIAL_TOKENS,
                delegate: None,
                state: AccountState::Initialized,
                is_native: None,
                delegated_amount: 0,
                close_authority: None,
            }
            .pack();
            let lamports = svm.minimum_balance_for_rent_exemption(data.len());
            let ata = associated_token_address(&dev.address, &mint.address, &mint.token_program);
            svm_set(svm, ata, owned(lamports, &data, mint.token_program))?;
        }
    }
    Ok(())
}

fn svm_set(svm: &mut LiteSVM, address: Address, account: Account) -> Result<(), SvmDevnetError> {
    svm.set_account(address, account)
        .map_err(|e| SvmDevnetError::Genesis(format!("writing {address}: {e}")))
}

fn system_account(lamports: u64) -> Account {
    Account {
        lamports,
        data: Vec::new(),
        owner: crate::token::SYSTEM_PROGRAM,
        executable: false,
        rent_epoch: u64::MAX,
    }
}

fn owned(lamports: u64, data: &[u8], owner: Address) -> Account {
    Account {
        lamports,
        data: data.to_vec(),
        owner,
        executable: false,
        rent_epoch: u64::MAX,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_deterministic_and_debug_hides_secrets() {
        let a = dev_accounts();
        let b = dev_accounts();
        assert_eq!(a, b);
        assert_eq!(a.len(), DEV_ACCOUNT_COUNT);
        assert_eq!(a[3].keypair().pubkey(), a[3].address);
        let printed = format!("{:?}", a[0]);
        assert!(printed.contains(&a[0].address.to_string()));
        assert!(!printed.contains("secret"));
        assert_ne!(token_2022_mint(), usdc_mint());
    }
}
