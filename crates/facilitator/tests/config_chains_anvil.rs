//! The configuration's chains and schemes, started for real: one `[[schemes]]` entry with the
//! pattern `eip155:*` serves `exact` on two configured chains (two anvil nodes with different
//! chain ids), each settling through its own chain's signer; start-up errors name the entry at
//! fault, and a signer key never appears in them.

mod support;

use serde_json::json;
use tollgate_facilitator::{Config, Facilitator};
use tollgate_proto::{Network, Scheme, X402Version};
use tollgate_testkit::{TestChain, DEV_KEYS};

use support::{body, post, requirements_for, serve, sign, PRICE};

/// A `[[chains.eip155]]` table for `chain`, its signer key read from `key_file`.
fn chain_table(chain: &TestChain, key_file: &std::path::Path) -> String {
    format!(
        "[[chains.eip155]]\nnetwork = \"{}\"\nrpc_urls = [\"{}\"]\nsigner_key_file = {:?}\n\n",
        chain.caip2(),
        chain.endpoint(),
        key_file.display().to_string(),
    )
}

#[tokio::test]
async fn exact_by_pattern_settles_on_two_chains() {
    let (a, b) = (
        TestChain::start().await.unwrap(),
        TestChain::start_with_chain_id(84532).await.unwrap(),
    );
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("signer.key");
    std::fs::write(&key, format!("{}\n", DEV_KEYS[0])).unwrap();
    let text = format!(
        "[ledger]\npath = {:?}\n\n{}{}[[schemes]]\nscheme = \"exact\"\nnetworks = \"eip155:*\"\nvalid_before_margin_secs = 6\n",
        dir.path().join("ledger.db").display().to_string(),
        chain_table(&a, &key),
        chain_table(&b, &key),
    );
    let config = Config::parse(&text).unwrap();
    config.validate().unwrap();
    let (facilitator, report) = Facilitator::from_config(&config).await.unwrap();
    assert_eq!(report, Default::default());

    // One chain per configured network, and `exact` registered on each of them.
    let mut networks: Vec<&Network> = facilitator.chains().iter().map(|c| c.network()).collect();
    networks.sort();
    let expected: Vec<Network> = vec![a.caip2().parse().unwrap(), b.caip2().parse().unwrap()];
    assert_eq!(networks, expected.iter().collect::<Vec<_>>());
    let supported = facilitator.supported();
    for network in &expected {
        assert!(
            supported.kinds.iter().any(|k| k.scheme == Scheme::Exact
                && &k.network == network
                && k.x402_version == X402Version::V2),
            "exact on {network} not supported: {:?}",
            supported.kinds
        );
    }

    // A payment on each chain settles there, over HTTP.
    let (url, _server) = serve(facilitator).await;
    let http = reqwest::Client::new();
    let payee = TestChain::address(9);
    for chain in [&a, &b] {
        let requirements = requirements_for(chain, payee, chain.usdc);
        let before = chain.usdc_balance(payee).await.unwrap();
        let payment = sign(&requirements, 1).await;
        let (status, r) = post(&http, &url, "/settle", &body(&payment, &requirements), None).await;
        assert_eq!(
            (status, &r["success"], &r["network"]),
            (200, &json!(true), &json!(chain.caip2())),
            "{r}"
        );
        assert_eq!(
            chain.usdc_balance(payee).await.unwrap(),
            before + alloy::primitives::U256::from(PRICE)
        );
    }
}

#[tokio::test]
async fn start_up_errors_name_the_entry_and_never_the_key() {
    let chain = TestChain::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("signer.key");
    std::fs::write(&key, format!("{}\n", DEV_KEYS[0])).unwrap();
    let ledger = format!(
        "[ledger]\npath = {:?}\n\n",
        dir.path().join("ledger.db").display().to_string()
    );
    let start = |text: String| async move {
        let config = Config::parse(&text).unwrap();
        Facilitator::from_config(&config)
            .await
            .map(|_| ())
            .unwrap_err()
            .to_string()
    };

    // A scheme whose pattern matches no configured chain.
    let err = start(format!(
        "{ledger}{}[[schemes]]\nscheme = \"exact\"\nnetworks = \"eip155:1\"\n",
        chain_table(&chain, &key)
    ))
    .await;
    assert!(err.contains("schemes[0].networks"), "{err}");

    // A chain's key file that holds no key: the error says which entry and where it looked,
    // not what it read.
    let bad = dir.path().join("bad.key");
    std::fs::write(&bad, "0xnot-a-key-but-secret-ish\n").unwrap();
    let err = start(format!(
        "{ledger}{}{}",
        chain_table(&chain, &key),
        chain_table(&chain, &bad).replace(&chain.caip2(), "eip155:84532")
    ))
    .await;
    assert!(err.contains("chains.eip155[1].signer_key_file"), "{err}");
    assert!(!err.contains("secret-ish"), "{err}");

    // Endpoints serving another chain than the entry says.
    let err = start(format!(
        "{ledger}{}",
        chain_table(&chain, &key).replace(&chain.caip2(), "eip155:8453")
    ))
    .await;
    assert!(
        err.contains("eip155:8453") && err.contains(&chain.caip2()),
        "{err}"
    );
}
