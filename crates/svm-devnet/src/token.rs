//! The SPL Token account layouts, packed and read by hand, and the addresses of the programs.
//!
//! The devnet writes its genesis mints and token accounts directly (as a cluster's genesis
//! does), so it must produce the exact bytes the real programs read: the 82-byte `Mint` and
//! the 165-byte `Account` of SPL Token, which Token-2022 shares as its base layout. Reading
//! them back serves `getTokenAccountBalance`, `jsonParsed` and the token balances of
//! `getTransaction`. No SPL crate is pulled in for 200 bytes of layout.

use solana_address::Address;

/// The SPL Token program.
pub const TOKEN_PROGRAM: Address =
    Address::from_str_const("TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA");
/// The Token-2022 program.
pub const TOKEN_2022_PROGRAM: Address =
    Address::from_str_const("TokenzQdBNbLqP5VEhdkAS6EPFLC1PHnBqCXEpPxuEb");
/// The Associated Token Account program.
pub const ASSOCIATED_TOKEN_PROGRAM: Address =
    Address::from_str_const("ATokenGPvbdGVxr1b2hvZbsiqW5xWH25efTNsLJA8knL");
/// The SPL Memo program (v2).
pub const MEMO_PROGRAM: Address =
    Address::from_str_const("MemoSq4gqABAXKb96qnH8TysNcWxMyWCqXgDLGmfcHr");
/// The System program.
pub const SYSTEM_PROGRAM: Address = Address::new_from_array([0; 32]);
/// The Compute Budget program.
pub const COMPUTE_BUDGET_PROGRAM: Address =
    Address::from_str_const("ComputeBudget111111111111111111111111111111");

/// Length of a `Mint`.
pub const MINT_LEN: usize = 82;
/// Length of a token `Account`.
pub const ACCOUNT_LEN: usize = 165;
/// Token-2022: the byte after the base account (mints are padded to [`ACCOUNT_LEN`]) that
/// says which kind of account carries extensions.
const ACCOUNT_TYPE_OFFSET: usize = ACCOUNT_LEN;
/// Token-2022's account type byte of a mint with extensions.
const ACCOUNT_TYPE_MINT: u8 = 1;
/// Token-2022's account type byte of a token account with extensions.
const ACCOUNT_TYPE_ACCOUNT: u8 = 2;
/// Token-2022's `ImmutableOwner` extension (the ATA program adds it to every account it
/// creates).
const EXTENSION_IMMUTABLE_OWNER: u16 = 7;

/// Whether `program` is SPL Token or Token-2022.
pub fn is_token_program(program: &Address) -> bool {
    *program == TOKEN_PROGRAM || *program == TOKEN_2022_PROGRAM
}

/// The associated token account of `owner` for `mint` under `token_program`.
pub fn associated_token_address(
    owner: &Address,
    mint: &Address,
    token_program: &Address,
) -> Address {
    Address::find_program_address(
        &[owner.as_ref(), token_program.as_ref(), mint.as_ref()],
        &ASSOCIATED_TOKEN_PROGRAM,
    )
    .0
}

/// An SPL `Mint`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mint {
    /// Who may mint; `None`: the supply is fixed.
    pub mint_authority: Option<Address>,
    /// Total supply.
    pub supply: u64,
    /// Decimals of the UI amount.
    pub decimals: u8,
    /// Whether the mint is initialized.
    pub is_initialized: bool,
    /// Who may freeze accounts.
    pub freeze_authority: Option<Address>,
}

/// Whether a token account is initialized or frozen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountState {
    /// Not yet initialized (never read back: such data is not a token account).
    Uninitialized = 0,
    /// Initialized.
    Initialized = 1,
    /// Frozen by the mint's freeze authority.
    Frozen = 2,
}

/// An SPL token `Account`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenAccount {
    /// The mint.
    pub mint: Address,
    /// The owner.
    pub owner: Address,
    /// The balance, in base units.
    pub amount: u64,
    /// The delegate, if any.
    pub delegate: Option<Address>,
    /// Initialized or frozen.
    pub state: AccountState,
    /// For wrapped SOL: the rent-exempt reserve.
    pub is_native: Option<u64>,
    /// What the delegate may still move.
    pub delegated_amount: u64,
    /// Who may close the account.
    pub close_authority: Option<Address>,
}

/// What a token program's account holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenState {
    /// A mint, with the Token-2022 extensions it carries.
    Mint(Mint, Vec<u16>),
    /// A token account, with the Token-2022 extensions it carries.
    Account(TokenAccount, Vec<u16>),
}

