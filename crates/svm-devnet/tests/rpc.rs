//! The devnet over its JSON-RPC, through real HTTP: identity and reads, real token transfers
//! for both token programs, deduplication, blockhash expiry, partially signed simulation,
//! Solana's error shapes, and malformed input.

mod common;

use common::*;
use serde_json::{json, Value};
use solana_hash::Hash;
use solana_keypair::Keypair;
use solana_signer::Signer;
use std::time::Duration;
use tollgate_svm_devnet::token::{associated_token_address, TOKEN_2022_PROGRAM, TOKEN_PROGRAM};
use tollgate_svm_devnet::{
    SvmDevnet, DEVNET_GENESIS_HASH, INITIAL_LAMPORTS, INITIAL_TOKENS, USDC_MINT,
};

#[tokio::test]
async fn identity_and_genesis_reads() {
    let devnet = SvmDevnet::start().await.unwrap();
    let url = devnet.url();
    assert!(url.starts_with("http://127.0.0.1:"));
    assert_eq!(
        result(url, "getGenesisHash", json!([])).await,
        DEVNET_GENESIS_HASH
    );
    assert_eq!(devnet.caip2(), "solana:EtWTRABZaYq6iMfeYKouRu166VU2xqa1");
    assert_eq!(result(url, "getHealth", json!([])).await, "ok");
    let version = result(url, "getVersion", json!([])).await;
    assert!(version["solana-core"].as_str().unwrap().starts_with("2."));
    assert!(version["feature-set"].is_u64());

    // The mint, as @solana/kit's fetchMint reads it.
    let mint = result(
        url,
        "getAccountInfo",
        json!([USDC_MINT, { "encoding": "base64" }]),
    )
    .await;
    assert!(mint["context"]["slot"].is_u64());
    let value = &mint["value"];
    assert_eq!(value["owner"], TOKEN_PROGRAM.to_string());
    assert_eq!(value["space"], 82);
    assert_eq!(value["data"][1], "base64");
    let parsed = result(
        url,
        "getAccountInfo",
        json!([USDC_MINT, { "encoding": "jsonParsed" }]),
    )
    .await;
    let info = &parsed["value"]["data"]["parsed"]["info"];
    assert_eq!(parsed["value"]["data"]["program"], "spl-token");
    assert_eq!(info["decimals"], 6);
    assert_eq!(info["supply"], (INITIAL_TOKENS * 10).to_string());
    assert_eq!(
        info["mintAuthority"],
        devnet.accounts()[0].address.to_string()
    );
    assert_eq!(info["freezeAuthority"], Value::Null);

    let t22 = devnet.token2022_mint();
    let t22_account = result(
        url,
        "getAccountInfo",
        json!([t22.to_string(), { "encoding": "base64" }]),
    )
    .await;
    assert_eq!(
        t22_account["value"]["owner"],
        TOKEN_2022_PROGRAM.to_string()
    );

    // Every dev account: lamports, and an ATA per mint.
    let owner = devnet.accounts()[4].address;
    let balance = result(url, "getBalance", json!([owner.to_string()])).await;
    assert_eq!(balance["value"], INITIAL_LAMPORTS);
    for (mint, program) in [
        (devnet.usdc_mint(), TOKEN_PROGRAM),
        (t22, TOKEN_2022_PROGRAM),
    ] {
        let ata = associated_token_address(&owner, &mint, &program);
        let b = result(url, "getTokenAccountBalance", json!([ata.to_string()])).await;
        assert_eq!(
            b["value"],
            json!({ "amount": "1000000000", "decimals": 6, "uiAmount": 1000.0, "uiAmountString": "1000" })
        );
        assert_eq!(devnet.token_balance(&owner, &mint), INITIAL_TOKENS);
        let parsed = result(
            url,
            "getAccountInfo",
            json!([ata.to_string(), { "encoding": "jsonParsed" }]),
        )
        .await;
        let info = &parsed["value"]["data"]["parsed"]["info"];
        assert_eq!(info["owner"], owner.to_string());
        assert_eq!(info["state"], "initialized");
        assert_eq!(info["tokenAmount"]["uiAmountString"], "1000");
    }

    // Absent accounts are null; several at once.
    let fresh = Keypair::new().pubkey().to_string();
    let absent = result(
        url,
        "getAccountInfo",
        json!([fresh, { "encoding": "base64" }]),
    )
    .await;
    assert_eq!(absent["value"], Value::Null);
    let many = result(
        url,
        "getMultipleAccounts",
        json!([[USDC_MINT, fresh], { "encoding": "base64" }]),
    )
    .await;
    assert_eq!(many["value"][0]["owner"], TOKEN_PROGRAM.to_string());
    assert_eq!(many["value"][1], Value::Null);

    let by_owner = result(
        url,
        "getTokenAccountsByOwner",
        json!([owner.to_string(), { "programId": TOKEN_2022_PROGRAM.to_string() }, { "encoding": "jsonParsed" }]),
    )
    .await;
    assert_eq!(by_owner["value"].as_array().unwrap().len(), 1);
    assert_eq!(
        by_owner["value"][0]["pubkey"],
        associated_token_address(&owner, &t22, &TOKEN_2022_PROGRAM).to_string()
    );

    let rent = result(url, "getMinimumBalanceForRentExemption", json!([165])).await;
    assert_eq!(rent, 2_039_280);

    // Blockhash and heights agree.
    let latest = result(url, "getLatestBlockhash", json!([])).await;
    let height = result(url, "getBlockHeight", json!([]))
        .await
        .as_u64()
        .unwrap();
    let last_valid = latest["value"]["lastValidBlockHeight"].as_u64().unwrap();
    assert!(
        last_valid >= height + 150 && last_valid <= height + 152,
        "{latest} at {height}"
    );
    let valid = result(
        url,
        "isBlockhashValid",
        json!([latest["value"]["blockhash"], {}]),
    )
    .await;
    assert_eq!(valid["value"], true);
    let epoch = result(url, "getEpochInfo", json!([])).await;
    assert!(epoch["absoluteSlot"].as_u64().unwrap() >= height);

    // facts(): what the CLI prints.
    let facts = devnet.facts();
    assert_eq!(facts["network"], devnet.caip2());
    assert_eq!(facts["rpcUrl"], url);
    assert_eq!(facts["mints"]["usdc"]["address"], USDC_MINT);
    assert_eq!(
        facts["mints"]["token2022"]["tokenProgram"],
        TOKEN_2022_PROGRAM.to_string()
    );
    let secret = facts["accounts"][2]["secretKey"].as_str().unwrap();
    assert_eq!(
        Keypair::from_base58_string(secret).pubkey(),
        devnet.accounts()[2].address
    );
    assert!(
        !format!("{:?}", devnet.accounts()).contains(&format!("{:?}", devnet.accounts()[0].secret))
    );
}

