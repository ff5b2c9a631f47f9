//! The paying client's `batch-settlement` wallet: [`BatchSettlementEvmClient`], a
//! [`PaymentSigner`] whose payments go through a channel ([`SessionPayer`]).
//!
//! It holds no channel itself: the client keeps each channel ([`PayerChannel`], serialized)
//! in its spend ledger and hands it to every call, so a channel opened by one process is paid
//! through by the next, and the budget counts the deposit — not each request — as spent.

use alloy::signers::Signer;
use tollgate_core::{
    AuthorizationHandle, AuthorizationState, BoxFuture, PaymentSigner, SessionOutlay, SessionPayer,
    SessionPayment, SessionReceipt, SessionRefund, SessionState, SignedPayment, SignerError,
    StateError,
};
use tollgate_proto::{PaymentPayload, PaymentRequirements, ResourceInfo, SettleResponse};

use super::payer::{
    adopt_receipt, adopt_refund, adopt_resync, channel_for, deposit_needed, sign_channel_payment,
    sign_refund_request, ChannelPayError, PayerChannel,
};
use super::{BatchReason, SCHEME};

/// How many requests' worth a new channel is funded with, unless told otherwise.
pub const DEFAULT_DEPOSIT_REQUESTS: u128 = 100;

/// Pays `batch-settlement` offers on EVM networks from one key through channels: a deposit of
/// `deposit_requests` requests' worth when a channel is opened or runs dry (never above the
/// largest deposit the client's policy allows), then one cumulative voucher per request.
///
/// ```
/// use tollgate_evm::batch_settlement::BatchSettlementEvmClient;
/// use tollgate_core::PaymentSigner;
/// use alloy::signers::local::PrivateKeySigner;
///
/// let wallet = BatchSettlementEvmClient::new(PrivateKeySigner::random()).with_deposit_requests(500);
/// let offer: tollgate_proto::PaymentRequirements = serde_json::from_value(serde_json::json!({
///     "scheme": "batch-settlement", "network": "eip155:8453", "amount": "1000",
///     "asset": "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913",
///     "payTo": "0x209693Bc6afc0C5328bA36FaF03C514EF312287C", "maxTimeoutSeconds": 60,
///     "extra": {"receiverAuthorizer": "0x857b06519E91e3A54538791bDbb0E22373e36b66",
///               "withdrawDelay": 900, "name": "USD Coin", "version": "2"},
/// })).unwrap();
/// assert!(wallet.supports(&offer));
/// assert!(wallet.session(&offer).is_some());
/// ```
#[derive(Debug, Clone)]
pub struct BatchSettlementEvmClient<S> {
    signer: S,
    deposit_requests: u128,
}

impl<S: Signer + Send + Sync + 'static> BatchSettlementEvmClient<S> {
    /// A wallet funding channels with [`DEFAULT_DEPOSIT_REQUESTS`] requests' worth.
    pub fn new(signer: S) -> Self {
        Self {
            signer,
            deposit_requests: DEFAULT_DEPOSIT_REQUESTS,
        }
    }

    /// Funds channels with `requests` requests' worth (at least one).
    pub fn with_deposit_requests(mut self, requests: u128) -> Self {
        self.deposit_requests = requests.max(1);
        self
    }

    fn channel(state: Option<&SessionState>) -> Result<Option<PayerChannel>, SignerError> {
        state
            .map(|s| serde_json::from_value(s.clone()))
            .transpose()
            .map_err(|e| SignerError(format!("the stored channel is unreadable: {e}")))
    }

    fn state(channel: &PayerChannel) -> SessionState {
        serde_json::to_value(channel).unwrap_or_default()
    }

    fn stored(state: SessionState) -> Result<PayerChannel, SignerError> {
        serde_json::from_value(state)
            .map_err(|e| SignerError(format!("the stored channel is unreadable: {e}")))
    }
}

fn err(e: ChannelPayError) -> SignerError {
    SignerError(e.to_string())
}

impl<S: Signer + Send + Sync + 'static> PaymentSigner for BatchSettlementEvmClient<S> {
    fn supports(&self, requirements: &PaymentRequirements) -> bool {
        requirements.scheme.as_str() == SCHEME
            && requirements.network.eip155_chain_id().is_some()
            && channel_for(self.signer.address(), requirements).is_ok()
    }

    fn payer(&self, _requirements: &PaymentRequirements) -> String {
        self.signer.address().to_string()
    }

    /// Refused: a channel payment needs the channel's state, which the client passes through
    /// [`PaymentSigner::session`].
    fn sign<'a>(
        &'a self,
        requirements: &'a PaymentRequirements,
        _resource: Option<ResourceInfo>,
    ) -> BoxFuture<'a, Result<SignedPayment, SignerError>> {
        let why = format!(
            "{} on {} is paid through a channel (PaymentSigner::session)",
            requirements.scheme, requirements.network
        );
        Box::pin(async move { Err(SignerError(why)) })
    }

    /// A deposit's token authorization is ERC-3009's `(from, nonce)` or a Permit2 nonce, read
    /// like an `exact` payment's.
    fn authorization_state<'a>(
        &'a self,
        handle: &'a AuthorizationHandle,
        rpc_url: &'a str,
    ) -> BoxFuture<'a, Result<AuthorizationState, StateError>> {
        Box::pin(async move {
            if handle.scheme != SCHEME {
                return Err(StateError::Unsupported {
                    scheme: handle.scheme.clone(),
                });
            }
            crate::payer::token_authorization_state(handle, rpc_url).await
        })
    }

    fn session(&self, requirements: &PaymentRequirements) -> Option<&dyn SessionPayer> {
        self.supports(requirements)
            .then_some(self as &dyn SessionPayer)
    }
}

