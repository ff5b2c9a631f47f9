//! The browser side of `exact` on Solana: a wallet script for tollgate-server's HTML paywall.
//!
//! The server's paywall page knows no chain; it asks registered wallet scripts to turn a
//! payment option into a signed payment. [`WALLET_SCRIPT`] is that script for `exact` on
//! `solana:*` networks whose requirements carry `extra.feePayer` (as
//! [`ExactSvmServer`](crate::ExactSvmServer) fills it in from the facilitator). It builds the
//! very transaction [`ExactSvmClient`](crate::ExactSvmClient) builds — a v0 message paid for by
//! `extra.feePayer` with `SetComputeUnitLimit(20000)`, `SetComputeUnitPrice(1)`, one
//! `TransferChecked` from the payer's associated token account to `payTo`'s and a `Memo`
//! (`extra.memo`, else 16 random bytes in hex) — has the browser's wallet sign it as the payer,
//! leaves the fee payer's signature slot zeroed for the facilitator, and sends its base64 as
//! `payload.transaction`. Everything (base58, the message compiler, the associated token
//! account derivation with its ed25519 off-curve test) is plain JavaScript in the script, which
//! loads nothing from anywhere.
//!
//! # Wallets
//!
//! The first of these that is present signs:
//!
//! 1. A [Wallet Standard] wallet with the `solana:signTransaction` feature (serialized
//!    transaction bytes in, signed bytes out; transaction version `0` must be among its
//!    `supportedTransactionVersions` when it lists them), found through the standard's window
//!    events (`wallet-standard:app-ready` for wallets already loaded,
//!    `wallet-standard:register-wallet` for later ones) or the deprecated
//!    `window.navigator.wallets` array. Its first account is used, after `standard:connect`
//!    when the wallet shares none yet; the `chain` input is `solana:mainnet`, `solana:devnet`
//!    or `solana:testnet` for those clusters' CAIP-2 ids (and omitted for other networks). A
//!    Wallet Standard wallet that does not list the option's cluster is an error, not skipped.
//! 2. The legacy injected provider, `window.phantom.solana` or else `window.solana`: its
//!    `connect()` gives the account (`publicKey`), and `signTransaction` is handed an object
//!    shaped like @solana/web3.js's `VersionedTransaction` (`version: 0`, `signatures`,
//!    `message.serialize()`, `serialize()`) and may answer the signed bytes or an object with
//!    `serialize()`. A provider that needs a real web3.js class instance cannot sign.
//!
//! Whatever comes back is sent as the wallet returned it (wallets such as Phantom may add
//! their Lighthouse guard instructions, which the facilitator accepts) once the script checked
//! that it decodes and carries a signature of the connected account.
//!
//! # The Solana RPC endpoint
//!
//! The requirements name the mint but neither its token program nor its decimals, which the
//! `TransferChecked` and the associated token accounts need, and the transaction needs a recent
//! blockhash. So the script reads the mint (`getAccountInfo`) and, unless the option carries
//! `extra.recentBlockhash`, the blockhash (`getLatestBlockhash`, `confirmed`) over Solana
//! JSON-RPC — exactly the two methods in [`RPC_METHODS`]. The endpoint is, first found:
//!
//! - the option's `extra.rpcUrl` (per option, so per network; it is also shown to API clients
//!   in the 402, and echoed back in `accepted`);
//! - `window.x402SolanaRpcUrl`, set by a second script the seller registers with the page
//!   ([`rpc_url_script`]): a URL for every Solana network, or an object mapping CAIP-2
//!   networks to URLs.
//!
//! Without one, paying fails with a message saying so. The page's Content-Security-Policy
//! (`connect-src 'self'`) lets it connect to its own origin only, so the endpoint must be a
//! path on the seller's server (relative URLs resolve against the page) that forwards these
//! two methods to a Solana node; the script refuses another origin with a clear message rather
//! than be blocked by the browser. The script also needs a secure context (https, or
//! localhost) for `crypto.subtle`.
//!
//! ```no_run
//! use axum::routing::{get, post};
//! use tollgate_server::{PaywallLayer, RemoteFacilitator};
//! use tollgate_svm::browser::{rpc_url_script, RPC_METHODS, WALLET_SCRIPT};
//!
//! // Forwards the paywall page's two JSON-RPC reads to the seller's Solana node.
//! async fn solana_rpc(body: axum::body::Bytes) -> (axum::http::StatusCode, String) {
//!     let call: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
//!     if !RPC_METHODS.contains(&call["method"].as_str().unwrap_or("")) {
//!         return (axum::http::StatusCode::FORBIDDEN, String::new());
//!     }
//!     let node = reqwest::Client::new().post("http://127.0.0.1:8899").json(&call).send();
//!     match node.await {
//!         Ok(answer) => (axum::http::StatusCode::OK, answer.text().await.unwrap_or_default()),
//!         Err(_) => (axum::http::StatusCode::BAD_GATEWAY, String::new()),
//!     }
//! }
//!
//! let paywall = PaywallLayer::new(RemoteFacilitator::new("http://127.0.0.1:4020"))
//!     // … `.schemes(…)` with `ExactSvmServer` for `solana:*`, `.route(…)` …
//!     .browser_wallet(WALLET_SCRIPT)
//!     .browser_wallet(rpc_url_script("/solana-rpc"));
//! let app: axum::Router = axum::Router::new()
//!     .route("/article", get(|| async { "the article" }))
//!     .route("/solana-rpc", post(solana_rpc))
//!     .layer(paywall);
//! ```
//!
//! [Wallet Standard]: https://github.com/wallet-standard/wallet-standard

/// JavaScript that registers the Solana `exact` wallet with the paywall page; pass it to
/// `PaywallLayer::browser_wallet`, with the page's RPC endpoint (see the [module](self)).
///
/// ```
/// use tollgate_svm::browser::WALLET_SCRIPT;
/// assert!(WALLET_SCRIPT.contains("window.x402Wallets.push"));
/// assert!(WALLET_SCRIPT.contains("solana:signTransaction"));
/// assert!(!WALLET_SCRIPT.contains("https://"), "loads nothing from elsewhere");
/// ```
pub const WALLET_SCRIPT: &str = include_str!("browser/exact_svm_wallet.js");

/// The Solana JSON-RPC methods [`WALLET_SCRIPT`] calls: what the seller's same-origin RPC
/// endpoint must forward (and need forward no more).
pub const RPC_METHODS: &[&str] = &["getAccountInfo", "getLatestBlockhash"];

/// A script for `PaywallLayer::browser_wallet` that names the page's Solana RPC endpoint for
/// every Solana network (`window.x402SolanaRpcUrl`): a path on the seller's own server, such as
/// `"/solana-rpc"`.
///
/// The script is made once, when the paywall is configured, and lives as long as the program
/// (the paywall keeps `&'static str` scripts).
///
/// ```
/// let script = tollgate_svm::browser::rpc_url_script("/solana-rpc");
/// assert_eq!(script, r#"window.x402SolanaRpcUrl = "/solana-rpc";"#);
/// let hostile = tollgate_svm::browser::rpc_url_script("/x</script><script>alert(1)//");
/// assert!(!hostile.contains('<'));
/// ```
pub fn rpc_url_script(url: &str) -> &'static str {
    // JSON, with `<` escaped so no URL can close the page's inline <script> element.
    let url = serde_json::to_string(url)
        .unwrap_or_else(|_| "null".to_owned())
        .replace('<', "\\u003c");
    Box::leak(format!("window.x402SolanaRpcUrl = {url};").into_boxed_str())
}
