//! `tollgate demo`: one payment through every part that exists, on a real local node.

use serde_json::json;
use tollgate::evm::{ExactEvmClient, ExactEvmFacilitator, FacilitatorConfig};
use tollgate::proto::{header, money, AnyPaymentPayload, PaymentRequired, PaymentRequirements};
use tollgate_testkit::TestChain;

/// Options of `tollgate demo`.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Price of the demo resource, in USDC (e.g. "0.01" or "$0.01").
    #[arg(long, default_value = "$0.01")]
    price: String,
}

/// Why the demo stopped.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("bad --price: {0}")]
    Price(#[from] money::MoneyError),
    #[error(transparent)]
    Chain(#[from] tollgate_testkit::TestkitError),
    #[error("facilitator: {0}")]
    Connect(#[from] tollgate::evm::ConnectError),
    #[error("signing: {0}")]
    Sign(#[from] tollgate::evm::SignError),
    #[error("header codec: {0}")]
    Header(#[from] header::HeaderError),
    #[error("verification failed: {0}")]
    Verify(#[from] tollgate::evm::VerifyError),
    #[error("settlement failed: {0}")]
    Settle(#[from] tollgate::evm::SettleError),
    #[error("{0}")]
    Other(String),
}

pub async fn run(args: DemoArgs) -> Result<(), DemoError> {
    let decimals = 6;
    let amount = args
        .price
        .parse::<money::DecimalAmount>()?
        .to_atomic(decimals)?;

    println!("Starting a local anvil node and deploying test USDC…");
    let chain = TestChain::start().await?;
    println!("  chain {} at {}", chain.caip2(), chain.endpoint());
    println!("  USDC (EIP-3009) at {}", chain.usdc);

    let buyer = TestChain::signer(1);
    let seller = TestChain::address(9);
    let facilitator = ExactEvmFacilitator::connect(
        &chain.endpoint(),
        TestChain::signer(0),
        FacilitatorConfig::default(),
    )
    .await?;

    // 1. The seller's 402 challenge, as it travels in the PAYMENT-REQUIRED header.
    let requirements: PaymentRequirements = serde_json::from_value(json!({
        "scheme": "exact",
        "network": chain.caip2(),
        "amount": amount.to_string(),
        "asset": chain.usdc.to_string(),
        "payTo": seller.to_string(),
        "maxTimeoutSeconds": 60,
        "extra": { "name": "USD Coin", "version": "2" }
    }))
    .map_err(|e| DemoError::Other(e.to_string()))?;
    let challenge: PaymentRequired = serde_json::from_value(json!({
        "x402Version": 2,
        "error": "PAYMENT-SIGNATURE header is required",
        "resource": { "url": "http://127.0.0.1/weather", "description": "Today's weather", "mimeType": "application/json" },
        "accepts": [requirements],
    }))
    .map_err(|e| DemoError::Other(e.to_string()))?;
    let challenge_header = header::encode(&challenge);
    println!(
        "\n1. 402 Payment Required: {} USDC to {seller} on {}",
        money::format_atomic(amount, decimals),
        chain.caip2()
    );
    println!(
        "   PAYMENT-REQUIRED: {}…",
        &challenge_header[..challenge_header.len().min(60)]
    );

    // 2. The buyer decodes it, picks the option and signs an EIP-3009 authorization.
    let decoded: PaymentRequired = header::decode(&challenge_header)?;
    let chosen = decoded
        .accepts
        .first()
        .ok_or_else(|| DemoError::Other("challenge has no accepts".into()))?;
    let client = ExactEvmClient::new(buyer);
    let payment = client.sign(chosen, Some(decoded.resource.clone())).await?;
    let payment_header = header::encode(&payment);
    println!("\n2. Buyer {} signed the payment", client.address());
    println!(
        "   PAYMENT-SIGNATURE: {}…",
        &payment_header[..payment_header.len().min(60)]
    );

    // 3. The facilitator verifies and settles it on chain.
    let received = match header::decode::<AnyPaymentPayload>(&payment_header)? {
        AnyPaymentPayload::V2(p) => *p,
        AnyPaymentPayload::V1(_) => return Err(DemoError::Other("unexpected v1 payload".into())),
    };
    let buyer_before = chain.usdc_balance(client.address()).await?;
    let seller_before = chain.usdc_balance(seller).await?;
    let verified = facilitator.verify(&received, chosen).await?;
    println!(
        "\n3. Facilitator verified the payment from {}",
        verified.payer
    );
    let settlement = facilitator.settle_verified(&verified).await?;
    println!("   settled in tx {}", settlement.tx_hash);

    let buyer_after = chain.usdc_balance(client.address()).await?;
    let seller_after = chain.usdc_balance(seller).await?;
    println!("\n4. Balances (USDC)");
    println!(
        "   buyer  {} → {}",
        money::format_atomic(buyer_before, decimals),
        money::format_atomic(buyer_after, decimals)
    );
    println!(
        "   seller {} → {}",
        money::format_atomic(seller_before, decimals),
        money::format_atomic(seller_after, decimals)
    );
    if seller_after != seller_before + amount || buyer_after != buyer_before - amount {
        return Err(DemoError::Other(
            "balances did not move by the price".into(),
        ));
    }

    // 5. Replaying the same payment is refused, and moves nothing.
    match facilitator.settle(&received, chosen).await {
        Err(e) => println!("\n5. Replay of the same payment refused: {}", e.reason()),
        Ok(s) => {
            return Err(DemoError::Other(format!(
                "replay was settled again in {}",
                s.tx_hash
            )))
        }
    }
    println!("\nDone: one x402 payment, verified and settled exactly once.");
    Ok(())
}
