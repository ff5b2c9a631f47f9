//! The verification checklist of the `exact` EVM scheme.
//!
//! The order follows the official SDK's, so a payment that is wrong in several ways gets the
//! same first reason from Tollgate as from the reference facilitator: scheme, signing domain,
//! network, (EIP-6492 factory), signature, recipient, time window, amount, then on-chain checks.

use alloy::primitives::{Address, Bytes, U256};
use alloy::providers::{DynProvider, Provider};
use alloy::rpc::types::TransactionRequest;
use alloy::sol_types::{SolCall, SolValue};
use alloy::transports::{RpcError, TransportError};
use tollgate_proto::{PaymentPayload, PaymentRequirements, Scheme};
use tracing::Instrument;

use super::batch::revert_message;
use super::probe::{eoa_probe, DryRun, ProbeError, Probed};
use super::{ExactEvmFacilitator, VerifiedPayment, VerifyError};
use crate::client::{authorization_digest, unix_now};
use crate::contracts::{eip6492_validator_code, IEip3009Token, IErc1271, ERC1271_MAGIC_VALUE};
use crate::domain::{parse_address, DomainError, TokenDomain};
use crate::payload::{Authorization, ExactEvmPayload};
use crate::signature::{parse_ecdsa, unwrap_eip6492, PayerSignature};

impl ExactEvmFacilitator {
    /// Runs every check of the spec's verification list against `payment`.
    ///
    /// Returns the verified payment (payer, authorization, signature class), or the first
    /// failing check. Reads the chain (payer code, signature validity for contract wallets, a
    /// dry run of the transfer, and on failure the balance, nonce state and token domain) but
    /// never writes to it.
    pub async fn verify(
        &self,
        payment: &PaymentPayload,
        requirements: &PaymentRequirements,
    ) -> Result<VerifiedPayment, VerifyError> {
        let span = tracing::info_span!(
            "exact_evm.verify",
            network = %requirements.network,
            asset = %requirements.asset,
        );
        async move {
            let result = self.verify_inner(payment, requirements).await;
            match &result {
                Ok(v) => tracing::debug!(payer = %v.payer, "payment verified"),
                Err(e) => tracing::info!(reason = %e.reason(), error = %e, "payment rejected"),
            }
            result
        }
        .instrument(span)
        .await
    }

