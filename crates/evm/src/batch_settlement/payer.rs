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

/// One channel as the buyer knows it. Serializable: the paying client keeps it in its spend
/// ledger between calls and processes ([`BatchSettlementEvmClient`](super::BatchSettlementEvmClient)).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PayerChannel {
    /// Its config.
    pub config: ChannelConfig,
    /// Its id.
    pub id: B256,
    /// What the seller has charged in total, as the last accepted receipt said.
    #[serde(with = "super::types::amount")]
    pub charged: u128,
    /// The channel's balance, as last reported.
    #[serde(with = "super::types::amount")]
    pub balance: u128,
    /// The ceiling of the voucher last signed and not yet answered, if any.
    #[serde(default, with = "super::types::opt_amount")]
    pub(crate) pending: Option<u128>,
    /// Why this payer signs nothing more on the channel (a seller's receipt broke the rules).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub halted: Option<String>,
}

/// What one payment on a channel is: the payload, the channel as it stands while the payment
/// is answered, and the deposit it carries (with its ERC-3009 nonce and expiry), if any.
#[derive(Debug, Clone)]
pub struct ChannelPayment {
    /// The payment.
    pub payload: PaymentPayload,
    /// The channel awaiting the answer.
    pub channel: PayerChannel,
    /// The deposit it carries, if any.
    pub deposit: Option<DepositMade>,
}

/// A deposit a payment carries: what it moves, and the token authorization's identity (as the
/// paying client's ledger names it) and expiry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DepositMade {
    /// Atomic units.
    pub amount: u128,
    /// The authorization: the ERC-3009 nonce (`0x…`), or `permit2:<nonce>` for a Permit2
    /// deposit.
    pub authorization: String,
    /// Unix seconds from which it can never be used.
    pub valid_before: u64,
}

