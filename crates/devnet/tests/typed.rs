//! The devnet's typed values agree with the chain: the `Token` it hands out names the deployed
//! contract's own decimals, symbol and EIP-712 domain, and its accounts are the funded ones.

use alloy::primitives::Address;
use alloy::providers::{Provider, ProviderBuilder};
use tollgate_devnet::{
    Devnet, DevnetError, EXACT_PERMIT2_PROXY, INITIAL_PERMIT_TOKEN, INITIAL_USDC, INITIAL_USDT,
    PERMIT2, UPTO_PERMIT2_PROXY,
};

alloy::sol! {
    #[sol(rpc)]
    interface Erc20 {
        function name() external view returns (string);
        function symbol() external view returns (string);
        function decimals() external view returns (uint8);
        function balanceOf(address who) external view returns (uint256);
        function version() external view returns (string);
    }
}

#[tokio::test]
async fn usdc_describes_the_deployed_token() {
    let devnet = Devnet::start().await.unwrap();
    let usdc = devnet.usdc();
    assert_eq!(usdc.network.to_string(), devnet.caip2());
    assert_eq!(usdc.address.parse::<Address>().unwrap(), devnet.token());

    let provider = ProviderBuilder::new().connect_http(devnet.url().parse().unwrap());
    let token = Erc20::new(devnet.token(), provider);
    assert_eq!(token.decimals().call().await.unwrap(), usdc.decimals);
    assert_eq!(token.symbol().call().await.unwrap(), usdc.symbol);
    let (name, version) = usdc.eip712.clone().expect("the test token signs EIP-3009");
    assert_eq!(token.name().call().await.unwrap(), name);
    assert_eq!(token.version().call().await.unwrap(), version);
    let extra = usdc.requirements_extra();
    assert_eq!(extra["name"], name.as_str());
    assert_eq!(extra["version"], version.as_str());
}

#[tokio::test]
async fn accounts_are_the_funded_signers_and_out_of_range_is_an_error() {
    let devnet = Devnet::start().await.unwrap();
    let provider = ProviderBuilder::new().connect_http(devnet.url().parse().unwrap());
    let token = Erc20::new(devnet.token(), provider);
    for i in 0..10 {
        let signer = devnet.account(i).unwrap();
        assert_eq!(signer.address(), devnet.accounts()[i].address);
    }
    let payer = devnet.account(1).unwrap().address();
    let balance = token.balanceOf(payer).call().await.unwrap();
    assert_eq!(balance.to::<u64>(), INITIAL_USDC);
    match devnet.account(10) {
        Err(DevnetError::NoSuchAccount { index: 10, last: 9 }) => {}
        other => panic!("expected NoSuchAccount, got {other:?}"),
    }
}

#[tokio::test]
async fn permit2_tokens_and_canonical_contracts_are_there() {
    let devnet = Devnet::start().await.unwrap();
    let provider = ProviderBuilder::new().connect_http(devnet.url().parse().unwrap());
    let payer = devnet.accounts()[1].address;

    let usdt = devnet.usdt();
    assert_eq!(usdt.network.to_string(), devnet.caip2());
    assert_eq!(
        usdt.address.parse::<Address>().unwrap(),
        devnet.contracts().usdt
    );
    assert_eq!(
        usdt.eip712, None,
        "the USDT-like token signs nothing itself"
    );
    let token = Erc20::new(devnet.contracts().usdt, &provider);
    assert_eq!(token.symbol().call().await.unwrap(), usdt.symbol);
    assert_eq!(token.decimals().call().await.unwrap(), usdt.decimals);
    assert_eq!(
        token.balanceOf(payer).call().await.unwrap().to::<u64>(),
        INITIAL_USDT
    );
    // No `version()`: it is not an EIP-712 token.
    assert!(token.version().call().await.is_err());

    let pusd = devnet.permit_token();
    assert_eq!(
        pusd.address.parse::<Address>().unwrap(),
        devnet.contracts().permit_token
    );
    let token = Erc20::new(devnet.contracts().permit_token, &provider);
    assert_eq!(token.symbol().call().await.unwrap(), pusd.symbol);
    assert_eq!(token.decimals().call().await.unwrap(), pusd.decimals);
    let (name, version) = pusd
        .eip712
        .clone()
        .expect("the permit token signs EIP-2612");
    assert_eq!(token.name().call().await.unwrap(), name);
    assert_eq!(token.version().call().await.unwrap(), version);
    assert_eq!(
        token.balanceOf(payer).call().await.unwrap().to::<u64>(),
        INITIAL_PERMIT_TOKEN
    );

    for address in [PERMIT2, EXACT_PERMIT2_PROXY, UPTO_PERMIT2_PROXY] {
        let code = provider.get_code_at(address).await.unwrap();
        assert!(!code.is_empty(), "no code at {address}");
    }
}
