//! The devnet over its JSON-RPC: refused transactions change nothing, receipts and logs are
//! those of the executed bytecode, batches and malformed bodies get JSON-RPC answers.

use alloy::eips::eip2718::Encodable2718;
use alloy::network::{Ethereum, EthereumWallet, NetworkTransactionBuilder, TransactionBuilder};
use alloy::primitives::{Address, Bytes, U256};
use alloy::providers::{Provider, ProviderBuilder};
use alloy::rpc::types::{Filter, TransactionRequest};
use alloy::signers::local::PrivateKeySigner;
use alloy::sol_types::{SolCall, SolEvent};
use serde_json::{json, Value};
use tollgate_devnet::Devnet;

alloy::sol! {
    event Transfer(address indexed from, address indexed to, uint256 value);
    function transfer(address to, uint256 amount) external returns (bool);
}

fn key(devnet: &Devnet, i: usize) -> PrivateKeySigner {
    devnet.accounts()[i].key.parse().unwrap()
}

async fn signed(signer: PrivateKeySigner, tx: TransactionRequest) -> Bytes {
    let wallet = EthereumWallet::from(signer);
    let envelope = <TransactionRequest as NetworkTransactionBuilder<Ethereum>>::build(tx, &wallet)
        .await
        .unwrap();
    envelope.encoded_2718().into()
}

fn transfer_tx(devnet: &Devnet, from: Address, nonce: u64) -> TransactionRequest {
    TransactionRequest::default()
        .with_from(from)
        .with_to(Address::repeat_byte(0x42))
        .with_value(U256::from(1u64))
        .with_nonce(nonce)
        .with_chain_id(devnet.chain_id())
        .with_gas_limit(21_000)
        .with_max_fee_per_gas(10_000_000_000)
        .with_max_priority_fee_per_gas(1_000_000_000)
}

async fn rpc(url: &str, body: Value) -> Value {
    reqwest::Client::new()
        .post(url)
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test]
async fn refused_transactions_get_an_error_and_change_nothing() {
    let devnet = Devnet::start().await.unwrap();
    let url = devnet.url();
    let provider = ProviderBuilder::new().connect_http(url.parse().unwrap());
    let sender = devnet.accounts()[0].address;
    let nonce = provider.get_transaction_count(sender).await.unwrap();
    assert_eq!(
        nonce, 16,
        "genesis: 3 deployments, 9 mints, 2 token deployments, 2 batch mints"
    );
    let balance = provider.get_balance(sender).await.unwrap();
    let block = provider.get_block_number().await.unwrap();

    let too_low = signed(key(&devnet, 0), transfer_tx(&devnet, sender, 3)).await;
    let too_high = signed(key(&devnet, 0), transfer_tx(&devnet, sender, nonce + 5)).await;
    let pauper = PrivateKeySigner::random();
    let broke = signed(pauper.clone(), transfer_tx(&devnet, pauper.address(), 0)).await;
    let mut bad_signature = signed(key(&devnet, 0), transfer_tx(&devnet, sender, nonce))
        .await
        .to_vec();
    // The signature's `s` ends the envelope: flipping a bit makes the recovered signer
    // someone else (without funds) or no one at all.
    let last = bad_signature.len() - 1;
    bad_signature[last] ^= 0x01;
    let wrong_chain = signed(
        key(&devnet, 0),
        transfer_tx(&devnet, sender, nonce).with_chain_id(1),
    )
    .await;
    let cases: [(&str, Vec<u8>, &str); 6] = [
        ("garbage", vec![0x02, 0xff, 0x00], "decode"),
        ("nonce too low", too_low.to_vec(), "nonce too low"),
        ("nonce too high", too_high.to_vec(), "nonce too high"),
        ("insufficient funds", broke.to_vec(), "insufficient funds"),
        ("bad signature", bad_signature, ""),
        ("wrong chain", wrong_chain.to_vec(), "chain id"),
    ];
    for (name, raw, needle) in cases {
        let r = rpc(
            &url,
            json!({ "jsonrpc": "2.0", "id": 1, "method": "eth_sendRawTransaction", "params": [Bytes::from(raw)] }),
        )
        .await;
        let err = &r["error"];
        assert!(err.is_object(), "{name}: {r}");
        assert!(
            err["message"].as_str().unwrap().contains(needle),
            "{name}: {r}"
        );
    }
    assert_eq!(provider.get_transaction_count(sender).await.unwrap(), nonce);
    assert_eq!(provider.get_balance(sender).await.unwrap(), balance);
    assert_eq!(provider.get_block_number().await.unwrap(), block);

    // The same transaction, well formed, goes through.
    let good = signed(key(&devnet, 0), transfer_tx(&devnet, sender, nonce)).await;
    let pending = provider.send_raw_transaction(&good).await.unwrap();
    let receipt = pending.get_receipt().await.unwrap();
    assert!(receipt.status());
    assert_eq!(provider.get_block_number().await.unwrap(), block + 1);
    assert_eq!(
        provider
            .get_balance(Address::repeat_byte(0x42))
            .await
            .unwrap(),
        U256::from(1u64)
    );
}

