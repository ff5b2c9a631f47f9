//! The browser side of the `exact` EVM scheme: a wallet script for tollgate-server's HTML
//! paywall.
//!
//! The server's paywall page knows no chain; it asks registered wallet scripts to turn a
//! payment option into a signed payment. [`WALLET_SCRIPT`] is that script for `exact` on
//! `eip155:*` networks: it asks the browser's injected EIP-1193 wallet (`window.ethereum`) for
//! an account, makes sure the wallet is on the option's chain (asking it to switch if not),
//! and has it sign the EIP-3009 `TransferWithAuthorization` with `eth_signTypedData_v4` — the
//! same authorization [`ExactEvmClient`](crate::ExactEvmClient) signs, so the facilitator
//! verifies both alike. The token's EIP-712 name and version come from the option's `extra`.
//!
//! A seller turns it on with `PaywallLayer::new(facilitator).browser_wallet(WALLET_SCRIPT)`.
//! The script is plain, dependency-free JavaScript, so the page stays self-contained:
//!
//! ```
//! use tollgate_evm::browser::WALLET_SCRIPT;
//! assert!(WALLET_SCRIPT.contains("window.x402Wallets.push"));
//! assert!(WALLET_SCRIPT.contains("eth_signTypedData_v4"));
//! assert!(!WALLET_SCRIPT.contains("https://"), "loads nothing from elsewhere");
//! ```

/// JavaScript that registers the EIP-1193 `exact` wallet with the paywall page; pass it to
/// `PaywallLayer::browser_wallet`.
pub const WALLET_SCRIPT: &str = include_str!("browser/exact_evm_wallet.js");