#[tokio::test]
async fn transfer_checked_confirms_moves_balances_and_is_deduplicated() {
    let devnet = SvmDevnet::start().await.unwrap();
    let url = devnet.url();
    let from = devnet.keypair(1);
    let to = devnet.accounts()[2].address;
    for (mint, program) in [
        (devnet.usdc_mint(), TOKEN_PROGRAM),
        (devnet.token2022_mint(), TOKEN_2022_PROGRAM),
    ] {
        let hash = blockhash(url).await;
        let mut ixs = compute_budget().to_vec();
        ixs.push(transfer_checked(
            &program,
            &mint,
            &from.pubkey(),
            &to,
            250_000,
        ));
        let tx = signed(&from, &[], &ixs, hash);
        let lamports_before = devnet.lamports(&from.pubkey());
        let sig = result(
            url,
            "sendTransaction",
            json!([b64(&tx), { "encoding": "base64" }]),
        )
        .await;
        assert_eq!(sig, tx.signatures[0].to_string());
        let status = confirmed(url, sig.as_str().unwrap()).await;
        assert_eq!(status["err"], Value::Null);
        assert_eq!(status["status"], json!({ "Ok": null }));
        assert_eq!(status["confirmationStatus"], "finalized");
        assert_eq!(status["confirmations"], Value::Null);
        assert_eq!(
            devnet.token_balance(&from.pubkey(), &mint),
            INITIAL_TOKENS - 250_000
        );
        assert_eq!(devnet.token_balance(&to, &mint), INITIAL_TOKENS + 250_000);
        // 5,000 per signature plus the priority fee (1 micro-lamport × 20,000 CU, rounded up).
        assert_eq!(devnet.lamports(&from.pubkey()), lamports_before - 5_001);

        // The same transaction again: the status cache refuses it, as a validator's does,
        // even after the blockhash moved on.
        devnet.advance_slots(10);
        let again = error(
            url,
            "sendTransaction",
            json!([b64(&tx), { "encoding": "base64" }]),
        )
        .await;
        assert_eq!(again["code"], -32002);
        assert_eq!(again["data"]["err"], "AlreadyProcessed");
        let sim = result(
            url,
            "simulateTransaction",
            json!([b64(&tx), { "encoding": "base64" }]),
        )
        .await;
        assert_eq!(sim["value"]["err"], "AlreadyProcessed");
        assert_eq!(devnet.token_balance(&to, &mint), INITIAL_TOKENS + 250_000);

        // The transaction, as getTransaction shows it.
        let got = result(
            url,
            "getTransaction",
            json!([sig, { "encoding": "json", "maxSupportedTransactionVersion": 0, "commitment": "confirmed" }]),
        )
        .await;
        assert_eq!(got["version"], 0);
        assert_eq!(got["meta"]["err"], Value::Null);
        assert_eq!(got["meta"]["fee"], 5_001);
        assert_eq!(got["transaction"]["signatures"][0], sig);
        assert!(got["meta"]["logMessages"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l
                .as_str()
                .unwrap()
                .contains(&format!("Program {program} success"))));
        let post = got["meta"]["postTokenBalances"].as_array().unwrap();
        let (owner, amount) = (to.to_string(), (INITIAL_TOKENS + 250_000).to_string());
        assert!(post.iter().any(|b| b["owner"].as_str() == Some(&owner)
            && b["uiTokenAmount"]["amount"].as_str() == Some(&amount)));
        let legacy_client =
            error(url, "getTransaction", json!([sig, { "encoding": "json" }])).await;
        assert_eq!(legacy_client["code"], -32015);
        let b64_form = result(
            url,
            "getTransaction",
            json!([sig, { "encoding": "base64", "maxSupportedTransactionVersion": 0 }]),
        )
        .await;
        assert_eq!(b64_form["transaction"], json!([b64(&tx), "base64"]));
    }
    let count = result(url, "getTransactionCount", json!([])).await;
    assert_eq!(count, 2);
}

