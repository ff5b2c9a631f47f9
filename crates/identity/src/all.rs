//! Several providers as one.

use std::sync::Arc;

use tollgate_core::identity::{
    Assessment, IdentityPolicy, IdentityProvider, ProviderError, Subject,
};
use tollgate_core::BoxFuture;

/// Several providers combined: the payer is allowed only if **every** provider allows; the
/// checks of all of them are concatenated, in order. The first provider that cannot answer
/// makes the whole an error (fail closed). No provider at all allows nobody: an empty
/// combination is a configuration mistake, not a licence to serve everyone.
///
/// Each provider fails closed on rules it cannot evaluate, so combine providers with a policy
/// each can fully answer (for instance, one policy per provider behind two gates), or accept
/// that a rule unknown to one provider fails for the whole.
pub struct All(pub Vec<Arc<dyn IdentityProvider>>);

impl IdentityProvider for All {
    fn name(&self) -> &str {
        "all"
    }

    fn assess<'a>(
        &'a self,
        subject: &'a Subject,
        policy: &'a IdentityPolicy,
    ) -> BoxFuture<'a, Result<Assessment, ProviderError>> {
        Box::pin(async move {
            if self.0.is_empty() {
                return Err(ProviderError {
                    provider: self.name().into(),
                    reason: "no identity provider configured".into(),
                });
            }
            let mut allowed = true;
            let mut checks = Vec::new();
            for provider in &self.0 {
                let a = provider.assess(subject, policy).await?;
                allowed &= a.allowed;
                checks.extend(a.checks);
            }
            Ok(Assessment { allowed, checks })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tollgate_core::identity::RuleCheck;

    struct Fixed(Result<bool, ()>, &'static str);

    impl IdentityProvider for Fixed {
        fn name(&self) -> &str {
            self.1
        }
        fn assess<'a>(
            &'a self,
            _: &'a Subject,
            _: &'a IdentityPolicy,
        ) -> BoxFuture<'a, Result<Assessment, ProviderError>> {
            Box::pin(async move {
                match self.0 {
                    Ok(allowed) => Ok(Assessment {
                        allowed,
                        checks: vec![RuleCheck {
                            rule: self.1.into(),
                            passed: allowed,
                            reason: None,
                            remedy: None,
                        }],
                    }),
                    Err(()) => Err(ProviderError {
                        provider: self.1.into(),
                        reason: "down".into(),
                    }),
                }
            })
        }
    }

    #[tokio::test]
    async fn allowed_only_if_every_provider_allows() {
        let subject = Subject {
            payer: "0x01".into(),
            network: tollgate_proto::Network::eip155(1),
            operator_token: None,
        };
        let policy = IdentityPolicy::default();
        let p = |r, n| Arc::new(Fixed(r, n)) as Arc<dyn IdentityProvider>;
        let yes = All(vec![p(Ok(true), "a"), p(Ok(true), "b")]);
        let a = yes.assess(&subject, &policy).await.unwrap();
        assert!(a.allowed);
        assert_eq!(a.checks.len(), 2);
        let no = All(vec![p(Ok(true), "a"), p(Ok(false), "b")]);
        let a = no.assess(&subject, &policy).await.unwrap();
        assert!(!a.allowed);
        assert_eq!(a.checks[1].rule, "b");
        let down = All(vec![p(Ok(true), "a"), p(Err(()), "b")]);
        assert_eq!(
            down.assess(&subject, &policy).await.unwrap_err().provider,
            "b"
        );
        assert!(All(vec![]).assess(&subject, &policy).await.is_err());
    }
}
