//! Solana's wire and JSON shapes: decoding transactions and messages from their base58 or
//! base64 strings, and encoding accounts, transactions, simulations and errors the way an
//! Agave node does (`@solana/kit` and `@x402/svm` parse these shapes, field by field).

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use solana_account::Account;
use solana_address::Address;
use solana_message::compiled_instruction::CompiledInstruction;
use solana_message::inner_instruction::InnerInstructionsList;
use solana_message::v0::LoadedAddresses;
use solana_message::VersionedMessage;
use solana_transaction::versioned::{TransactionVersion, VersionedTransaction};
use solana_transaction_error::TransactionError;

use crate::chain::{Record, Simulation, TokenBalance};
use crate::rpc::{code, RpcError};
use crate::token::{self, TokenState, TOKEN_2022_PROGRAM};

/// The largest serialized transaction a node accepts (a packet).
pub const PACKET_DATA_SIZE: usize = 1232;
/// The longest base58 string of a packet-sized transaction.
const MAX_BASE58_SIZE: usize = 1683;
/// The longest base64 string of a packet-sized transaction.
const MAX_BASE64_SIZE: usize = 1644;
/// Account data longer than this is refused in base58 (as Agave refuses it).
const MAX_BASE58_BYTES: usize = 128;

/// How a transaction or message arrives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BinaryEncoding {
    /// Base58 (the default, deprecated by Solana but still the default).
    #[default]
    Base58,
    /// Base64.
    Base64,
}

/// How account data is returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum AccountEncoding {
    /// Legacy: a bare base58 string.
    #[serde(rename = "binary")]
    Binary,
    /// `[data, "base58"]`.
    #[serde(rename = "base58")]
    Base58,
    /// `[data, "base64"]`.
    #[serde(rename = "base64")]
    Base64,
    /// Compressed base64 (not supported here).
    #[serde(rename = "base64+zstd")]
    Base64Zstd,
    /// Parsed JSON for token accounts and mints, base64 for everything else.
    #[serde(rename = "jsonParsed")]
    JsonParsed,
}

/// How a transaction is returned by `getTransaction`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
pub enum TransactionEncoding {
    /// Legacy: a bare base58 string.
    #[serde(rename = "binary")]
    Binary,
    /// `[tx, "base58"]`.
    #[serde(rename = "base58")]
    Base58,
    /// `[tx, "base64"]`.
    #[serde(rename = "base64")]
    Base64,
    /// `{signatures, message}` with indexes into the account keys (the default).
    #[default]
    #[serde(rename = "json")]
    Json,
    /// `{signatures, message}` with account keys spelled out (instructions are not decoded
    /// further: every program shows as Agave shows one it cannot parse).
    #[serde(rename = "jsonParsed")]
    JsonParsed,
}

/// `dataSlice`: a window of the account data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct DataSlice {
    /// First byte.
    pub offset: usize,
    /// How many bytes.
    pub length: usize,
}

/// Decodes a transaction as `sendTransaction` and `simulateTransaction` receive it.
pub fn decode_transaction(
    data: &str,
    encoding: BinaryEncoding,
) -> Result<VersionedTransaction, RpcError> {
    let bytes = decode_binary(
        data,
        encoding,
        "solana_transaction::versioned::VersionedTransaction",
    )?;
    wincode::deserialize::<VersionedTransaction>(&bytes).map_err(|e| {
        RpcError::params(format!(
            "failed to deserialize solana_transaction::versioned::VersionedTransaction: {e}"
        ))
    })
}

/// Decodes a message as `getFeeForMessage` receives it (always base64).
pub fn decode_message(data: &str) -> Result<VersionedMessage, RpcError> {
    let bytes = decode_binary(
        data,
        BinaryEncoding::Base64,
        "solana_message::VersionedMessage",
    )?;
    wincode::deserialize::<VersionedMessage>(&bytes).map_err(|e| {
        RpcError::params(format!(
            "failed to deserialize solana_message::VersionedMessage: {e}"
        ))
    })
}

fn decode_binary(data: &str, encoding: BinaryEncoding, what: &str) -> Result<Vec<u8>, RpcError> {
    let (name, max) = match encoding {
        BinaryEncoding::Base58 => ("base58", MAX_BASE58_SIZE),
        BinaryEncoding::Base64 => ("base64", MAX_BASE64_SIZE),
    };
    if data.len() > max {
        return Err(RpcError::params(format!(
            "{name} encoded {what} too large: {} bytes (max: encoded/raw {max}/{PACKET_DATA_SIZE})",
            data.len()
        )));
    }
    let bytes = match encoding {
        BinaryEncoding::Base58 => bs58::decode(data)
            .into_vec()
            .map_err(|e| RpcError::params(format!("invalid base58 encoding: {e}")))?,
        BinaryEncoding::Base64 => BASE64
            .decode(data)
            .map_err(|e| RpcError::params(format!("invalid base64 encoding: {e}")))?,
    };
    if bytes.len() > PACKET_DATA_SIZE {
        return Err(RpcError::params(format!(
            "decoded {what} too large: {} bytes (max: {PACKET_DATA_SIZE} bytes)",
            bytes.len()
        )));
    }
    Ok(bytes)
}