impl Mint {
    /// The 82 bytes the token programs read.
    pub fn pack(&self) -> [u8; MINT_LEN] {
        let mut out = [0u8; MINT_LEN];
        put_option_address(&mut out[0..36], self.mint_authority.as_ref());
        out[36..44].copy_from_slice(&self.supply.to_le_bytes());
        out[44] = self.decimals;
        out[45] = u8::from(self.is_initialized);
        put_option_address(&mut out[46..82], self.freeze_authority.as_ref());
        out
    }

    /// Reads the base layout (the first 82 bytes); `None` if malformed or uninitialized.
    pub fn unpack(data: &[u8]) -> Option<Self> {
        let data = data.get(..MINT_LEN)?;
        let mint = Self {
            mint_authority: option_address(&data[0..36])?,
            supply: u64_at(data, 36)?,
            decimals: data[44],
            is_initialized: match data[45] {
                0 => false,
                1 => true,
                _ => return None,
            },
            freeze_authority: option_address(&data[46..82])?,
        };
        mint.is_initialized.then_some(mint)
    }
}

impl TokenAccount {
    /// The 165 bytes the token programs read.
    pub fn pack(&self) -> [u8; ACCOUNT_LEN] {
        let mut out = [0u8; ACCOUNT_LEN];
        out[0..32].copy_from_slice(self.mint.as_ref());
        out[32..64].copy_from_slice(self.owner.as_ref());
        out[64..72].copy_from_slice(&self.amount.to_le_bytes());
        put_option_address(&mut out[72..108], self.delegate.as_ref());
        out[108] = self.state as u8;
        if let Some(reserve) = self.is_native {
            out[109..113].copy_from_slice(&1u32.to_le_bytes());
            out[113..121].copy_from_slice(&reserve.to_le_bytes());
        }
        out[121..129].copy_from_slice(&self.delegated_amount.to_le_bytes());
        put_option_address(&mut out[129..165], self.close_authority.as_ref());
        out
    }

    /// Reads the base layout (the first 165 bytes); `None` if malformed or uninitialized.
    pub fn unpack(data: &[u8]) -> Option<Self> {
        let data = data.get(..ACCOUNT_LEN)?;
        Some(Self {
            mint: address_at(data, 0)?,
            owner: address_at(data, 32)?,
            amount: u64_at(data, 64)?,
            delegate: option_address(&data[72..108])?,
            state: match data[108] {
                1 => AccountState::Initialized,
                2 => AccountState::Frozen,
                _ => return None,
            },
            is_native: match u32_at(data, 109)? {
                0 => None,
                1 => Some(u64_at(data, 113)?),
                _ => return None,
            },
            delegated_amount: u64_at(data, 121)?,
            close_authority: option_address(&data[129..165])?,
        })
    }
}

/// Reads the data of an account owned by `program`: a mint or a token account (with the
/// Token-2022 extension types it carries), or `None` (another program, a multisig, garbage).
pub fn unpack(program: &Address, data: &[u8]) -> Option<TokenState> {
    if !is_token_program(program) {
        return None;
    }
    match data.len() {
        MINT_LEN => Mint::unpack(data).map(|m| TokenState::Mint(m, Vec::new())),
        ACCOUNT_LEN => TokenAccount::unpack(data).map(|a| TokenState::Account(a, Vec::new())),
        n if n > ACCOUNT_LEN && *program == TOKEN_2022_PROGRAM => {
            let extensions = extension_types(&data[ACCOUNT_TYPE_OFFSET + 1..])?;
            match data[ACCOUNT_TYPE_OFFSET] {
                ACCOUNT_TYPE_MINT => Mint::unpack(data).map(|m| TokenState::Mint(m, extensions)),
                ACCOUNT_TYPE_ACCOUNT => {
                    TokenAccount::unpack(data).map(|a| TokenState::Account(a, extensions))
                }
                _ => None,
            }
        }
        _ => None,
    }
}

/// The extension types of a Token-2022 TLV area (`type: u16, length: u16, value`); `None` if
/// the area is malformed.
fn extension_types(mut tlv: &[u8]) -> Option<Vec<u16>> {
    let mut types = Vec::new();
    while tlv.len() >= 4 {
        let kind = u16::from_le_bytes([tlv[0], tlv[1]]);
        let len = usize::from(u16::from_le_bytes([tlv[2], tlv[3]]));
        if kind == 0 {
            // Uninitialized: the rest is padding.
            break;
        }
        types.push(kind);
        tlv = tlv.get(4 + len..)?;
    }
    Some(types)
}

/// The name `jsonParsed` gives a Token-2022 extension type (Agave's `UiExtension` tag);
/// extensions whose state the devnet does not decode show as unparseable, as Agave shows
/// the ones it cannot parse.
pub fn extension_name(kind: u16) -> &'static str {
    match kind {
        EXTENSION_IMMUTABLE_OWNER => "immutableOwner",
        _ => "unparseableExtension",
    }
}