#[tokio::test]
async fn base58_transactions_and_fresh_associated_accounts() {
    let devnet = SvmDevnet::start().await.unwrap();
    let url = devnet.url();
    let funder = devnet.keypair(3);
    let fresh = Keypair::new().pubkey();
    for (mint, program) in [
        (devnet.usdc_mint(), TOKEN_PROGRAM),
        (devnet.token2022_mint(), TOKEN_2022_PROGRAM),
    ] {
        let hash = blockhash(url).await;
        let tx = signed(
            &funder,
            &[],
            &[
                create_ata(&funder.pubkey(), &fresh, &mint, &program),
                transfer_checked(&program, &mint, &funder.pubkey(), &fresh, 42),
            ],
            hash,
        );
        // Base58 is the (deprecated) default encoding.
        let sig = result(url, "sendTransaction", json!([b58(&tx)])).await;
        let status = confirmed(url, sig.as_str().unwrap()).await;
        assert_eq!(status["err"], Value::Null, "{status}");
        assert_eq!(devnet.token_balance(&fresh, &mint), 42);
        let ata = associated_token_address(&fresh, &mint, &program);
        let parsed = result(
            url,
            "getAccountInfo",
            json!([ata.to_string(), { "encoding": "jsonParsed" }]),
        )
        .await;
        assert_eq!(
            parsed["value"]["data"]["parsed"]["info"]["tokenAmount"]["amount"],
            "42"
        );
    }
}