#[tokio::test]
async fn receipts_and_logs_come_from_the_executed_token() {
    let devnet = Devnet::start().await.unwrap();
    let url = devnet.url();
    let payer = key(&devnet, 1);
    let payer_address = payer.address();
    let provider = ProviderBuilder::new()
        .wallet(EthereumWallet::from(payer))
        .connect_http(url.parse().unwrap());
    let to = devnet.accounts()[2].address;
    let call = transferCall {
        to,
        amount: U256::from(1_500_000u64),
    };
    let tx = TransactionRequest::default()
        .with_to(devnet.token())
        .with_input(call.abi_encode());
    let receipt = provider
        .send_transaction(tx)
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    assert!(receipt.status());
    assert!(receipt.gas_used > 21_000);
    let logs = receipt.inner.logs();
    assert_eq!(logs.len(), 1);
    let event = Transfer::decode_log_data(logs[0].data()).unwrap();
    assert_eq!((event.from, event.to), (payer_address, to));
    assert_eq!(event.value, U256::from(1_500_000u64));
    let block = receipt.block_number.unwrap();
    let by_hash = provider
        .get_transaction_by_hash(receipt.transaction_hash)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(by_hash.block_number, Some(block));

    // A reverting call is an `execution reverted` error.
    let overdraw = transferCall {
        to,
        amount: U256::from(10u64).pow(U256::from(18u64)),
    };
    let err = provider
        .call(
            TransactionRequest::default()
                .with_from(payer_address)
                .with_to(devnet.token())
                .with_input(overdraw.abi_encode()),
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("execution reverted"), "{err}");

    let all = Filter::new().from_block(0u64).to_block(block);
    let token_logs = provider
        .get_logs(&all.clone().address(devnet.token()))
        .await
        .unwrap();
    assert_eq!(token_logs.len(), 1);
    assert_eq!(
        token_logs[0].transaction_hash,
        Some(receipt.transaction_hash)
    );
    let by_topic = all
        .clone()
        .event_signature(Transfer::SIGNATURE_HASH)
        .topic2(to.into_word());
    assert_eq!(provider.get_logs(&by_topic).await.unwrap().len(), 1);
    let other_recipient = all
        .clone()
        .event_signature(Transfer::SIGNATURE_HASH)
        .topic2(Address::repeat_byte(7).into_word());
    assert!(provider
        .get_logs(&other_recipient)
        .await
        .unwrap()
        .is_empty());
    let other_address = all.clone().address(Address::repeat_byte(7));
    assert!(provider.get_logs(&other_address).await.unwrap().is_empty());
    let before = Filter::new().from_block(0u64).to_block(block - 1);
    assert!(provider.get_logs(&before).await.unwrap().is_empty());

    let block = provider
        .get_block_by_number(block.into())
        .await
        .unwrap()
        .unwrap();
    assert!(block.header.base_fee_per_gas.is_some());
    assert_eq!(block.transactions.len(), 1);
}