    async fn verify_inner(
        &self,
        payment: &PaymentPayload,
        requirements: &PaymentRequirements,
    ) -> Result<VerifiedPayment, VerifyError> {
        let payload = ExactEvmPayload::from_payment(payment)
            .map_err(|e| VerifyError::InvalidPayload(e.to_string()))?;
        let auth = &payload.authorization;

        if payment.accepted.scheme != Scheme::Exact || requirements.scheme != Scheme::Exact {
            return Err(VerifyError::SchemeMismatch {
                payload: scheme_name(&payment.accepted.scheme),
                requirements: scheme_name(&requirements.scheme),
            });
        }
        if payment.accepted.network != requirements.network {
            return Err(VerifyError::NetworkMismatch {
                payload: payment.accepted.network.to_string(),
                requirements: requirements.network.to_string(),
            });
        }
        if requirements.network != self.chain.network {
            return Err(VerifyError::UnsupportedNetwork {
                requested: requirements.network.to_string(),
                served: self.chain.network.to_string(),
            });
        }
        let domain = TokenDomain::resolve(requirements).map_err(|e| match e {
            DomainError::Missing { .. } => VerifyError::MissingDomain(e.to_string()),
            DomainError::NotEvm(_) | DomainError::BadAsset { .. } => {
                VerifyError::InvalidRequirements(e.to_string())
            }
        })?;
        let asset = domain.verifying_contract;
        match parse_address(&payment.accepted.asset) {
            Ok(a) if a == asset => {}
            _ => {
                return Err(VerifyError::AssetMismatch {
                    payload: payment.accepted.asset.clone(),
                    requirements: requirements.asset.clone(),
                })
            }
        }

        self.check_asset_deployed(asset).await?;

        // The payer's code and the dry run in one read shared with concurrent verifications,
        // when the signature has an EOA's shape; otherwise (or without a verdict) one by one.
        let (signature, dry_run) = match self.probe_eoa(auth, &payload.signature, asset).await? {
            Some((signature, dry_run)) => (signature, Some(dry_run)),
            None => (
                self.classify_signature(auth.from, &payload.signature)
                    .await?,
                None,
            ),
        };
        // A dry run that succeeded is the token's own `ecrecover` of this signature over these
        // fields, against a payer without code: the signature is proven, and recovering it
        // here again would be the verification's single largest cost (~47 µs) for nothing.
        // Anything else (no dry run, or one that reverted) is checked here, so a bad signature
        // is still named as one.
        if !matches!(dry_run, Some(DryRun::Succeeded)) {
            let digest = authorization_digest(auth, &domain);
            self.check_signature(auth.from, digest, &signature).await?;
        }

        let pay_to = parse_address(&requirements.pay_to).map_err(|reason| {
            VerifyError::InvalidRequirements(format!(
                "payTo {:?} is not an address: {reason}",
                requirements.pay_to
            ))
        })?;
        let accepted_pay_to = parse_address(&payment.accepted.pay_to).ok();
        if auth.to != pay_to || accepted_pay_to != Some(pay_to) {
            let got = if auth.to != pay_to {
                auth.to.to_string()
            } else {
                payment.accepted.pay_to.clone()
            };
            return Err(VerifyError::RecipientMismatch {
                expected: requirements.pay_to.clone(),
                got,
            });
        }

        let now = unix_now();
        let margin = self.config.valid_before_margin.as_secs();
        if auth.valid_before < U256::from(now.saturating_add(margin)) {
            return Err(VerifyError::Expired {
                valid_before: auth.valid_before,
                now,
                margin_secs: margin,
            });
        }
        if auth.valid_after > U256::from(now) {
            return Err(VerifyError::NotYetValid {
                valid_after: auth.valid_after,
                now,
            });
        }

        let required = requirements.amount.get();
        for offered in [auth.value, payment.accepted.amount.get()] {
            if offered != required {
                return Err(VerifyError::ValueMismatch {
                    expected: required,
                    got: offered,
                });
            }
        }
        if required.is_zero() {
            // Moves nothing, yet settling it costs this facilitator gas — and anyone can sign
            // one with a fresh, unfunded key. Not a payment.
            return Err(VerifyError::InvalidRequirements(
                "amount is 0: a transfer of nothing is not a payment".into(),
            ));
        }

        match &signature {
            PayerSignature::Counterfactual { .. } => {
                // The wallet does not exist yet, so the transfer cannot be dry-run on its own;
                // the signature was proven by the deployless validator, and the token-side
                // conditions are read directly.
                if let Some(err) =
                    diagnose(&self.chain.provider, asset, auth, Some(&domain)).await?
                {
                    return Err(err);
                }
            }
            _ if dry_run.is_some() => {
                if let Some(DryRun::Reverted(data)) = dry_run {
                    return Err(diagnose(&self.chain.provider, asset, auth, Some(&domain))
                        .await?
                        .unwrap_or_else(|| VerifyError::SimulationFailed(revert_message(&data))));
                }
            }
            _ => {
                let call = transfer_calldata(auth, &signature);
                let tx = TransactionRequest::default()
                    .from(self.chain.pool.primary())
                    .to(asset)
                    .input(call.into());
                if let Err(e) = self.chain.provider.call(tx).await {
                    if is_transport_failure(&e) {
                        return Err(VerifyError::rpc("transfer simulation", e));
                    }
                    return Err(diagnose(&self.chain.provider, asset, auth, Some(&domain))
                        .await?
                        .unwrap_or_else(|| VerifyError::SimulationFailed(e.to_string())));
                }
            }
        }

        Ok(VerifiedPayment {
            payer: auth.from,
            asset,
            authorization: auth.clone(),
            signature,
        })
    }

    /// Checks only that `payment`'s signature authorizes its transfer under `requirements`'
    /// signing domain — no time window, amount, nonce state or dry run.
    ///
    /// A facilitator asked to replay the result of a settlement that already happened uses
    /// this: the authorization is spent (so a full verification would fail), yet the request
    /// must still prove it carries the payer's signature and not merely a copy of the
    /// authorization's fields with arbitrary signature bytes.
    pub async fn verify_signature(
        &self,
        payment: &PaymentPayload,
        requirements: &PaymentRequirements,
    ) -> Result<(), VerifyError> {
        let payload = ExactEvmPayload::from_payment(payment)
            .map_err(|e| VerifyError::InvalidPayload(e.to_string()))?;
        let domain = TokenDomain::resolve(requirements).map_err(|e| match e {
            DomainError::Missing { .. } => VerifyError::MissingDomain(e.to_string()),
            DomainError::NotEvm(_) | DomainError::BadAsset { .. } => {
                VerifyError::InvalidRequirements(e.to_string())
            }
        })?;
        let auth = &payload.authorization;
        let signature = self
            .classify_signature(auth.from, &payload.signature)
            .await?;
        let digest = authorization_digest(auth, &domain);
        self.check_signature(auth.from, digest, &signature).await
    }

