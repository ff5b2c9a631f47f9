//! `exact` on Solana as a seller prices with it: [`ExactSvmServer`] checks the payee and copies
//! the facilitator's fee payer into the requirements the buyer sees.

use solana_address::Address;
use tollgate_core::SchemeServer;
use tollgate_proto::{Network, PaymentRequirements, Scheme, SupportedKind};

/// The seller's side of `exact` on `solana:*`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExactSvmServer;

impl ExactSvmServer {
    /// The scheme server.
    pub fn new() -> Self {
        Self
    }
}

impl SchemeServer for ExactSvmServer {
    fn scheme(&self) -> Scheme {
        Scheme::Exact
    }

    /// A payee is a base58 address of 32 bytes in its one canonical spelling, and not the
    /// all-zero system program (no associated token account can be derived for it that anyone
    /// controls).
    fn parse_pay_to(&self, network: &Network, pay_to: &str) -> Result<String, String> {
        if network.namespace() != "solana" {
            return Err(format!(
                "{network} is not a Solana network: the exact SVM scheme cannot be paid there"
            ));
        }
        let address: Address = pay_to
            .parse()
            .map_err(|_| format!("{pay_to:?} is not a Solana address (base58 of 32 bytes)"))?;
        if address.to_string() != pay_to {
            return Err(format!(
                "{pay_to:?} is not the canonical spelling of {address}"
            ));
        }
        if address == Address::default() {
            return Err("the system program's all-zero address cannot receive tokens".to_owned());
        }
        Ok(address.to_string())
    }

    /// The buyer's transaction names its fee payer, so the requirements must carry the
    /// facilitator's (`extra.feePayer` from `/supported`).
    fn enrich(&self, requirements: &mut PaymentRequirements, kind: &SupportedKind) {
        let Some(fee_payer) = kind.extra.as_ref().and_then(|e| e.get("feePayer")).cloned() else {
            return;
        };
        let extra = requirements.extra.get_or_insert_with(Default::default);
        extra.entry("feePayer").or_insert(fee_payer);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payees_are_canonical_base58_on_solana_only() {
        let server = ExactSvmServer::new();
        let devnet: Network = tollgate_proto::network::SOLANA_DEVNET.parse().unwrap();
        let payee = "2wKupLR9q6wXYppw8Gr2NvWxKBUqm4PPJKkQfoxHDBg4";
        assert_eq!(server.parse_pay_to(&devnet, payee).as_deref(), Ok(payee));
        for bad in [
            "",
            "0x209693Bc6afc0C5328bA36FaF03C514EF312287C",
            "2wKupLR9q6wX",
            "11111111111111111111111111111111",
        ] {
            assert!(server.parse_pay_to(&devnet, bad).is_err(), "{bad}");
        }
        let base: Network = "eip155:8453".parse().unwrap();
        assert!(server.parse_pay_to(&base, payee).is_err());
    }
}