/// The channel config `payer` uses for `requirements`: the payer is its own payer authorizer
/// (vouchers checked by one signature recovery), salt zero (one channel per seller and terms).
pub fn config_for(
    payer: Address,
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
    let withdraw_delay = match requirements
        .extra
        .as_ref()
        .and_then(|e| e.get("withdrawDelay"))
    {
        None => MIN_WITHDRAW_DELAY,
        Some(d) => d
            .as_u64()
            .or_else(|| d.as_str().and_then(|s| s.parse().ok()))
            .ok_or_else(|| bad("extra.withdrawDelay is not a number of seconds"))?,
    };
    if !(MIN_WITHDRAW_DELAY..=super::MAX_WITHDRAW_DELAY).contains(&withdraw_delay) {
        return Err(bad("extra.withdrawDelay is outside 900 s to 30 days"));
    }
    Ok(ChannelConfig {
        payer,
        payer_authorizer: payer,
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

fn price(requirements: &PaymentRequirements) -> Result<u128, ChannelPayError> {
    u128::try_from(requirements.amount.get())
        .map_err(|_| ChannelPayError::Offer("the price does not fit a uint128".into()))
}

/// The channel `payer` pays `requirements` through: its config and id.
pub fn channel_for(
    payer: Address,
    requirements: &PaymentRequirements,
) -> Result<(ChannelConfig, B256), ChannelPayError> {
    let config = config_for(payer, requirements)?;
    let id = channel_id(&config, chain_id(requirements)?);
    Ok((config, id))
}

/// The deposit the next payment under `requirements` needs, given the channel as known
/// (`None`: never used): none when the balance covers the next ceiling; else `(needed,
/// wanted)` — the least that covers it, and `deposit_requests` requests' worth (at least
/// `needed`). How much to deposit between the two is the caller's policy.
pub fn deposit_needed(
    requirements: &PaymentRequirements,
    channel: Option<&PayerChannel>,
    deposit_requests: u128,
) -> Result<Option<(u128, u128)>, ChannelPayError> {
    if let Some(why) = channel.and_then(|c| c.halted.as_ref()) {
        return Err(ChannelPayError::Receipt(why.clone()));
    }
    let price = price(requirements)?;
    let charged = channel.map_or(0, |c| c.charged);
    let balance = channel.map_or(0, |c| c.balance);
    let ceiling = charged
        .checked_add(price)
        .ok_or_else(|| ChannelPayError::Offer("the channel's ceiling overflows".into()))?;
    if channel.is_some() && balance >= ceiling {
        return Ok(None);
    }
    let needed = (ceiling - balance.min(ceiling)).max(1);
    let wanted = price.saturating_mul(deposit_requests.max(1)).max(needed);
    Ok(Some((needed, wanted)))
}

/// The deposit to make, between what is needed and what is wanted, within `max_deposit`; a
/// deposit that cannot cover the next request within it is refused.
pub fn deposit_within(
    needed_wanted: Option<(u128, u128)>,
    max_deposit: u128,
) -> Result<Option<u128>, ChannelPayError> {
    match needed_wanted {
        None => Ok(None),
        Some((needed, _)) if needed > max_deposit => Err(ChannelPayError::DepositLimit {
            needed,
            limit: max_deposit,
        }),
        Some((needed, wanted)) => Ok(Some(wanted.min(max_deposit).max(needed))),
    }
}

/// Signs the payment for one request under `requirements` on `channel` (as known; `None`:
/// never used): a voucher for `charged + price`, and a deposit of `deposit` — which must cover
/// the ceiling when the balance does not ([`deposit_needed`]).
pub async fn sign_channel_payment<S: Signer + Send + Sync + ?Sized>(
    signer: &S,
    requirements: &PaymentRequirements,
    resource: Option<ResourceInfo>,
    channel: Option<PayerChannel>,
    deposit: Option<u128>,
) -> Result<ChannelPayment, ChannelPayError> {
    let chain_id = chain_id(requirements)?;
    let (config, id) = channel_for(signer.address(), requirements)?;
    match (deposit_needed(requirements, channel.as_ref(), 1)?, deposit) {
        (Some((needed, _)), None) => {
            return Err(ChannelPayError::DepositLimit { needed, limit: 0 })
        }
        (Some((needed, _)), Some(amount)) if amount < needed => {
            return Err(ChannelPayError::DepositLimit {
                needed,
                limit: amount,
            })
        }
        (_, Some(0)) => return Err(ChannelPayError::Offer("a deposit of nothing".into())),
        _ => {}
    }
    let charged = channel.as_ref().map_or(0, |c| c.charged);
    let ceiling = charged + price(requirements)?;
    let sign_err = |e: alloy::signers::Error| ChannelPayError::Sign(e.to_string());
    let voucher = sign_voucher(signer, id, ceiling, chain_id)
        .await
        .map_err(sign_err)?;
    let (payload, deposit) = match deposit {
        None => (
            super::BatchPayload::Voucher(VoucherPayload {
                channel_config: config.clone(),
                voucher,
            }),
            None,
        ),
        Some(amount) if requirements.extra_str("assetTransferMethod") == Some("permit2") => {
            // A token without EIP-3009 (USDT): the payer's Permit2 signature, the Permit2
            // deposit collector as spender and the channel as witness. Needs the payer's
            // one-time approval of Permit2 for the token.
            let nonce = alloy::primitives::U256::from_be_bytes(B256::random().0);
            let deadline = unix_now() + requirements.max_timeout_seconds.max(60);
            let auth = super::sign_permit2_deposit(
                signer,
                id,
                config.token,
                amount,
                nonce,
                deadline,
                chain_id,
            )
            .await
            .map_err(sign_err)?;
            (
                super::BatchPayload::Deposit(DepositPayload {
                    channel_config: config.clone(),
                    voucher,
                    deposit: Deposit {
                        amount,
                        authorization: DepositAuthorization::Permit2(auth),
                    },
                }),
                Some(DepositMade {
                    amount,
                    authorization: format!("{}{nonce}", crate::payer::PERMIT2_ID_PREFIX),
                    // Permit2 accepts the signature while `block.timestamp <= deadline`.
                    valid_before: deadline.saturating_add(1),
                }),
            )
        }
        Some(amount) => {
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
            let terms = Erc3009DepositTerms {
                channel_id: id,
                from: config.payer,
                amount,
                valid_after: 0,
                valid_before: unix_now() + requirements.max_timeout_seconds.max(60),
                salt: B256::random(),
            };
            let auth = sign_erc3009_deposit(signer, &terms, &domain)
                .await
                .map_err(sign_err)?;
            let nonce = super::erc3009_deposit_nonce(id, terms.salt);
            (
                super::BatchPayload::Deposit(DepositPayload {
                    channel_config: config.clone(),
                    voucher,
                    deposit: Deposit {
                        amount,
                        authorization: DepositAuthorization::Erc3009(auth),
                    },
                }),
                Some(DepositMade {
                    amount,
                    authorization: nonce.to_string(),
                    valid_before: terms.valid_before,
                }),
            )
        }
    };
    let mut channel = channel.unwrap_or(PayerChannel {
        config,
        id,
        charged: 0,
        balance: 0,
        pending: None,
        halted: None,
    });
    channel.pending = Some(ceiling);
    Ok(ChannelPayment {
        payload: to_payment(requirements, resource, &payload)?,
        channel,
        deposit,
    })
}

fn to_payment(
    requirements: &PaymentRequirements,
    resource: Option<ResourceInfo>,
    payload: &super::BatchPayload,
) -> Result<PaymentPayload, ChannelPayError> {
    match serde_json::to_value(payload) {
        Ok(serde_json::Value::Object(payload)) => Ok(PaymentPayload {
            x402_version: V2,
            resource,
            accepted: requirements.clone(),
            payload,
            extensions: None,
        }),
        Ok(_) => Err(ChannelPayError::Sign("the payload is not an object".into())),
        Err(e) => Err(ChannelPayError::Sign(e.to_string())),
    }
}

fn snapshot_of(extra: &serde_json::Map<String, serde_json::Value>) -> Option<ChannelSnapshot> {
    serde_json::from_value(extra.get("channelState")?.clone()).ok()
}

/// Checks the seller's receipt for the payment `channel` awaits (the spec's client rules: the
/// charge at most the price, the cumulative amount advanced by exactly the charge within the
/// signed ceiling, the channel's own id) and adopts it, returning the charge. An error means:
/// sign nothing more on this channel.
pub fn adopt_receipt(
    requirements: &PaymentRequirements,
    channel: &mut PayerChannel,
    receipt: &SettleResponse,
) -> Result<u128, ChannelPayError> {
    let bad = |m: String| ChannelPayError::Receipt(m);
    let price = price(requirements)?;
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
    let state = snapshot_of(extra).ok_or_else(|| bad("no readable extra.channelState".into()))?;
    if state.channel_id != channel.id {
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
    if Some(cumulative) != channel.charged.checked_add(charge) || cumulative > ceiling {
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

/// The channel adopted from a corrective 402's `accepts[].extra` (`channelState`,
/// `voucherState`) — only after checking that the seller's voucher is `payer`'s own signature
/// over a ceiling covering the claimed charges. Without a proof, the payer starts again from
/// what is claimed on chain (`totalClaimed`).
pub fn adopt_resync(
    payer: Address,
    corrective: &PaymentRequirements,
    channel: Option<PayerChannel>,
) -> Result<PayerChannel, ChannelPayError> {
    let bad = |m: String| ChannelPayError::Resync(m);
    let chain_id = chain_id(corrective)?;
    let (config, id) = channel_for(payer, corrective)?;
    let extra = corrective
        .extra
        .as_ref()
        .ok_or_else(|| bad("no extra".into()))?;
    let state = snapshot_of(extra).ok_or_else(|| bad("no readable channelState".into()))?;
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
    let mut channel = channel.filter(|c| c.id == id).unwrap_or(PayerChannel {
        config,
        id,
        charged: 0,
        balance: 0,
        pending: None,
        halted: None,
    });
    channel.charged = charged;
    channel.balance = state.balance;
    channel.pending = None;
    Ok(channel)
}

/// Signs a refund request for `channel`: a zero-charge voucher (its ceiling the charged
/// cumulative amount) and the amount to return (`None`: everything unclaimed).
pub async fn sign_refund_request<S: Signer + Send + Sync + ?Sized>(
    signer: &S,
    requirements: &PaymentRequirements,
    resource: Option<ResourceInfo>,
    channel: &PayerChannel,
    amount: Option<u128>,
) -> Result<PaymentPayload, ChannelPayError> {
    if amount == Some(0) {
        return Err(ChannelPayError::Offer("a refund of nothing".into()));
    }
    let voucher = sign_voucher(signer, channel.id, channel.charged, chain_id(requirements)?)
        .await
        .map_err(|e| ChannelPayError::Sign(e.to_string()))?;
    to_payment(
        requirements,
        resource,
        &super::BatchPayload::Refund(super::RefundPayload {
            channel_config: channel.config.clone(),
            voucher,
            amount,
            refund_nonce: None,
            claims: None,
            refund_authorizer_signature: None,
            claim_authorizer_signature: None,
        }),
    )
}

/// Checks a refund's receipt (success, the channel's own id, a refunded amount) and adopts
/// it: the channel as it stays (kept even when empty: a later deposit continues its cumulative
/// amounts) and the amount refunded. The amount is the seller's word; the spend ledger credits
/// no more than this payer deposited.
pub fn adopt_refund(
    mut channel: PayerChannel,
    receipt: &SettleResponse,
) -> Result<(PayerChannel, u128), ChannelPayError> {
    let bad = |m: String| ChannelPayError::Receipt(m);
    if !receipt.success {
        return Err(bad(format!(
            "the refund failed: {}",
            receipt
                .error_reason
                .as_ref()
                .map(|r| r.to_string())
                .unwrap_or_default()
        )));
    }
    let refunded: u128 = receipt
        .amount
        .as_ref()
        .and_then(|a| u128::try_from(a.get()).ok())
        .ok_or_else(|| bad("no refunded amount".into()))?;
    let extra = receipt
        .extra
        .as_ref()
        .ok_or_else(|| bad("no extra".into()))?;
    let state = snapshot_of(extra).ok_or_else(|| bad("no readable extra.channelState".into()))?;
    if state.channel_id != channel.id {
        return Err(bad(format!(
            "the receipt is for channel {}",
            state.channel_id
        )));
    }
    channel.balance = state.balance;
    channel.charged = channel.charged.max(state.total_claimed);
    channel.pending = None;
    Ok((channel, refunded))
}

/// Pays `batch-settlement` offers from one key, holding its channels in memory: one channel per
/// (network, seller, token, receiver authorizer, withdraw delay), opened with a deposit of
/// `deposit_requests` requests' worth (at most `max_deposit`), then a voucher per request.
/// (The paying client keeps the same state in its spend ledger instead, through
/// [`BatchSettlementEvmClient`](super::BatchSettlementEvmClient).)
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
        config_for(self.signer.address(), requirements)
    }

    fn key(&self, requirements: &PaymentRequirements) -> Result<(String, B256), ChannelPayError> {
        let (_, id) = channel_for(self.signer.address(), requirements)?;
        Ok((requirements.network.to_string(), id))
    }

    /// The channel used for `requirements`, if open.
    pub fn channel(&self, requirements: &PaymentRequirements) -> Option<&PayerChannel> {
        self.channels.get(&self.key(requirements).ok()?)
    }

    /// The payment for one request under `requirements`: a voucher when the channel holds
    /// enough, else a deposit (opening or topping it up) with the request's voucher.
    pub async fn pay(
        &mut self,
        requirements: &PaymentRequirements,
        resource: Option<ResourceInfo>,
    ) -> Result<PaymentPayload, ChannelPayError> {
        let key = self.key(requirements)?;
        let known = self.channels.get(&key).cloned();
        let deposit = deposit_within(
            deposit_needed(requirements, known.as_ref(), self.deposit_requests)?,
            self.max_deposit,
        )?;
        let payment =
            sign_channel_payment(&self.signer, requirements, resource, known, deposit).await?;
        self.channels.insert(key, payment.channel);
        Ok(payment.payload)
    }

    /// Checks the seller's receipt for the payment last made under `requirements` and adopts
    /// it ([`adopt_receipt`]). An error means: sign nothing more on this channel.
    pub fn receipt(
        &mut self,
        requirements: &PaymentRequirements,
        receipt: &SettleResponse,
    ) -> Result<u128, ChannelPayError> {
        let key = self.key(requirements)?;
        let channel = self.channels.get_mut(&key).ok_or_else(|| {
            ChannelPayError::Receipt("no payment was made on this channel".into())
        })?;
        adopt_receipt(requirements, channel, receipt)
    }

    /// Adopts the seller's state from a corrective 402 ([`adopt_resync`]).
    pub fn resync(&mut self, corrective: &PaymentRequirements) -> Result<(), ChannelPayError> {
        let key = self.key(corrective)?;
        let known = self.channels.remove(&key);
        match adopt_resync(self.signer.address(), corrective, known.clone()) {
            Ok(channel) => {
                self.channels.insert(key, channel);
                Ok(())
            }
            Err(e) => {
                if let Some(c) = known {
                    self.channels.insert(key, c);
                }
                Err(e)
            }
        }
    }

    /// Forgets the voucher of a request that failed (no receipt): the next payment signs the
    /// same ceiling again.
    pub fn failed(&mut self, requirements: &PaymentRequirements) {
        if let Ok(key) = self.key(requirements) {
            if let Some(c) = self.channels.get_mut(&key) {
                c.pending = None;
            }
        }
    }
}
