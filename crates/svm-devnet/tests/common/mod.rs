//! Helpers shared by the integration tests: JSON-RPC over real HTTP, and transactions built
//! and signed as a client builds them (v0 messages, wincode, base64).

#![allow(dead_code)]

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use serde_json::{json, Value};
use solana_address::Address;
use solana_hash::Hash;
use solana_instruction::{AccountMeta, Instruction};
use solana_keypair::Keypair;
use solana_message::{v0, VersionedMessage};
use solana_signature::Signature;
use solana_signer::Signer;
use solana_transaction::versioned::VersionedTransaction;
use tollgate_svm_devnet::token::{
    associated_token_address, ASSOCIATED_TOKEN_PROGRAM, COMPUTE_BUDGET_PROGRAM, SYSTEM_PROGRAM,
};

/// The whole JSON-RPC response to `method(params)`.
pub async fn call(url: &str, method: &str, params: Value) -> Value {
    reqwest::Client::new()
        .post(url)
        .json(&json!({ "jsonrpc": "2.0", "id": 1, "method": method, "params": params }))
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("JSON response")
}

/// The `result` of `method(params)`; panics with the error object otherwise.
pub async fn result(url: &str, method: &str, params: Value) -> Value {
    let response = call(url, method, params).await;
    match response.get("result") {
        Some(r) => r.clone(),
        None => panic!("{method} failed: {response}"),
    }
}

/// The `error` of `method(params)`; panics if it succeeded.
pub async fn error(url: &str, method: &str, params: Value) -> Value {
    let response = call(url, method, params).await;
    match response.get("error") {
        Some(e) => e.clone(),
        None => panic!("{method} unexpectedly succeeded: {response}"),
    }
}

/// The latest blockhash, over RPC.
pub async fn blockhash(url: &str) -> Hash {
    let r = result(
        url,
        "getLatestBlockhash",
        json!([{ "commitment": "confirmed" }]),
    )
    .await;
    r["value"]["blockhash"].as_str().unwrap().parse().unwrap()
}

/// SPL Token's / Token-2022's `TransferChecked` (instruction 12).
pub fn transfer_checked(
    program: &Address,
    mint: &Address,
    from_owner: &Address,
    to_owner: &Address,
    amount: u64,
) -> Instruction {
    let mut data = vec![12];
    data.extend_from_slice(&amount.to_le_bytes());
    data.push(6);
    Instruction {
        program_id: *program,
        accounts: vec![
            AccountMeta::new(associated_token_address(from_owner, mint, program), false),
            AccountMeta::new_readonly(*mint, false),
            AccountMeta::new(associated_token_address(to_owner, mint, program), false),
            AccountMeta::new_readonly(*from_owner, true),
        ],
        data,
    }
}

/// The ATA program's `Create` for `owner`'s account of `mint`, paid by `funder`.
pub fn create_ata(
    funder: &Address,
    owner: &Address,
    mint: &Address,
    program: &Address,
) -> Instruction {
    Instruction {
        program_id: ASSOCIATED_TOKEN_PROGRAM,
        accounts: vec![
            AccountMeta::new(*funder, true),
            AccountMeta::new(associated_token_address(owner, mint, program), false),
            AccountMeta::new_readonly(*owner, false),
            AccountMeta::new_readonly(*mint, false),
            AccountMeta::new_readonly(SYSTEM_PROGRAM, false),
            AccountMeta::new_readonly(*program, false),
        ],
        data: Vec::new(),
    }
}

/// The compute-budget instructions an x402 payment starts with.
pub fn compute_budget() -> [Instruction; 2] {
    let mut limit = vec![2];
    limit.extend_from_slice(&20_000u32.to_le_bytes());
    let mut price = vec![3];
    price.extend_from_slice(&1u64.to_le_bytes());
    [
        Instruction {
            program_id: COMPUTE_BUDGET_PROGRAM,
            accounts: Vec::new(),
            data: limit,
        },
        Instruction {
            program_id: COMPUTE_BUDGET_PROGRAM,
            accounts: Vec::new(),
            data: price,
        },
    ]
}

/// A v0 message paid by `payer`.
pub fn message(payer: &Address, instructions: &[Instruction], blockhash: Hash) -> VersionedMessage {
    VersionedMessage::V0(v0::Message::try_compile(payer, instructions, &[], blockhash).unwrap())
}

/// A fully signed v0 transaction.
pub fn signed(
    payer: &Keypair,
    others: &[&Keypair],
    instructions: &[Instruction],
    blockhash: Hash,
) -> VersionedTransaction {
    let mut signers = vec![payer];
    signers.extend_from_slice(others);
    VersionedTransaction::try_new(message(&payer.pubkey(), instructions, blockhash), &signers)
        .unwrap()
}

/// A transaction signed by `signer` only; the fee payer's slot (the first) is left zeroed, as
/// an x402 client hands it to the facilitator.
pub fn partially_signed(
    fee_payer: &Address,
    signer: &Keypair,
    instructions: &[Instruction],
    blockhash: Hash,
) -> VersionedTransaction {
    let message = message(fee_payer, instructions, blockhash);
    let bytes = message.serialize();
    let keys = message.static_account_keys();
    let signatures = keys[..usize::from(message.header().num_required_signatures)]
        .iter()
        .map(|k| {
            if *k == signer.pubkey() {
                signer.sign_message(&bytes)
            } else {
                Signature::default()
            }
        })
        .collect();
    VersionedTransaction {
        signatures,
        message,
    }
}

/// Base64 of the wire form.
pub fn b64(tx: &VersionedTransaction) -> String {
    BASE64.encode(wincode::serialize(tx).unwrap())
}

/// Base58 of the wire form.
pub fn b58(tx: &VersionedTransaction) -> String {
    bs58::encode(wincode::serialize(tx).unwrap()).into_string()
}

/// Polls `getSignatureStatuses` until the signature has a status.
pub async fn confirmed(url: &str, signature: &str) -> Value {
    for _ in 0..100 {
        let r = result(url, "getSignatureStatuses", json!([[signature]])).await;
        let status = &r["value"][0];
        if !status.is_null() {
            return status.clone();
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("{signature} never got a status");
}
