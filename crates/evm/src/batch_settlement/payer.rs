//! The buyer's side of `batch-settlement`: [`ChannelPayer`] opens a channel with a deposit,
//! signs one cumulative voucher per request, checks every receipt as the spec's client must,
//! and resynchronises from a corrective 402 only after checking the seller's proof.

use std::collections::HashMap;

use alloy::primitives::{Address, B256};
use alloy::signers::Signer;
use alloy::sol_types::eip712_domain;
use tollgate_proto::{PaymentPayload, PaymentRequirements, ResourceInfo, SettleResponse, V2};

use super::{
    channel_id, sign_erc3009_deposit, sign_voucher, ChannelConfig, ChannelSnapshot, Deposit,
    DepositAuthorization, DepositPayload, Erc3009DepositTerms, SignedVoucher, VoucherPayload,
    VoucherVerifier, MIN_WITHDRAW_DELAY,
};
use crate::client::unix_now;
use crate::domain::parse_address;

/// Why a channel payment could not be made or a seller's answer was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChannelPayError {
    /// The offer lacks something a channel needs (receiver authorizer, token domain…).
    #[error("the batch-settlement offer cannot be paid: {0}")]
    Offer(String),
    /// Opening or topping up would deposit more than this payer allows.
    #[error("a deposit of {needed} is above this payer's limit of {limit}")]
    DepositLimit {
        /// What the deposit would be.
        needed: u128,
        /// The limit.
        limit: u128,
    },
    /// Signing failed.
    #[error("signing failed: {0}")]
    Sign(String),
    /// The seller's receipt breaks the spec's client checks: stop signing on this channel.
    #[error("the seller's receipt is not acceptable: {0}")]
    Receipt(String),
    /// A corrective 402 whose proof does not check out: not adopted.
    #[error("the seller's channel state is not proven: {0}")]
    Resync(String),
}

/// One channel as the buyer knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayerChannel {
    /// Its config.
    pub config: ChannelConfig,
    /// Its id.
    pub id: B256,
    /// What the seller has charged in total, as the last accepted receipt said.
    pub charged: u128,
    /// The channel's balance, as last reported.
    pub balance: u128,
    /// The ceiling of the voucher last signed and not yet answered, if any.
    pending: Option<u128>,
}

/// Pays `batch-settlement` offers from one key: one channel per (network, seller, token,
/// receiver authorizer, withdraw delay), opened with a deposit of `deposit_requests` requests'
/// worth (at most `max_deposit`), then a voucher per request.
#[derive(Debug)]
pub struct ChannelPayer<S> {
    signer: S,
    deposit_requests: u128,
    max_deposit: u128,
    channels: HashMap<(String, B256), PayerChannel>,
}

impl<S: Signer + Send + Sync> ChannelPayer<S> {
    /// A payer depositing `deposit_requests` requests' worth when it opens a channel, never more
    /// than `max_deposit` atomic units at once.
    pub fn new(signer: S, deposit_requests: u128, max_deposit: u128) -> Self {
        Self {
            signer,
            deposit_requests: deposit_requests.max(1),
            max_deposit,
            channels: HashMap::new(),
        }
    }

    /// The payer's address.
    pub fn address(&self) -> Address {
        self.signer.address()
    }

    /// The channel config this payer uses for `requirements`.
    pub fn config_for(
        &self,
        requirements: &PaymentRequirements,
    ) -> Result<ChannelConfig, ChannelPayError> {
        let bad = |what: &str| ChannelPayError::Offer(what.to_owned());
        let authorizer = requirements
            .extra_str("receiverAuthorizer")
            .ok_or_else(|| bad("no extra.receiverAuthorizer"))
            .and_then(|a| parse_address(a).map_err(|e| bad(&e)))?;
        if authorizer == Address::ZERO {
            return Err(bad("the receiver authorizer is the zero address"));
        }
        let withdraw_delay = requirements
            .extra
            .as_ref()
            .and_then(|e| e.get("withdrawDelay"))
            .and_then(|d| d.as_u64())
            .unwrap_or(MIN_WITHDRAW_DELAY);
        Ok(ChannelConfig {
            payer: self.signer.address(),
            payer_authorizer: self.signer.address(),
            receiver: parse_address(&requirements.pay_to).map_err(|e| bad(&e))?,
            receiver_authorizer: authorizer,
            token: parse_address(&requirements.asset).map_err(|e| bad(&e))?,
            withdraw_delay,
            salt: B256::ZERO,
        })
    }

