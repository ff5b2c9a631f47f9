//! Client side: asking the chain whether an authorization the payer signed was used.
//!
//! A paying client that sent a payment and got an ambiguous answer (a `503`, a dropped
//! connection, a `402 settlement_pending`) cannot tell from the seller whether its money moved.
//! The token can: EIP-3009's `authorizationState(authorizer, nonce)` is `true` once the
//! authorization was used (or cancelled). Read together with the timestamp of the block it was
//! read at, it settles the question for good: used → spent; unused at a block whose timestamp
//! is at or past `validBefore` → can never be used, because every later block is at least as
//! late and the token refuses `block.timestamp >= validBefore`.

use alloy::eips::{BlockId, BlockNumberOrTag};
use alloy::primitives::{Address, B256};
use alloy::providers::{Provider, ProviderBuilder};

use crate::contracts::IEip3009Token;

/// The state of one authorization as the chain reports it at one block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthorizationStatus {
    /// Whether the (authorizer, nonce) pair was used or cancelled on the token.
    pub used: bool,
    /// The block the state was read at.
    pub block_number: u64,
    /// That block's timestamp (Unix seconds): an unused authorization whose `validBefore` is at
    /// or before it can never be used.
    pub block_timestamp: u64,
}

/// Why the state could not be read. Every variant means "unknown": a caller must keep treating
/// the authorization as possibly used.
#[derive(Debug, thiserror::Error)]
pub enum AuthorizationStateError {
    /// The RPC URL does not parse.
    #[error("invalid RPC URL {url:?}: {reason}")]
    BadUrl {
        /// The URL given.
        url: String,
        /// Parser message.
        reason: String,
    },
    /// The endpoint serves another chain than the authorization's.
    #[error("RPC endpoint serves chain {actual}, the authorization is for chain {expected}")]
    WrongChain {
        /// The authorization's chain id.
        expected: u64,
        /// The endpoint's.
        actual: u64,
    },
    /// A call failed (transport, node error, or a token without `authorizationState`).
    #[error("{call} failed: {reason}")]
    Rpc {
        /// Which call.
        call: &'static str,
        /// The error.
        reason: String,
    },
}

/// A provider for `rpc_url`, checked to serve `chain_id`, and the number and timestamp of its
/// latest block — at which an authorization's state is then read, so that the timestamp and
/// the state belong together.
async fn latest_block(
    rpc_url: &str,
    chain_id: u64,
) -> Result<(impl Provider, u64, u64), AuthorizationStateError> {
    let url = rpc_url
        .parse::<alloy::transports::http::reqwest::Url>()
        .map_err(|e| AuthorizationStateError::BadUrl {
            url: rpc_url.to_owned(),
            reason: e.to_string(),
        })?;
    let provider = ProviderBuilder::new()
        .disable_recommended_fillers()
        .connect_http(url);
    let actual = provider
        .get_chain_id()
        .await
        .map_err(|e| rpc_error("eth_chainId", &e))?;
    if actual != chain_id {
        return Err(AuthorizationStateError::WrongChain {
            expected: chain_id,
            actual,
        });
    }
    let block = provider
        .get_block_by_number(BlockNumberOrTag::Latest)
        .await
        .map_err(|e| rpc_error("eth_getBlockByNumber", &e))?
        .ok_or_else(|| rpc_error("eth_getBlockByNumber", &"no latest block"))?;
    Ok((provider, block.header.number, block.header.timestamp))
}

fn rpc_error(call: &'static str, e: &dyn std::fmt::Display) -> AuthorizationStateError {
    AuthorizationStateError::Rpc {
        call,
        reason: e.to_string(),
    }
}

/// Reads `authorizationState(authorizer, nonce)` on `asset` at the latest block of the chain
/// behind `rpc_url`, checking first that the endpoint serves `chain_id`.
pub async fn authorization_state(
    rpc_url: &str,
    chain_id: u64,
    asset: Address,
    authorizer: Address,
    nonce: B256,
) -> Result<AuthorizationStatus, AuthorizationStateError> {
    let (provider, block_number, block_timestamp) = latest_block(rpc_url, chain_id).await?;
    // Read at that very block, so the timestamp and the state belong together.
    let used = IEip3009Token::new(asset, &provider)
        .authorizationState(authorizer, nonce)
        .block(BlockId::number(block_number))
        .call()
        .await
        .map_err(|e| rpc_error("authorizationState", &e))?;
    Ok(AuthorizationStatus {
        used,
        block_number,
        block_timestamp,
    })
}

/// Reads whether Permit2 has recorded `nonce` of `owner` as used, at the latest block of the
/// chain behind `rpc_url` (checked to serve `chain_id`): the state of a Permit2 payment.
pub async fn permit2_nonce_state(
    rpc_url: &str,
    chain_id: u64,
    owner: Address,
    nonce: alloy::primitives::U256,
) -> Result<AuthorizationStatus, AuthorizationStateError> {
    let (provider, block_number, block_timestamp) = latest_block(rpc_url, chain_id).await?;
    let (word, bit) = crate::permit2::nonce_position(nonce);
    let bitmap = crate::permit2::abi::IPermit2::new(crate::permit2::PERMIT2_ADDRESS, &provider)
        .nonceBitmap(owner, word)
        .block(BlockId::number(block_number))
        .call()
        .await
        .map_err(|e| rpc_error("nonceBitmap", &e))?;
    Ok(AuthorizationStatus {
        used: bitmap.bit(bit),
        block_number,
        block_timestamp,
    })
}