/// A transaction error in Solana's JSON form: `"BlockhashNotFound"`,
/// `{"InstructionError":[0,{"Custom":1}]}`.
pub fn error_json(err: &TransactionError) -> Value {
    serde_json::to_value(err).unwrap_or_else(|_| Value::String(err.to_string()))
}

/// `{"Ok":null}` or `{"Err":…}`, the legacy `status` field.
pub fn status_json(err: Option<&TransactionError>) -> Value {
    match err {
        None => json!({ "Ok": null }),
        Some(e) => json!({ "Err": error_json(e) }),
    }
}

/// Looks up a mint's decimals (`jsonParsed` shows a token account's amounts in UI units, and
/// the decimals live in the mint).
pub type MintDecimals<'a> = &'a dyn Fn(&Address) -> Option<u8>;

/// An account as `getAccountInfo` returns it.
pub fn account_json(
    account: &Account,
    encoding: AccountEncoding,
    slice: Option<DataSlice>,
    mint_decimals: MintDecimals<'_>,
) -> Result<Value, RpcError> {
    let data = match slice {
        Some(DataSlice { offset, length }) => {
            let start = offset.min(account.data.len());
            let end = offset.saturating_add(length).min(account.data.len());
            &account.data[start..end]
        }
        None => &account.data[..],
    };
    let data = match encoding {
        AccountEncoding::Binary | AccountEncoding::Base58 => {
            if data.len() > MAX_BASE58_BYTES {
                return Err(RpcError::new(
                    code::INVALID_REQUEST,
                    format!(
                        "Encoded binary (base 58) data should be less than {MAX_BASE58_BYTES} \
                         bytes, please use Base64 encoding."
                    ),
                ));
            }
            let encoded = bs58::encode(data).into_string();
            if encoding == AccountEncoding::Binary {
                json!(encoded)
            } else {
                json!([encoded, "base58"])
            }
        }
        AccountEncoding::Base64 => json!([BASE64.encode(data), "base64"]),
        AccountEncoding::Base64Zstd => {
            return Err(RpcError::params(
                "base64+zstd encoding is not supported by tollgate-svm-devnet: use base64",
            ))
        }
        AccountEncoding::JsonParsed => match (slice, parsed_token(account, mint_decimals)) {
            (None, Some(parsed)) => parsed,
            _ => json!([BASE64.encode(data), "base64"]),
        },
    };
    Ok(json!({
        "lamports": account.lamports,
        "owner": account.owner.to_string(),
        "data": data,
        "executable": account.executable,
        "rentEpoch": account.rent_epoch,
        "space": account.data.len(),
    }))
}

/// A token account or mint as `jsonParsed` shows it.
fn parsed_token(account: &Account, mint_decimals: MintDecimals<'_>) -> Option<Value> {
    let program = if account.owner == TOKEN_2022_PROGRAM {
        "spl-token-2022"
    } else {
        "spl-token"
    };
    let extensions_json = |kinds: &[u16]| -> Value {
        kinds
            .iter()
            .map(|k| json!({ "extension": token::extension_name(*k) }))
            .collect()
    };
    let parsed = match token::unpack(&account.owner, &account.data)? {
        TokenState::Mint(mint, extensions) => {
            let mut info = json!({
                "mintAuthority": mint.mint_authority.map(|a| a.to_string()),
                "supply": mint.supply.to_string(),
                "decimals": mint.decimals,
                "isInitialized": mint.is_initialized,
                "freezeAuthority": mint.freeze_authority.map(|a| a.to_string()),
            });
            if !extensions.is_empty() {
                info["extensions"] = extensions_json(&extensions);
            }
            json!({ "info": info, "type": "mint" })
        }
        TokenState::Account(state, extensions) => {
            // As on a node: an account whose mint is gone does not parse.
            let decimals = mint_decimals(&state.mint)?;
            let mut info = Map::new();
            info.insert("isNative".into(), json!(state.is_native.is_some()));
            info.insert("mint".into(), json!(state.mint.to_string()));
            info.insert("owner".into(), json!(state.owner.to_string()));
            info.insert(
                "state".into(),
                json!(match state.state {
                    token::AccountState::Frozen => "frozen",
                    _ => "initialized",
                }),
            );
            info.insert(
                "tokenAmount".into(),
                token::ui_token_amount(state.amount, decimals),
            );
            if let Some(delegate) = state.delegate {
                info.insert("delegate".into(), json!(delegate.to_string()));
                info.insert(
                    "delegatedAmount".into(),
                    token::ui_token_amount(state.delegated_amount, decimals),
                );
            }
            if let Some(reserve) = state.is_native {
                info.insert(
                    "rentExemptReserve".into(),
                    token::ui_token_amount(reserve, decimals),
                );
            }
            if let Some(close) = state.close_authority {
                info.insert("closeAuthority".into(), json!(close.to_string()));
            }
            if !extensions.is_empty() {
                info.insert("extensions".into(), extensions_json(&extensions));
            }
            json!({ "info": info, "type": "account" })
        }
    };
    Some(json!({ "program": program, "parsed": parsed, "space": account.data.len() }))
}

