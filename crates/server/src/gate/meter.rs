//! Metered payments: the buyer authorises a maximum, the seller charges what the work cost.
//!
//! Some schemes (`upto`) let the requirements' `amount` mean the **maximum** when the payment
//! is verified and the **charge** when it is settled (the scheme server says so with
//! [`SchemeServer::metered`](tollgate_core::SchemeServer::metered)). For such a payment the gate
//! hands the handler a [`Meter`]; whatever the handler records there — never more than the
//! maximum the buyer signed — is what the gate asks the facilitator to settle. A handler that
//! records nothing is charged the maximum, as the protocol's default; a handler that fails is
//! charged nothing, as for every payment.

use std::sync::{Arc, Mutex};

use tollgate_proto::AtomicAmount;

/// The charge of one metered payment, shared between the gate and the handler (request
/// extensions over HTTP). Cheap to clone; clones record into the same charge.
///
/// ```
/// use tollgate_proto::AtomicAmount;
/// use tollgate_server::gate::Meter;
///
/// let meter = Meter::new(AtomicAmount::from(1_000));
/// meter.charge(AtomicAmount::from(370)).unwrap();
/// assert_eq!(meter.charged(), Some(AtomicAmount::from(370)));
/// assert!(meter.charge(AtomicAmount::from(1_001)).is_err());
/// assert_eq!(meter.charged(), Some(AtomicAmount::from(370)), "a refused charge changes nothing");
/// ```
#[derive(Clone, Debug)]
pub struct Meter {
    maximum: AtomicAmount,
    charge: Arc<Mutex<Option<AtomicAmount>>>,
}

/// Why a charge was not recorded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChargeError {
    /// The buyer signed for at most `maximum`; a larger charge would not settle (and must not).
    #[error("a charge of {charge} is above the maximum of {maximum} the buyer authorised")]
    AboveMaximum {
        /// The refused charge, in atomic units.
        charge: AtomicAmount,
        /// The authorised maximum, in atomic units.
        maximum: AtomicAmount,
    },
}

impl Meter {
    /// A meter for a payment authorising at most `maximum` atomic units.
    pub fn new(maximum: AtomicAmount) -> Self {
        Self {
            maximum,
            charge: Arc::default(),
        }
    }

    /// The most this payment can be charged (the requirements' amount the buyer signed).
    pub fn maximum(&self) -> AtomicAmount {
        self.maximum
    }

    /// Records the charge, replacing an earlier one; refused (and nothing changed) above the
    /// maximum. Zero is a valid charge: nothing moves, the response is still delivered.
    pub fn charge(&self, amount: AtomicAmount) -> Result<(), ChargeError> {
        if amount > self.maximum {
            return Err(ChargeError::AboveMaximum {
                charge: amount,
                maximum: self.maximum,
            });
        }
        *self.charge.lock().unwrap_or_else(|p| p.into_inner()) = Some(amount);
        Ok(())
    }

    /// The recorded charge; `None` when the handler recorded none (the maximum is charged).
    pub fn charged(&self) -> Option<AtomicAmount> {
        *self.charge.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// What is settled: the recorded charge, or the maximum.
    pub fn settled_amount(&self) -> AtomicAmount {
        self.charged().unwrap_or(self.maximum)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_maximum_is_charged_when_nothing_is_recorded() {
        let meter = Meter::new(AtomicAmount::from(50));
        assert_eq!(meter.settled_amount(), AtomicAmount::from(50));
        meter.charge(AtomicAmount::from(0)).unwrap();
        assert_eq!(meter.settled_amount(), AtomicAmount::from(0));
    }

    #[test]
    fn clones_share_the_charge_and_the_maximum_is_allowed() {
        let meter = Meter::new(AtomicAmount::from(50));
        let handler_side = meter.clone();
        handler_side.charge(AtomicAmount::from(50)).unwrap();
        assert_eq!(meter.charged(), Some(AtomicAmount::from(50)));
        assert_eq!(
            handler_side.charge(AtomicAmount::from(51)),
            Err(ChargeError::AboveMaximum {
                charge: AtomicAmount::from(51),
                maximum: AtomicAmount::from(50)
            })
        );
    }
}