#[tokio::test]
async fn unknown_and_expired_blockhashes_are_not_found() {
    let devnet = SvmDevnet::start().await.unwrap();
    let url = devnet.url();
    let from = devnet.keypair(1);
    let to = devnet.accounts()[2].address;
    let ix = transfer_checked(&TOKEN_PROGRAM, &devnet.usdc_mint(), &from.pubkey(), &to, 1);

    let unknown = signed(
        &from,
        &[],
        std::slice::from_ref(&ix),
        Hash::new_from_array([9; 32]),
    );
    let sim = result(
        url,
        "simulateTransaction",
        json!([b64(&unknown), { "encoding": "base64" }]),
    )
    .await;
    assert_eq!(sim["value"]["err"], "BlockhashNotFound");
    let e = error(
        url,
        "sendTransaction",
        json!([b64(&unknown), { "encoding": "base64" }]),
    )
    .await;
    assert_eq!(e["code"], -32002);
    assert_eq!(
        e["message"],
        "Transaction simulation failed: Blockhash not found"
    );
    assert_eq!(e["data"]["err"], "BlockhashNotFound");

    // A blockhash stays usable for 150 blocks, and not one more.
    let hash = blockhash(url).await;
    devnet.advance_slots(140);
    let tx = signed(&from, &[], &[ix], hash);
    let ok = result(
        url,
        "simulateTransaction",
        json!([b64(&tx), { "encoding": "base64" }]),
    )
    .await;
    assert_eq!(ok["value"]["err"], Value::Null, "{ok}");
    devnet.advance_slots(11);
    let valid = result(url, "isBlockhashValid", json!([hash.to_string()])).await;
    assert_eq!(valid["value"], false);
    let sim = result(
        url,
        "simulateTransaction",
        json!([b64(&tx), { "encoding": "base64" }]),
    )
    .await;
    assert_eq!(sim["value"]["err"], "BlockhashNotFound");
    let e = error(
        url,
        "sendTransaction",
        json!([b64(&tx), { "encoding": "base64" }]),
    )
    .await;
    assert_eq!(e["data"]["err"], "BlockhashNotFound");
    assert_eq!(
        devnet.token_balance(&to, &devnet.usdc_mint()),
        INITIAL_TOKENS
    );

    // replaceRecentBlockhash simulates against the latest one.
    let replaced = result(
        url,
        "simulateTransaction",
        json!([b64(&tx), { "encoding": "base64", "replaceRecentBlockhash": true }]),
    )
    .await;
    assert_eq!(replaced["value"]["err"], Value::Null, "{replaced}");
    assert_eq!(
        replaced["value"]["replacementBlockhash"]["blockhash"],
        blockhash(url).await.to_string()
    );
    // With skipPreflight an expired transaction is dropped: a signature, never a status.
    let sig = result(
        url,
        "sendTransaction",
        json!([b64(&tx), { "encoding": "base64", "skipPreflight": true }]),
    )
    .await;
    let status = result(url, "getSignatureStatuses", json!([[sig]])).await;
    assert_eq!(status["value"][0], Value::Null);
}

#[tokio::test]
async fn partially_signed_transactions_simulate_without_sig_verify() {
    let devnet = SvmDevnet::start().await.unwrap();
    let url = devnet.url();
    let facilitator = devnet.accounts()[0].address;
    let payer = devnet.keypair(1);
    let to = devnet.accounts()[2].address;
    let mut ixs = compute_budget().to_vec();
    ixs.push(transfer_checked(
        &TOKEN_PROGRAM,
        &devnet.usdc_mint(),
        &payer.pubkey(),
        &to,
        10,
    ));
    let tx = partially_signed(&facilitator, &payer, &ixs, blockhash(url).await);
    assert_eq!(tx.signatures[0], Default::default());

    // sigVerify defaults to false.
    let sim = result(
        url,
        "simulateTransaction",
        json!([b64(&tx), { "encoding": "base64", "commitment": "confirmed", "innerInstructions": true }]),
    )
    .await;
    assert_eq!(sim["value"]["err"], Value::Null, "{sim}");
    assert!(sim["value"]["unitsConsumed"].as_u64().unwrap() > 0);
    assert!(sim["value"]["logs"].as_array().unwrap().len() >= 2);
    assert_eq!(sim["value"]["accounts"], Value::Null);
    assert!(sim["value"]["innerInstructions"].is_array());
    assert_eq!(
        devnet.token_balance(&to, &devnet.usdc_mint()),
        INITIAL_TOKENS
    );

    // Post-simulation accounts on request.
    let to_ata = associated_token_address(&to, &devnet.usdc_mint(), &TOKEN_PROGRAM);
    let with_accounts = result(
        url,
        "simulateTransaction",
        json!([b64(&tx), { "encoding": "base64", "accounts": { "addresses": [to_ata.to_string()], "encoding": "jsonParsed" } }]),
    )
    .await;
    assert_eq!(
        with_accounts["value"]["accounts"][0]["data"]["parsed"]["info"]["tokenAmount"]["amount"],
        (INITIAL_TOKENS + 10).to_string()
    );

    // With sigVerify the zeroed fee-payer signature fails, and so does sending it.
    let e = error(
        url,
        "simulateTransaction",
        json!([b64(&tx), { "encoding": "base64", "sigVerify": true }]),
    )
    .await;
    assert_eq!(e["code"], -32003);
    let e = error(
        url,
        "sendTransaction",
        json!([b64(&tx), { "encoding": "base64" }]),
    )
    .await;
    assert_eq!(e["code"], -32003);
    let e = error(
        url,
        "simulateTransaction",
        json!([b64(&tx), { "encoding": "base64", "sigVerify": true, "replaceRecentBlockhash": true }]),
    )
    .await;
    assert_eq!(e["code"], -32602);
}