    fn chain_id(requirements: &PaymentRequirements) -> Result<u64, ChannelPayError> {
        requirements.network.eip155_chain_id().ok_or_else(|| {
            ChannelPayError::Offer(format!("{} is not an EVM network", requirements.network))
        })
    }

    fn key(requirements: &PaymentRequirements, id: B256) -> (String, B256) {
        (requirements.network.to_string(), id)
    }

    /// The channel used for `requirements`, if open.
    pub fn channel(&self, requirements: &PaymentRequirements) -> Option<&PayerChannel> {
        let config = self.config_for(requirements).ok()?;
        let id = channel_id(&config, Self::chain_id(requirements).ok()?);
        self.channels.get(&Self::key(requirements, id))
    }

    /// The payment for one request under `requirements`: a voucher when the channel holds
    /// enough, else a deposit (opening or topping it up) with the request's voucher.
    pub async fn pay(
        &mut self,
        requirements: &PaymentRequirements,
        resource: Option<ResourceInfo>,
    ) -> Result<PaymentPayload, ChannelPayError> {
        let chain_id = Self::chain_id(requirements)?;
        let config = self.config_for(requirements)?;
        let id = channel_id(&config, chain_id);
        let price: u128 = requirements.amount.get().saturating_to();
        let key = Self::key(requirements, id);
        let known = self.channels.get(&key).cloned();
        let charged = known.as_ref().map_or(0, |c| c.charged);
        let ceiling = charged + price;
        let sign_err = |e: alloy::signers::Error| ChannelPayError::Sign(e.to_string());
        let voucher = sign_voucher(&self.signer, id, ceiling, chain_id)
            .await
            .map_err(sign_err)?;
        let payload = match known.as_ref().filter(|c| c.balance >= ceiling) {
            Some(_) => serde_json::to_value(super::BatchPayload::Voucher(VoucherPayload {
                channel_config: config.clone(),
                voucher,
            })),
            None => {
                let balance = known.as_ref().map_or(0, |c| c.balance);
                let wanted = price * self.deposit_requests;
                let amount = wanted.max(ceiling.saturating_sub(balance));
                if amount > self.max_deposit {
                    return Err(ChannelPayError::DepositLimit {
                        needed: amount,
                        limit: self.max_deposit,
                    });
                }
                let (Some(name), Some(version)) = (
                    requirements.extra_str("name"),
                    requirements.extra_str("version"),
                ) else {
                    return Err(ChannelPayError::Offer(
                        "no extra.name / extra.version (the token's EIP-712 domain)".into(),
                    ));
                };
                let domain = eip712_domain! {
                    name: name.to_owned(),
                    version: version.to_owned(),
                    chain_id: chain_id,
                    verifying_contract: config.token,
                };
                let now = unix_now();
                let terms = Erc3009DepositTerms {
                    channel_id: id,
                    from: config.payer,
                    amount,
                    valid_after: 0,
                    valid_before: now + requirements.max_timeout_seconds.max(60),
                    salt: B256::random(),
                };
                let auth = sign_erc3009_deposit(&self.signer, &terms, &domain)
                    .await
                    .map_err(sign_err)?;
                serde_json::to_value(super::BatchPayload::Deposit(DepositPayload {
                    channel_config: config.clone(),
                    voucher,
                    deposit: Deposit {
                        amount,
                        authorization: DepositAuthorization::Erc3009(auth),
                    },
                }))
            }
        };
        let serde_json::Value::Object(payload) =
            payload.map_err(|e| ChannelPayError::Sign(e.to_string()))?
        else {
            unreachable!("a payload serializes to an object");
        };
        let entry = self.channels.entry(key).or_insert_with(|| PayerChannel {
            config,
            id,
            charged: 0,
            balance: 0,
            pending: None,
        });
        entry.pending = Some(ceiling);
        Ok(PaymentPayload {
            x402_version: V2,
            resource,
            accepted: requirements.clone(),
            payload,
            extensions: None,
        })
    }

