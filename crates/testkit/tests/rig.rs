//! The rig itself: anvil starts on loopback, contracts deploy, accounts are funded, and the
//! node is gone once the rig is dropped.

use alloy::primitives::{Address, U256};
use tollgate_testkit::chain::INITIAL_USDC;
use tollgate_testkit::TestChain;

#[tokio::test]
async fn chain_starts_funded_and_stops_on_drop() {
    let chain = TestChain::start().await.unwrap();
    assert!(chain.endpoint().starts_with("http://127.0.0.1:"));
    assert_eq!(chain.chain_id(), 31337);
    assert!(chain.has_code(chain.usdc).await.unwrap());
    assert!(chain.has_code(chain.multicall3).await.unwrap());
    assert!(chain.has_code(chain.wallet_factory).await.unwrap());
    for i in 1..10 {
        assert_eq!(
            chain.usdc_balance(TestChain::address(i)).await.unwrap(),
            U256::from(INITIAL_USDC)
        );
    }
    assert_eq!(
        chain.usdc_balance(TestChain::address(0)).await.unwrap(),
        U256::ZERO
    );

    // The factory predicts where a wallet lands, and nothing is there yet.
    let predicted = chain
        .predict_wallet(Address::repeat_byte(1), alloy::primitives::B256::ZERO)
        .await
        .unwrap();
    assert!(!chain.has_code(predicted).await.unwrap());

    let port = chain.endpoint().rsplit(':').next().unwrap().to_owned();
    drop(chain);
    let addr = format!("127.0.0.1:{port}");
    assert!(
        std::net::TcpStream::connect(&addr).is_err(),
        "anvil still listening on {addr} after drop"
    );
}

#[tokio::test]
async fn chain_with_another_chain_id_and_canonical_multicall3() {
    use alloy::providers::Provider;
    let default = TestChain::start().await.unwrap();
    let chain = TestChain::start_with_chain_id(84532).await.unwrap();
    assert_eq!(chain.chain_id(), 84532);
    assert_eq!(chain.caip2(), "eip155:84532");
    assert_eq!(chain.provider().get_chain_id().await.unwrap(), 84532);
    // Same deployer, same nonces: the contracts land where they do on the default chain.
    assert_eq!(chain.usdc, default.usdc);
    assert_eq!(
        chain.usdc_balance(TestChain::address(1)).await.unwrap(),
        U256::from(INITIAL_USDC)
    );

    let canonical = tollgate_testkit::chain::CANONICAL_MULTICALL3;
    assert!(!chain.has_code(canonical).await.unwrap());
    assert_eq!(
        chain.install_canonical_multicall3().await.unwrap(),
        canonical
    );
    assert_eq!(
        chain.provider().get_code_at(canonical).await.unwrap(),
        chain
            .provider()
            .get_code_at(chain.multicall3)
            .await
            .unwrap()
    );
}