#[tokio::test]
async fn insufficient_funds_is_custom_error_1() {
    let devnet = SvmDevnet::start().await.unwrap();
    let url = devnet.url();
    let from = devnet.keypair(5);
    let to = devnet.accounts()[6].address;
    let mut ixs = compute_budget().to_vec();
    ixs.push(transfer_checked(
        &TOKEN_2022_PROGRAM,
        &devnet.token2022_mint(),
        &from.pubkey(),
        &to,
        INITIAL_TOKENS + 1,
    ));
    let tx = signed(&from, &[], &ixs, blockhash(url).await);
    let lamports = devnet.lamports(&from.pubkey());
    let custom_1 = json!({ "InstructionError": [2, { "Custom": 1 }] });

    let sim = result(
        url,
        "simulateTransaction",
        json!([b64(&tx), { "encoding": "base64" }]),
    )
    .await;
    assert_eq!(sim["value"]["err"], custom_1);

    let e = error(
        url,
        "sendTransaction",
        json!([b64(&tx), { "encoding": "base64" }]),
    )
    .await;
    assert_eq!(e["code"], -32002);
    assert_eq!(
        e["message"],
        "Transaction simulation failed: Error processing Instruction 2: custom program error: 0x1"
    );
    assert_eq!(e["data"]["err"], custom_1);
    assert!(
        e["data"]["logs"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l.as_str().unwrap().contains("insufficient funds")),
        "{e}"
    );
    // A failed preflight changes nothing, not even the fee.
    assert_eq!(devnet.lamports(&from.pubkey()), lamports);
    let sig = tx.signatures[0].to_string();
    assert_eq!(
        result(url, "getSignatureStatuses", json!([[sig]])).await["value"][0],
        Value::Null
    );

    // skipPreflight: it executes, fails, pays its fee and is recorded with its error.
    let sig = result(
        url,
        "sendTransaction",
        json!([b64(&tx), { "encoding": "base64", "skipPreflight": true }]),
    )
    .await;
    let status = confirmed(url, sig.as_str().unwrap()).await;
    assert_eq!(status["err"], custom_1);
    assert_eq!(status["status"], json!({ "Err": custom_1 }));
    assert_eq!(devnet.lamports(&from.pubkey()), lamports - 5_001);
    assert_eq!(
        devnet.token_balance(&to, &devnet.token2022_mint()),
        INITIAL_TOKENS
    );
    let got = result(
        url,
        "getTransaction",
        json!([sig, { "maxSupportedTransactionVersion": 0 }]),
    )
    .await;
    assert_eq!(got["meta"]["err"], custom_1);
}