    /// Checks the seller's receipt for the payment last made under `requirements` (the spec's
    /// client rules: the charge at most the price, the cumulative amount advanced by exactly the
    /// charge, the channel's own id) and adopts it. An error means: sign nothing more on this
    /// channel.
    pub fn receipt(
        &mut self,
        requirements: &PaymentRequirements,
        receipt: &SettleResponse,
    ) -> Result<u128, ChannelPayError> {
        let bad = |m: String| ChannelPayError::Receipt(m);
        let config = self.config_for(requirements)?;
        let id = channel_id(&config, Self::chain_id(requirements)?);
        let price: u128 = requirements.amount.get().saturating_to();
        let channel = self
            .channels
            .get_mut(&Self::key(requirements, id))
            .ok_or_else(|| bad("no payment was made on this channel".into()))?;
        let ceiling = channel
            .pending
            .ok_or_else(|| bad("no payment of this channel awaits a receipt".into()))?;
        let extra = receipt
            .extra
            .as_ref()
            .ok_or_else(|| bad("no extra".into()))?;
        let charge: u128 = extra
            .get("chargedAmount")
            .and_then(|c| c.as_str())
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| bad("no extra.chargedAmount".into()))?;
        let state: ChannelSnapshot = extra
            .get("channelState")
            .and_then(|s| serde_json::from_value(s.clone()).ok())
            .ok_or_else(|| bad("no readable extra.channelState".into()))?;
        if state.channel_id != id {
            return Err(bad(format!(
                "the receipt is for channel {}",
                state.channel_id
            )));
        }
        if charge > price {
            return Err(bad(format!("charged {charge}, above the price {price}")));
        }
        let cumulative = state
            .charged_cumulative_amount
            .ok_or_else(|| bad("no chargedCumulativeAmount".into()))?;
        if cumulative != channel.charged + charge || cumulative > ceiling {
            return Err(bad(format!(
                "cumulative {cumulative} is not {} + {charge} within the signed {ceiling}",
                channel.charged
            )));
        }
        channel.charged = cumulative;
        channel.balance = state.balance;
        channel.pending = None;
        Ok(charge)
    }

    /// Adopts the seller's state from a corrective 402 (`accepts[].extra.channelState` and
    /// `voucherState`) — only after checking that the seller's voucher is this payer's own
    /// signature over a ceiling covering the claimed charges. Without a proof, the payer
    /// starts again from what is claimed on chain (`totalClaimed`).
    pub fn resync(&mut self, corrective: &PaymentRequirements) -> Result<(), ChannelPayError> {
        let bad = |m: String| ChannelPayError::Resync(m);
        let chain_id = Self::chain_id(corrective)?;
        let config = self.config_for(corrective)?;
        let id = channel_id(&config, chain_id);
        let extra = corrective
            .extra
            .as_ref()
            .ok_or_else(|| bad("no extra".into()))?;
        let state: ChannelSnapshot = extra
            .get("channelState")
            .and_then(|s| serde_json::from_value(s.clone()).ok())
            .ok_or_else(|| bad("no readable channelState".into()))?;
        if state.channel_id != id {
            return Err(bad(format!("the state is of channel {}", state.channel_id)));
        }
        let charged = match (extra.get("voucherState"), state.charged_cumulative_amount) {
            (Some(proof), Some(charged)) => {
                let voucher = SignedVoucher {
                    channel_id: id,
                    max_claimable_amount: proof
                        .get("signedMaxClaimable")
                        .and_then(|v| v.as_str())
                        .and_then(|v| v.parse().ok())
                        .ok_or_else(|| bad("no signedMaxClaimable".into()))?,
                    signature: proof
                        .get("signature")
                        .and_then(|v| v.as_str())
                        .and_then(|v| v.parse().ok())
                        .ok_or_else(|| bad("no signature".into()))?,
                };
                VoucherVerifier::new(chain_id)
                    .verify(&config, &voucher)
                    .map_err(|e| bad(format!("the seller's voucher is not ours: {e}")))?;
                if charged > voucher.max_claimable_amount {
                    return Err(bad(format!(
                        "charged {charged} is above the voucher we signed ({})",
                        voucher.max_claimable_amount
                    )));
                }
                charged
            }
            _ => state.total_claimed,
        };
        let entry = self
            .channels
            .entry(Self::key(corrective, id))
            .or_insert_with(|| PayerChannel {
                config,
                id,
                charged: 0,
                balance: 0,
                pending: None,
            });
        entry.charged = charged;
        entry.balance = state.balance;
        entry.pending = None;
        Ok(())
    }

    /// Forgets the voucher of a request that failed (no receipt): the next payment signs the
    /// same ceiling again.
    pub fn failed(&mut self, requirements: &PaymentRequirements) {
        if let Ok(config) = self.config_for(requirements) {
            if let Ok(chain_id) = Self::chain_id(requirements) {
                let id = channel_id(&config, chain_id);
                if let Some(c) = self.channels.get_mut(&Self::key(requirements, id)) {
                    c.pending = None;
                }
            }
        }
    }
}