fn compiled_instruction_json(ix: &CompiledInstruction, stack_height: Option<u8>) -> Value {
    json!({
        "programIdIndex": ix.program_id_index,
        "accounts": ix.accounts,
        "data": bs58::encode(&ix.data).into_string(),
        "stackHeight": stack_height,
    })
}

fn partially_decoded_json(
    ix: &CompiledInstruction,
    keys: &[Address],
    stack_height: Option<u8>,
) -> Value {
    let key = |i: u8| {
        keys.get(usize::from(i))
            .map(ToString::to_string)
            .unwrap_or_default()
    };
    json!({
        "programId": key(ix.program_id_index),
        "accounts": ix.accounts.iter().map(|i| key(*i)).collect::<Vec<_>>(),
        "data": bs58::encode(&ix.data).into_string(),
        "stackHeight": stack_height,
    })
}

/// Inner instructions as `innerInstructions` shows them: one entry per top-level
/// instruction that made any, in compiled form (or with keys spelled out for `jsonParsed`).
pub fn inner_instructions_json(
    list: &InnerInstructionsList,
    parsed_keys: Option<&[Address]>,
) -> Value {
    list.iter()
        .enumerate()
        .filter(|(_, inner)| !inner.is_empty())
        .map(|(index, inner)| {
            let instructions: Vec<Value> = inner
                .iter()
                .map(|i| match parsed_keys {
                    Some(keys) => {
                        partially_decoded_json(&i.instruction, keys, Some(i.stack_height))
                    }
                    None => compiled_instruction_json(&i.instruction, Some(i.stack_height)),
                })
                .collect();
            json!({ "index": index, "instructions": instructions })
        })
        .collect()
}

/// `simulateTransaction`'s `value` (without `accounts`, which the caller fills in).
pub fn simulation_json(sim: &Simulation, inner_instructions: bool) -> Value {
    let executed = !matches!(
        sim.err,
        Some(TransactionError::BlockhashNotFound | TransactionError::AlreadyProcessed)
    );
    json!({
        "err": sim.err.as_ref().map(error_json),
        "logs": sim.logs,
        "accounts": null,
        "unitsConsumed": sim.units_consumed,
        "returnData": sim.return_data.as_ref().map(|(program, data)| json!({
            "programId": program.to_string(),
            "data": [BASE64.encode(data), "base64"],
        })),
        "innerInstructions": inner_instructions.then(|| inner_instructions_json(&sim.inner_instructions, None)),
        "replacementBlockhash": sim.replacement_blockhash.map(|(hash, last_valid)| json!({
            "blockhash": hash.to_string(),
            "lastValidBlockHeight": last_valid,
        })),
        "fee": executed.then_some(sim.fee),
    })
}

/// The version field of a transaction: `"legacy"` or its number.
pub fn version_json(tx: &VersionedTransaction) -> Value {
    match tx.version() {
        TransactionVersion::Legacy(_) => json!("legacy"),
        TransactionVersion::Number(n) => json!(n),
    }
}