/// `amount` in UI units as Solana prints it: exact, trailing zeros trimmed (`"1000"`,
/// `"0.5"`).
pub fn ui_amount_string(amount: u64, decimals: u8) -> String {
    let decimals = usize::from(decimals);
    if decimals == 0 {
        return amount.to_string();
    }
    let digits = format!("{amount:0>width$}", width = decimals + 1);
    let (int, frac) = digits.split_at(digits.len() - decimals);
    let frac = frac.trim_end_matches('0');
    if frac.is_empty() {
        int.to_string()
    } else {
        format!("{int}.{frac}")
    }
}

/// Solana's `UiTokenAmount`: `{amount, decimals, uiAmount, uiAmountString}`.
pub fn ui_token_amount(amount: u64, decimals: u8) -> serde_json::Value {
    let ui = ui_amount_string(amount, decimals);
    let ui_amount: f64 = ui.parse().unwrap_or(0.0);
    serde_json::json!({
        "amount": amount.to_string(),
        "decimals": decimals,
        "uiAmount": ui_amount,
        "uiAmountString": ui,
    })
}

fn put_option_address(out: &mut [u8], value: Option<&Address>) {
    if let Some(address) = value {
        out[0..4].copy_from_slice(&1u32.to_le_bytes());
        out[4..36].copy_from_slice(address.as_ref());
    }
}

fn option_address(data: &[u8]) -> Option<Option<Address>> {
    match u32_at(data, 0)? {
        0 => Some(None),
        1 => Some(Some(address_at(data, 4)?)),
        _ => None,
    }
}

fn address_at(data: &[u8], at: usize) -> Option<Address> {
    let bytes: [u8; 32] = data.get(at..at + 32)?.try_into().ok()?;
    Some(Address::new_from_array(bytes))
}

fn u64_at(data: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(data.get(at..at + 8)?.try_into().ok()?))
}

fn u32_at(data: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(data.get(at..at + 4)?.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_round_trip() {
        let mint = Mint {
            mint_authority: Some(Address::new_from_array([7; 32])),
            supply: 42,
            decimals: 6,
            is_initialized: true,
            freeze_authority: None,
        };
        assert_eq!(Mint::unpack(&mint.pack()), Some(mint));
        let account = TokenAccount {
            mint: Address::new_from_array([1; 32]),
            owner: Address::new_from_array([2; 32]),
            amount: 1_000_000_000,
            delegate: None,
            state: AccountState::Initialized,
            is_native: None,
            delegated_amount: 0,
            close_authority: None,
        };
        let packed = account.pack();
        assert_eq!(TokenAccount::unpack(&packed), Some(account.clone()));
        assert_eq!(
            unpack(&TOKEN_PROGRAM, &packed),
            Some(TokenState::Account(account, Vec::new()))
        );
        assert_eq!(unpack(&SYSTEM_PROGRAM, &packed), None);
        assert_eq!(unpack(&TOKEN_PROGRAM, &packed[..100]), None);
    }

    #[test]
    fn ui_amounts_are_exact_and_trimmed() {
        assert_eq!(ui_amount_string(1_000_000_000, 6), "1000");
        assert_eq!(ui_amount_string(1_500_000, 6), "1.5");
        assert_eq!(ui_amount_string(1, 6), "0.000001");
        assert_eq!(ui_amount_string(0, 6), "0");
        assert_eq!(ui_amount_string(12, 0), "12");
        assert_eq!(ui_token_amount(1_500_000, 6)["uiAmount"], 1.5);
    }

    #[test]
    fn malformed_extension_areas_are_refused() {
        let mut data = vec![0u8; ACCOUNT_LEN + 1];
        data[..ACCOUNT_LEN].copy_from_slice(
            &TokenAccount {
                mint: Address::new_from_array([1; 32]),
                owner: Address::new_from_array([2; 32]),
                amount: 5,
                delegate: None,
                state: AccountState::Initialized,
                is_native: None,
                delegated_amount: 0,
                close_authority: None,
            }
            .pack(),
        );
        data[ACCOUNT_LEN] = ACCOUNT_TYPE_ACCOUNT;
        // ImmutableOwner, zero length: well formed.
        data.extend_from_slice(&[7, 0, 0, 0]);
        assert!(matches!(
            unpack(&TOKEN_2022_PROGRAM, &data),
            Some(TokenState::Account(_, ext)) if ext == vec![7]
        ));
        // A length running past the end.
        data.extend_from_slice(&[9, 0, 200, 0]);
        assert_eq!(unpack(&TOKEN_2022_PROGRAM, &data), None);
    }
}