#[tokio::test]
async fn batches_and_malformed_bodies_get_json_rpc_answers() {
    let devnet = Devnet::builder().chain_id(84532).start().await.unwrap();
    let url = devnet.url();
    let r = rpc(
        &url,
        json!([
            { "jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": [] },
            { "jsonrpc": "2.0", "id": 2, "method": "net_version" },
            { "jsonrpc": "2.0", "id": 3, "method": "no_such_method", "params": [] },
            { "jsonrpc": "2.0", "id": 4, "method": "eth_getBalance", "params": ["nonsense"] },
        ]),
    )
    .await;
    assert_eq!(r[0]["result"], "0x14a34");
    assert_eq!(r[1]["result"], "84532");
    assert_eq!(r[2]["error"]["code"], -32601);
    assert_eq!(r[3]["error"]["code"], -32602);
    let text: Value = reqwest::Client::new()
        .post(&url)
        .body("{not json")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(text["error"]["code"], -32700);
    let r = rpc(&url, json!([])).await;
    assert_eq!(r["error"]["code"], -32600);
}

#[tokio::test]
async fn mempool_waits_for_evm_mine_and_refuses_underpriced_replacements() {
    let devnet = Devnet::start().await.unwrap();
    let url = devnet.url();
    let provider = ProviderBuilder::new().connect_http(url.parse().unwrap());
    let sender = devnet.accounts()[3].address;
    let call = |method: &str, params: Value| {
        let url = url.clone();
        let method = method.to_owned();
        async move {
            rpc(
                &url,
                json!({ "jsonrpc": "2.0", "id": 1, "method": method, "params": params }),
            )
            .await
        }
    };
    assert_eq!(
        call("evm_setAutomine", json!([false])).await["result"],
        true
    );
    let block = provider.get_block_number().await.unwrap();
    let first = signed(key(&devnet, 3), transfer_tx(&devnet, sender, 0)).await;
    let hash = call("eth_sendRawTransaction", json!([first])).await["result"].clone();
    assert!(hash.is_string());
    let pending = call("eth_getTransactionCount", json!([sender, "pending"])).await;
    assert_eq!(pending["result"], "0x1");
    let latest = call("eth_getTransactionCount", json!([sender, "latest"])).await;
    assert_eq!(latest["result"], "0x0");
    let tx = call("eth_getTransactionByHash", json!([hash])).await;
    assert!(tx["result"]["blockNumber"].is_null(), "{tx}");
    assert!(call("eth_getTransactionReceipt", json!([hash])).await["result"].is_null());

    // Same nonce, same fees: refused; the original stays.
    let same_fees = signed(
        key(&devnet, 3),
        transfer_tx(&devnet, sender, 0).with_value(U256::from(2u64)),
    )
    .await;
    let r = call("eth_sendRawTransaction", json!([same_fees])).await;
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("underpriced"),
        "{r}"
    );
    let pool = call("txpool_content", json!([])).await;
    assert_eq!(
        pool["result"]["pending"].as_object().unwrap().len(),
        1,
        "{pool}"
    );
    assert_eq!(provider.get_block_number().await.unwrap(), block);

    call("evm_mine", json!([])).await;
    assert_eq!(provider.get_block_number().await.unwrap(), block + 1);
    let receipt = call("eth_getTransactionReceipt", json!([hash])).await;
    assert_eq!(receipt["result"]["status"], "0x1", "{receipt}");
    let pool = call("txpool_content", json!([])).await;
    assert!(pool["result"]["pending"].as_object().unwrap().is_empty());
}

#[tokio::test]
async fn interval_mining_makes_blocks_on_its_own() {
    let devnet = Devnet::builder()
        .block_time(std::time::Duration::from_millis(100))
        .start()
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(450)).await;
    assert!(devnet.block_number() >= 2, "{}", devnet.block_number());
}