/// A transaction in the requested encoding. `loaded`/`writable` describe the account keys
/// beyond the static ones (for `jsonParsed`).
pub fn transaction_json(
    tx: &VersionedTransaction,
    encoding: TransactionEncoding,
    loaded: &LoadedAddresses,
    writable: &[bool],
) -> Value {
    let binary = || wincode::serialize(tx).unwrap_or_default();
    let message = &tx.message;
    let signatures: Vec<String> = tx.signatures.iter().map(ToString::to_string).collect();
    let lookups = message.address_table_lookups().map(|lookups| {
        lookups
            .iter()
            .map(|l| {
                json!({
                    "accountKey": l.account_key.to_string(),
                    "writableIndexes": l.writable_indexes,
                    "readonlyIndexes": l.readonly_indexes,
                })
            })
            .collect::<Vec<_>>()
    });
    match encoding {
        TransactionEncoding::Binary => json!(bs58::encode(binary()).into_string()),
        TransactionEncoding::Base58 => json!([bs58::encode(binary()).into_string(), "base58"]),
        TransactionEncoding::Base64 => json!([BASE64.encode(binary()), "base64"]),
        TransactionEncoding::Json => {
            let header = message.header();
            let mut msg = json!({
                "header": {
                    "numRequiredSignatures": header.num_required_signatures,
                    "numReadonlySignedAccounts": header.num_readonly_signed_accounts,
                    "numReadonlyUnsignedAccounts": header.num_readonly_unsigned_accounts,
                },
                "accountKeys": message.static_account_keys().iter().map(ToString::to_string).collect::<Vec<_>>(),
                "recentBlockhash": message.recent_blockhash().to_string(),
                "instructions": message.instructions().iter().map(|ix| compiled_instruction_json(ix, None)).collect::<Vec<_>>(),
            });
            if let Some(lookups) = lookups {
                msg["addressTableLookups"] = json!(lookups);
            }
            json!({ "signatures": signatures, "message": msg })
        }
        TransactionEncoding::JsonParsed => {
            let static_keys = message.static_account_keys();
            let signers = usize::from(message.header().num_required_signatures);
            let all_keys: Vec<Address> = static_keys
                .iter()
                .chain(&loaded.writable)
                .chain(&loaded.readonly)
                .copied()
                .collect();
            let account_keys: Vec<Value> = all_keys
                .iter()
                .enumerate()
                .map(|(i, key)| {
                    json!({
                        "pubkey": key.to_string(),
                        "writable": writable.get(i).copied().unwrap_or(false),
                        "signer": i < signers,
                        "source": if i < static_keys.len() { "transaction" } else { "lookupTable" },
                    })
                })
                .collect();
            let mut msg = json!({
                "accountKeys": account_keys,
                "recentBlockhash": message.recent_blockhash().to_string(),
                "instructions": message.instructions().iter().map(|ix| partially_decoded_json(ix, &all_keys, None)).collect::<Vec<_>>(),
            });
            if let Some(lookups) = lookups {
                msg["addressTableLookups"] = json!(lookups);
            }
            json!({ "signatures": signatures, "message": msg })
        }
    }
}

fn token_balances_json(balances: &[TokenBalance]) -> Value {
    balances
        .iter()
        .map(|b| {
            json!({
                "accountIndex": b.account_index,
                "mint": b.mint.to_string(),
                "owner": b.owner.to_string(),
                "programId": b.program.to_string(),
                "uiTokenAmount": token::ui_token_amount(b.amount, b.decimals),
            })
        })
        .collect()
}

/// `getTransaction`'s result. `version`: include the `version` field (the caller gave
/// `maxSupportedTransactionVersion`).
pub fn record_json(record: &Record, encoding: TransactionEncoding, version: bool) -> Value {
    let tx = &record.transaction;
    let all_keys: Vec<Address> = tx
        .message
        .static_account_keys()
        .iter()
        .chain(&record.loaded.writable)
        .chain(&record.loaded.readonly)
        .copied()
        .collect();
    let parsed_keys = (encoding == TransactionEncoding::JsonParsed).then_some(&all_keys[..]);
    let meta = &record.meta;
    let mut meta_json = json!({
        "err": record.err.as_ref().map(error_json),
        "status": status_json(record.err.as_ref()),
        "fee": meta.fee,
        "preBalances": record.pre_balances,
        "postBalances": record.post_balances,
        "innerInstructions": inner_instructions_json(&meta.inner_instructions, parsed_keys),
        "logMessages": meta.logs,
        "preTokenBalances": token_balances_json(&record.pre_token_balances),
        "postTokenBalances": token_balances_json(&record.post_token_balances),
        "rewards": [],
        "loadedAddresses": {
            "writable": record.loaded.writable.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "readonly": record.loaded.readonly.iter().map(ToString::to_string).collect::<Vec<_>>(),
        },
        "computeUnitsConsumed": meta.compute_units_consumed,
    });
    if !meta.return_data.data.is_empty() {
        meta_json["returnData"] = json!({
            "programId": meta.return_data.program_id.to_string(),
            "data": [BASE64.encode(&meta.return_data.data), "base64"],
        });
    }
    let mut out = json!({
        "slot": record.slot,
        "blockTime": record.block_time,
        "meta": meta_json,
        "transaction": transaction_json(tx, encoding, &record.loaded, &record.writable),
    });
    if version {
        out["version"] = version_json(tx);
    }
    out
}