    /// The payer's code size and the transfer's dry run from the coalescing prober, for a
    /// signature shaped like an EOA's (65 bytes, not EIP-6492 wrapped) from a payer without
    /// code. `None` sends the verification the one-by-one way: the prober is off or refused,
    /// the signature is another kind, the payer has code (EIP-1271 decides, not `ecrecover`),
    /// or the batch could not judge this payment.
    async fn probe_eoa(
        &self,
        auth: &Authorization,
        signature: &Bytes,
        asset: Address,
    ) -> Result<Option<(PayerSignature, DryRun)>, VerifyError> {
        let Some(prober) = self.prober() else {
            return Ok(None);
        };
        if !matches!(unwrap_eip6492(signature), Ok(None)) {
            return Ok(None);
        }
        let Ok(ecdsa) = parse_ecdsa(signature) else {
            return Ok(None);
        };
        let eoa = PayerSignature::Eoa(ecdsa);
        match prober.probe(eoa_probe(asset, auth, &eoa)).await {
            Ok(Probed {
                payer_has_code: false,
                outcome: outcome @ (DryRun::Succeeded | DryRun::Reverted(_)),
            }) => Ok(Some((eoa, outcome))),
            Ok(_) | Err(ProbeError::Refused) => Ok(None),
            Err(ProbeError::Transport(message)) => {
                Err(VerifyError::rpc("coalesced transfer simulation", message))
            }
        }
    }

    /// Refuses an asset address without contract code before any gas can be spent on it. A
    /// positive answer is cached for the life of the facilitator.
    async fn check_asset_deployed(&self, asset: Address) -> Result<(), VerifyError> {
        let cached = self
            .deployed_assets
            .lock()
            .map(|set| set.contains(&asset))
            .unwrap_or(false);
        if cached {
            return Ok(());
        }
        let code = self
            .chain
            .provider
            .get_code_at(asset)
            .await
            .map_err(|e| VerifyError::rpc("asset code", e))?;
        if code.is_empty() {
            return Err(VerifyError::AssetNotDeployed { asset });
        }
        if let Ok(mut set) = self.deployed_assets.lock() {
            set.insert(asset);
        }
        Ok(())
    }

    /// Decides how `from` signed, from the signature's shape and whether `from` has code.
    async fn classify_signature(
        &self,
        from: Address,
        sig: &Bytes,
    ) -> Result<PayerSignature, VerifyError> {
        let wrapped = unwrap_eip6492(sig).map_err(VerifyError::MalformedSignature)?;
        let code = self
            .chain
            .provider
            .get_code_at(from)
            .await
            .map_err(|e| VerifyError::rpc("payer code", e))?;
        let deployed = !code.is_empty();
        match wrapped {
            Some(parts) if deployed => Ok(PayerSignature::Contract(parts.inner)),
            Some(parts) => {
                if !self.config.allowed_factories.contains(&parts.factory) {
                    return Err(VerifyError::FactoryNotAllowed {
                        factory: parts.factory,
                    });
                }
                Ok(PayerSignature::Counterfactual {
                    factory: parts.factory,
                    factory_calldata: parts.factory_calldata,
                    inner: parts.inner,
                    wrapped: sig.clone(),
                })
            }
            None if deployed => Ok(PayerSignature::Contract(sig.clone())),
            None => parse_ecdsa(sig)
                .map(PayerSignature::Eoa)
                .map_err(VerifyError::MalformedSignature),
        }
    }