/// viem estimates a typed (EIP-1559) transaction with its fee fields and no `chainId`, as the
/// official x402 facilitator does before every settlement; geth and anvil fill the chain in.
/// The devnet answers it too, while a signed transaction for another chain is still refused.
#[tokio::test]
async fn typed_calls_without_a_chain_id_are_estimated() {
    let devnet = Devnet::builder().chain_id(84532).start().await.unwrap();
    let url = devnet.url();
    let token = devnet.usdt().address.clone();
    let call = json!({
        "from": "0xa0Ee7A142d267C1f36714E4a8F75612F20a79720",
        "to": token,
        "data": "0x18160ddd", // totalSupply()
        "maxFeePerGas": "0x83215600",
        "maxPriorityFeePerGas": "0x3b9aca00",
        "nonce": "0x0"
    });
    for method in ["eth_estimateGas", "eth_call"] {
        let r = rpc(
            &url,
            json!({ "jsonrpc": "2.0", "id": 1, "method": method, "params": [call, "latest"] }),
        )
        .await;
        assert!(r.get("error").is_none(), "{method}: {r}");
        assert!(
            r["result"].as_str().unwrap().starts_with("0x"),
            "{method}: {r}"
        );
    }
    // Replay protection stays where it matters: a signed transaction for another chain is
    // refused.
    let signer: PrivateKeySigner = tollgate_devnet::DEV_KEYS[9].parse().unwrap();
    let tx = TransactionRequest::default()
        .with_to(Address::ZERO)
        .with_value(U256::from(1u8))
        .with_nonce(0)
        .with_chain_id(1)
        .with_gas_limit(21_000)
        .with_max_fee_per_gas(10_000_000_000)
        .with_max_priority_fee_per_gas(1);
    let raw = signed(signer, tx).await;
    let r = rpc(
        &url,
        json!({ "jsonrpc": "2.0", "id": 2, "method": "eth_sendRawTransaction", "params": [raw] }),
    )
    .await;
    assert!(r.get("error").is_some(), "{r}");
}

/// `eth_call` takes geth's state override set, as anvil does: code placed at an empty address
/// runs, a storage slot and a balance read back as overridden, for that call only.
#[tokio::test]
async fn eth_call_applies_state_overrides_for_that_call_only() {
    let devnet = Devnet::start().await.unwrap();
    let url = devnet.url();
    let at = "0x00000000000000000000000000000000000fe11a";
    // Runtime code: return SLOAD(0) ++ BALANCE(ADDRESS) as two words.
    //   PUSH1 0 SLOAD PUSH1 0 MSTORE ADDRESS BALANCE PUSH1 32 MSTORE PUSH1 64 PUSH1 0 RETURN
    let code = "0x5f545f52303160205260405ff3";
    let slot0 = format!("0x{:064x}", 7);
    let call = |overrides: Value| {
        json!({"jsonrpc": "2.0", "id": 1, "method": "eth_call",
               "params": [{"to": at, "data": "0x"}, "latest", overrides]})
    };
    let answer = rpc(
        &url,
        call(json!({ at: {"code": code, "balance": "0x2a", "stateDiff": {format!("0x{:064x}", 0): slot0}} })),
    )
    .await;
    let expected = format!("0x{:064x}{:064x}", 7, 42);
    assert_eq!(answer["result"], json!(expected), "{answer}");
    // `state` replaces the whole storage (slot 0 reads 0 when not listed).
    let answer = rpc(&url, call(json!({ at: {"code": code, "state": {}} }))).await;
    assert_eq!(
        answer["result"],
        json!(format!("0x{:064x}{:064x}", 0, 0)),
        "{answer}"
    );
    // Nothing stayed: the address has no code afterwards.
    let code_after = rpc(
        &url,
        json!({"jsonrpc": "2.0", "id": 1, "method": "eth_getCode", "params": [at, "latest"]}),
    )
    .await;
    assert_eq!(code_after["result"], json!("0x"));
    // Malformed or unsupported overrides are refused with a JSON-RPC error, not a panic.
    let both = rpc(&url, call(json!({ at: {"state": {}, "stateDiff": {}} }))).await;
    assert!(
        both["error"]["message"]
            .as_str()
            .unwrap()
            .contains("exclusive"),
        "{both}"
    );
    let bad = rpc(&url, call(json!({ at: {"code": 5} }))).await;
    assert!(bad["error"].is_object(), "{bad}");
}