#[tokio::test]
async fn malformed_requests_get_json_rpc_errors() {
    let devnet = SvmDevnet::start().await.unwrap();
    let url = devnet.url();
    let client = reqwest::Client::new();
    let post = |body: Vec<u8>| {
        client
            .post(url)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };

    let r: Value = post(b"{not json".to_vec())
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["error"]["code"], -32700);
    assert_eq!(r["id"], Value::Null);

    let r: Value = post(b"[]".to_vec()).await.unwrap().json().await.unwrap();
    assert_eq!(r["error"]["code"], -32600);

    let r: Value = post(b"42".to_vec()).await.unwrap().json().await.unwrap();
    assert_eq!(r["error"]["code"], -32600);

    let too_big = post(vec![b' '; 2 << 20]).await.unwrap();
    assert_eq!(too_big.status(), 413);

    let e = error(url, "getBalances", json!([])).await;
    assert_eq!(e["code"], -32601);
    for (method, params) in [
        ("getBalance", json!(["not-an-address"])),
        ("getBalance", json!([])),
        ("getBalance", json!({ "pubkey": USDC_MINT })),
        (
            "getAccountInfo",
            json!([USDC_MINT, { "encoding": "base64+zstd" }]),
        ),
        (
            "getAccountInfo",
            json!([USDC_MINT, { "encoding": "nonsense" }]),
        ),
        ("sendTransaction", json!(["!!!", { "encoding": "base64" }])),
        ("sendTransaction", json!(["AAAA", { "encoding": "base64" }])),
        (
            "sendTransaction",
            json!([std::iter::repeat_n('A', 4000).collect::<String>(), { "encoding": "base64" }]),
        ),
        (
            "simulateTransaction",
            json!(["3vZ", { "encoding": "base58" }]),
        ),
        ("getSignatureStatuses", json!([["nope"]])),
        ("getTransaction", json!(["nope"])),
        ("getFeeForMessage", json!(["AAAA"])),
        ("getMinimumBalanceForRentExemption", json!([-1])),
        ("getTokenAccountBalance", json!([USDC_MINT])),
    ] {
        let e = error(url, method, params.clone()).await;
        assert_eq!(e["code"], -32602, "{method} {params}: {e}");
    }

    // Batches: one answer per request with an id, in order; notifications get none.
    let r: Value = client
        .post(url)
        .json(&json!([
            { "jsonrpc": "2.0", "id": 1, "method": "getSlot" },
            { "jsonrpc": "2.0", "method": "getSlot" },
            { "jsonrpc": "2.0", "id": "two", "method": "nope" },
        ]))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let answers = r.as_array().unwrap();
    assert_eq!(answers.len(), 2);
    assert!(answers[0]["result"].is_u64());
    assert_eq!(answers[1]["id"], "two");
    assert_eq!(answers[1]["error"]["code"], -32601);
}

#[tokio::test]
async fn airdrops_fees_and_the_slot_ticker() {
    let devnet = SvmDevnet::builder()
        .slot_interval(Duration::from_millis(10))
        .start()
        .await
        .unwrap();
    let url = devnet.url();
    let start = devnet.slot();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(devnet.slot() >= start + 5, "{} -> {}", start, devnet.slot());
    let slot = result(url, "getSlot", json!([{ "commitment": "finalized" }])).await;
    assert!(slot.as_u64().unwrap() >= start + 5);

    let fresh = Keypair::new().pubkey();
    for _ in 0..2 {
        let sig = result(
            url,
            "requestAirdrop",
            json!([fresh.to_string(), 1_000_000_000u64]),
        )
        .await;
        let status = confirmed(url, sig.as_str().unwrap()).await;
        assert_eq!(status["err"], Value::Null);
    }
    assert_eq!(devnet.lamports(&fresh), 2_000_000_000);

    let from = devnet.keypair(1);
    let mut ixs = compute_budget().to_vec();
    ixs.push(transfer_checked(
        &TOKEN_PROGRAM,
        &devnet.usdc_mint(),
        &from.pubkey(),
        &fresh,
        1,
    ));
    let hash = blockhash(url).await;
    let msg = message(&from.pubkey(), &ixs, hash);
    let encoded = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        wincode::serialize(&msg).unwrap(),
    );
    let fee = result(
        url,
        "getFeeForMessage",
        json!([encoded, { "commitment": "confirmed" }]),
    )
    .await;
    assert_eq!(fee["value"], 5_001);
    assert_eq!(
        result(url, "getRecentPrioritizationFees", json!([])).await,
        json!([])
    );
}

#[tokio::test]
async fn dropping_the_devnet_closes_its_port() {
    let devnet = SvmDevnet::start().await.unwrap();
    let url = devnet.url().to_string();
    assert_eq!(result(&url, "getHealth", json!([])).await, "ok");
    drop(devnet);
    assert!(reqwest::Client::new()
        .post(&url)
        .json(&json!({ "jsonrpc": "2.0", "id": 1, "method": "getHealth" }))
        .timeout(Duration::from_secs(2))
        .send()
        .await
        .is_err());
}