    async fn check_signature(
        &self,
        from: Address,
        digest: alloy::primitives::B256,
        signature: &PayerSignature,
    ) -> Result<(), VerifyError> {
        let invalid = VerifyError::InvalidSignature { payer: from };
        match signature {
            PayerSignature::Eoa(sig) => {
                // Tokens reject high-s signatures (EIP-2), so a malleated signature would only
                // fail later in the dry run; say what is wrong now.
                if sig.normalize_s().is_some() {
                    return Err(invalid);
                }
                match crate::signature::recover_signer(sig, &digest) {
                    Some(recovered) if recovered == from => Ok(()),
                    _ => Err(invalid),
                }
            }
            PayerSignature::Contract(bytes) => {
                let wallet = IErc1271::new(from, &self.chain.provider);
                match wallet.isValidSignature(digest, bytes.clone()).call().await {
                    Ok(magic) if magic.0 == ERC1271_MAGIC_VALUE => Ok(()),
                    Ok(_) => Err(invalid),
                    Err(alloy::contract::Error::TransportError(e)) if is_transport_failure(&e) => {
                        Err(VerifyError::rpc("EIP-1271 isValidSignature", e))
                    }
                    Err(_) => Err(invalid),
                }
            }
            PayerSignature::Counterfactual { wrapped, .. } => {
                let code = eip6492_validator_code().map_err(VerifyError::SimulationFailed)?;
                let mut data = code.to_vec();
                data.extend_from_slice(&(from, digest, wrapped.clone()).abi_encode_params());
                let tx = TransactionRequest::default().input(Bytes::from(data).into());
                match self.chain.provider.call(tx).await {
                    Ok(out) if out.as_ref() == [1u8] => Ok(()),
                    Ok(_) => Err(invalid),
                    Err(e) if is_transport_failure(&e) => {
                        Err(VerifyError::rpc("EIP-6492 validation", e))
                    }
                    Err(_) => Err(invalid),
                }
            }
        }
    }
}

/// Reads why a transfer would fail: nonce state, token domain (when known), balance. `None` means none of
/// these explains it.
pub(super) async fn diagnose(
    provider: &DynProvider,
    asset: Address,
    auth: &Authorization,
    domain: Option<&TokenDomain>,
) -> Result<Option<VerifyError>, VerifyError> {
    let token = IEip3009Token::new(asset, provider);
    let state_call = token.authorizationState(auth.from, auth.nonce);
    let balance_call = token.balanceOf(auth.from);
    let name_call = token.name();
    let version_call = token.version();
    let (state, balance, name, version) = tokio::join!(
        state_call.call(),
        balance_call.call(),
        name_call.call(),
        version_call.call(),
    );
    match state {
        Err(alloy::contract::Error::TransportError(e)) if is_transport_failure(&e) => {
            return Err(VerifyError::rpc("authorizationState", e))
        }
        Err(_) => return Ok(Some(VerifyError::Eip3009NotSupported { asset })),
        Ok(true) => {
            return Ok(Some(VerifyError::NonceAlreadyUsed {
                payer: auth.from,
                nonce: auth.nonce,
            }))
        }
        Ok(false) => {}
    }
    if let (Ok(actual), Some(domain)) = (name, domain) {
        if actual != domain.name {
            return Ok(Some(VerifyError::TokenNameMismatch {
                signed: domain.name.clone(),
                actual,
            }));
        }
    }
    if let (Ok(actual), Some(domain)) = (version, domain) {
        if actual != domain.version {
            return Ok(Some(VerifyError::TokenVersionMismatch {
                signed: domain.version.clone(),
                actual,
            }));
        }
    }
    match balance {
        Ok(balance) if balance < auth.value => Ok(Some(VerifyError::InsufficientBalance {
            payer: auth.from,
            balance,
            required: auth.value,
        })),
        Ok(_) => Ok(None),
        Err(alloy::contract::Error::TransportError(e)) if is_transport_failure(&e) => {
            Err(VerifyError::rpc("balanceOf", e))
        }
        Err(_) => Ok(None),
    }
}

/// Calldata of the `transferWithAuthorization` overload that fits the signature class.
pub(crate) fn transfer_calldata(auth: &Authorization, signature: &PayerSignature) -> Vec<u8> {
    match signature {
        PayerSignature::Eoa(sig) => IEip3009Token::transferWithAuthorization_0Call {
            from: auth.from,
            to: auth.to,
            value: auth.value,
            validAfter: auth.valid_after,
            validBefore: auth.valid_before,
            nonce: auth.nonce,
            v: 27 + u8::from(sig.v()),
            r: sig.r().into(),
            s: sig.s().into(),
        }
        .abi_encode(),
        PayerSignature::Contract(bytes) | PayerSignature::Counterfactual { inner: bytes, .. } => {
            IEip3009Token::transferWithAuthorization_1Call {
                from: auth.from,
                to: auth.to,
                value: auth.value,
                validAfter: auth.valid_after,
                validBefore: auth.valid_before,
                nonce: auth.nonce,
                signature: bytes.clone(),
            }
            .abi_encode()
        }
    }
}

/// True when the node could not be reached or answered garbage, as opposed to answering that
/// the call reverted. Only the latter is the payment's fault.
pub(crate) fn is_transport_failure(e: &TransportError) -> bool {
    !matches!(e, RpcError::ErrorResp(_))
}

fn scheme_name(scheme: &Scheme) -> String {
    serde_json::to_value(scheme)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}