impl<S: Signer + Send + Sync + 'static> SessionPayer for BatchSettlementEvmClient<S> {
    fn key(&self, requirements: &PaymentRequirements) -> Result<String, SignerError> {
        let (_, id) = channel_for(self.signer.address(), requirements).map_err(err)?;
        Ok(format!("{SCHEME}/{}/{id}", requirements.network))
    }

    fn outlay(
        &self,
        requirements: &PaymentRequirements,
        state: Option<&SessionState>,
    ) -> Result<SessionOutlay, SignerError> {
        let channel = Self::channel(state)?;
        Ok(
            match deposit_needed(requirements, channel.as_ref(), self.deposit_requests)
                .map_err(err)?
            {
                None => SessionOutlay::Covered,
                Some((needed, wanted)) => SessionOutlay::Deposit { needed, wanted },
            },
        )
    }

    fn sign<'a>(
        &'a self,
        requirements: &'a PaymentRequirements,
        resource: Option<ResourceInfo>,
        state: Option<SessionState>,
        deposit: Option<u128>,
    ) -> BoxFuture<'a, Result<SessionPayment, SignerError>> {
        Box::pin(async move {
            let channel = Self::channel(state.as_ref())?;
            let payment =
                sign_channel_payment(&self.signer, requirements, resource, channel, deposit)
                    .await
                    .map_err(err)?;
            let ceiling = payment.channel.pending.unwrap_or_default();
            let (deposit, authorization) = match payment.deposit {
                Some(made) => (
                    Some(made.amount),
                    AuthorizationHandle {
                        scheme: SCHEME.to_owned(),
                        network: requirements.network.clone(),
                        asset: requirements.asset.clone(),
                        payer: self.signer.address().to_string(),
                        id: made.authorization,
                        valid_before: made.valid_before,
                    },
                ),
                // A voucher moves nothing by itself: the seller claims it from the deposit,
                // which was counted when it was made. Its handle names channel and ceiling.
                None => (
                    None,
                    AuthorizationHandle {
                        scheme: SCHEME.to_owned(),
                        network: requirements.network.clone(),
                        asset: requirements.asset.clone(),
                        payer: self.signer.address().to_string(),
                        id: format!("voucher:{}:{ceiling}", payment.channel.id),
                        valid_before: 0,
                    },
                ),
            };
            Ok(SessionPayment {
                state: Self::state(&payment.channel),
                signed: SignedPayment {
                    payload: payment.payload,
                    authorization,
                },
                deposit,
            })
        })
    }

    fn receipt(
        &self,
        requirements: &PaymentRequirements,
        state: SessionState,
        receipt: &SettleResponse,
    ) -> Result<SessionReceipt, SignerError> {
        let mut channel = Self::stored(state)?;
        match adopt_receipt(requirements, &mut channel, receipt) {
            Ok(charged) => Ok(SessionReceipt {
                balance: channel.balance,
                state: Self::state(&channel),
                charged,
            }),
            Err(e) => Err(err(e)),
        }
    }

    fn halt(&self, state: SessionState, why: &str) -> SessionState {
        match Self::stored(state.clone()) {
            Ok(mut channel) => {
                channel.halted = Some(why.to_owned());
                channel.pending = None;
                Self::state(&channel)
            }
            Err(_) => state,
        }
    }

    fn unanswered(&self, state: SessionState) -> SessionState {
        match Self::stored(state.clone()) {
            Ok(mut channel) => {
                channel.pending = None;
                Self::state(&channel)
            }
            Err(_) => state,
        }
    }

    fn is_out_of_sync(&self, reason: &str) -> bool {
        reason.contains(BatchReason::CumulativeAmountMismatch.as_str())
    }

    fn resync(
        &self,
        corrective: &PaymentRequirements,
        state: Option<SessionState>,
    ) -> Result<SessionState, SignerError> {
        let channel = Self::channel(state.as_ref())?;
        adopt_resync(self.signer.address(), corrective, channel)
            .map(|c| Self::state(&c))
            .map_err(err)
    }

    fn refund<'a>(
        &'a self,
        requirements: &'a PaymentRequirements,
        resource: Option<ResourceInfo>,
        state: SessionState,
        amount: Option<u128>,
    ) -> BoxFuture<'a, Result<PaymentPayload, SignerError>> {
        Box::pin(async move {
            let channel = Self::stored(state)?;
            sign_refund_request(&self.signer, requirements, resource, &channel, amount)
                .await
                .map_err(err)
        })
    }

    fn refunded(
        &self,
        _requirements: &PaymentRequirements,
        state: SessionState,
        receipt: &SettleResponse,
    ) -> Result<SessionRefund, SignerError> {
        let channel = Self::stored(state)?;
        let (channel, refunded) = adopt_refund(channel, receipt).map_err(err)?;
        Ok(SessionRefund {
            remaining: channel.balance.saturating_sub(channel.charged),
            state: Self::state(&channel),
            refunded,
            transaction: receipt.transaction.clone(),
        })
    }
}
