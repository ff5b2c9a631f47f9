//! Exact money: atomic token units as `U256`, and human decimal prices converted without floats.
//!
//! On the wire every amount is a decimal string of a token's smallest unit ([`AtomicAmount`]).
//! People write prices as decimals of whole tokens or dollars ([`DecimalAmount`], e.g. `"$0.01"`)
//! and budgets with a unit ([`TokenAmount`], e.g. `"0.05 USDC"`). The conversion is integer
//! arithmetic only — `"$0.01"` is `10000` atomic units of a 6-decimal token, exactly — and
//! anything that is not a plain non-negative decimal is refused with a [`MoneyError`] that
//! quotes the input, rather than guessed at. A price finer than the token's smallest unit is an
//! error, never silently rounded.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::str::FromStr;

use alloy_primitives::U256;
use serde::{de::Error as _, Deserialize, Deserializer, Serialize, Serializer};

/// Decimal digits of `U256::MAX`; a number with more significant digits cannot fit.
const U256_DIGITS: usize = 78;

/// Why a string is not an amount. Every variant that has an input quotes it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    /// Nothing to parse (an empty string, or a lone `$`).
    #[error("amount is empty: write digits, e.g. \"0.01\"")]
    Empty,
    /// A character that has no place in an amount (letters, signs other than a leading `-`,
    /// exponents, spaces, thousands separators, a `.` without digits on both sides).
    #[error("invalid amount {input:?}: unexpected {found:?} at byte {position} (write plain digits with at most one '.' between digits, optionally after one '$', e.g. \"0.01\")")]
    InvalidCharacter {
        /// The input.
        input: String,
        /// Byte offset of the character in the input.
        position: usize,
        /// The character.
        found: char,
    },
    /// A minus sign: amounts are never negative.
    #[error("invalid amount {input:?}: amounts cannot be negative")]
    Negative {
        /// The input.
        input: String,
    },
    /// Two or more decimal points.
    #[error("invalid amount {input:?}: more than one decimal point")]
    MultipleDecimalPoints {
        /// The input.
        input: String,
    },
    /// Finer than the token's smallest unit.
    #[error("amount {input:?} has {given} significant decimal places but the token has only {max}: round it to {max} places")]
    TooManyDecimals {
        /// The input.
        input: String,
        /// Significant decimal places written (trailing zeros do not count).
        given: u32,
        /// The token's decimals.
        max: u32,
    },
    /// More than 2^256 - 1 atomic units.
    #[error("amount {input:?} is too large (exceeds 2^256-1 atomic units)")]
    Overflow {
        /// The input.
        input: String,
    },
    /// A number without its unit where one is required (`"<amount> <SYMBOL>"`).
    #[error("amount {input:?} has no unit: write \"<amount> <SYMBOL>\", e.g. \"0.05 USDC\"")]
    MissingUnit {
        /// The input.
        input: String,
    },
    /// Not `"<amount> <SYMBOL>"` at all (e.g. the unit first, two spaces, a bad symbol).
    #[error("invalid amount {input:?}: expected \"<amount> <SYMBOL>\" with one space and a symbol of [A-Za-z0-9.], e.g. \"0.05 USDC\"")]
    UnknownFormat {
        /// The input.
        input: String,
    },
}

/// An amount in a token's smallest unit, written on the wire as a decimal string (`"10000"`).
///
/// Parsing accepts plain ASCII digits only (leading zeros are tolerated: the value is the
/// same); it refuses an empty string, signs, whitespace, a decimal point, exponents and hex. A
/// JSON number is refused too: the spec writes amounts as strings because they exceed what a
/// JSON number can carry exactly.
///
/// ```
/// use tollgate_proto::{AtomicAmount, U256};
/// let a: AtomicAmount = serde_json::from_str("\"10000\"").unwrap();
/// assert_eq!(a.get(), U256::from(10_000));
/// assert_eq!(serde_json::to_string(&a).unwrap(), "\"10000\"");
/// assert!("1.0".parse::<AtomicAmount>().is_err());
/// assert!(serde_json::from_str::<AtomicAmount>("10000").is_err());
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AtomicAmount(pub U256);

impl AtomicAmount {
    /// Zero.
    pub const ZERO: Self = Self(U256::ZERO);

    /// The amount.
    pub fn get(&self) -> U256 {
        self.0
    }
}

impl From<U256> for AtomicAmount {
    fn from(v: U256) -> Self {
        Self(v)
    }
}

impl From<u64> for AtomicAmount {
    fn from(v: u64) -> Self {
        Self(U256::from(v))
    }
}

impl From<AtomicAmount> for U256 {
    fn from(v: AtomicAmount) -> Self {
        v.0
    }
}

impl fmt::Display for AtomicAmount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// Parses ASCII digits (already known to be digits) into a `U256`.
fn digits_to_u256(digits: &str, input: &str) -> Result<U256, MoneyError> {
    let significant = digits.trim_start_matches('0');
    if significant.is_empty() {
        return Ok(U256::ZERO);
    }
    let overflow = || MoneyError::Overflow {
        input: input.to_owned(),
    };
    if significant.len() > U256_DIGITS {
        return Err(overflow());
    }
    U256::from_str_radix(significant, 10).map_err(|_| overflow())
}

impl FromStr for AtomicAmount {
    type Err = MoneyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() {
            return Err(MoneyError::Empty);
        }
        if let Some((position, found)) = s.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
            return Err(if found == '-' && position == 0 {
                MoneyError::Negative {
                    input: s.to_owned(),
                }
            } else {
                MoneyError::InvalidCharacter {
                    input: s.to_owned(),
                    position,
                    found,
                }
            });
        }
        digits_to_u256(s, s).map(Self)
    }
}

impl Serialize for AtomicAmount {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for AtomicAmount {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(D::Error::custom)
    }
}

/// An exact, non-negative decimal: a price in dollars or whole tokens.
///
/// Accepted: ASCII digits with at most one `.` that has a digit on each side, optionally after
/// one leading `$` — `"10"`, `"0.01"`, `"$0.01"`, `"1.50"`. Refused: signs, exponents
/// (`"1e6"`), spaces, thousands separators (`"1,000"`), and a bare point (`".5"`, `"5."`); the
/// last two are refused because the official SDK's price parser refuses them too, so a price
/// that works here works there.
///
/// Trailing zeros after the point carry no precision: `"1.50"` equals `"1.5"`, displays as
/// `"1.5"` and converts at one decimal place. [`Display`](fmt::Display) writes that canonical
/// form, without the `$`.
///
/// ```
/// use tollgate_proto::money::{DecimalAmount, MoneyError};
/// let price: DecimalAmount = "$0.01".parse().unwrap();
/// assert_eq!(price.to_atomic(6).unwrap().to::<u64>(), 10_000);
/// assert_eq!(price.to_string(), "0.01");
/// assert!(matches!("1abc".parse::<DecimalAmount>(), Err(MoneyError::InvalidCharacter { .. })));
/// assert!(matches!(
///     "0.0000001".parse::<DecimalAmount>().unwrap().to_atomic(6),
///     Err(MoneyError::TooManyDecimals { given: 7, max: 6, .. })
/// ));
/// ```
#[derive(Debug, Clone)]
pub struct DecimalAmount {
    /// What was parsed, quoted in errors.
    input: String,
    /// All significant digits, without the point.
    digits: U256,
    /// How many of them are after the point (trailing zeros removed).
    scale: u32,
}

impl DecimalAmount {
    /// Number of significant fractional digits (`"1.50"` → 1).
    pub fn scale(&self) -> u32 {
        self.scale
    }

    /// The value of `amount` atomic units of a token with `decimals` decimals
    /// (`10000` at 6 → `0.01`); the inverse of [`to_atomic`](Self::to_atomic).
    pub fn from_atomic(amount: U256, decimals: u8) -> Self {
        let (digits, scale) = normalize(amount, u32::from(decimals));
        Self {
            input: format_scaled(digits, scale),
            digits,
            scale,
        }
    }

    /// In atomic units of a token with `decimals` decimals.
    ///
    /// Fails with [`MoneyError::TooManyDecimals`] when the amount is finer than one atomic unit
    /// (it is never rounded), and [`MoneyError::Overflow`] past `U256::MAX`.
    pub fn to_atomic(&self, decimals: u8) -> Result<U256, MoneyError> {
        let decimals = u32::from(decimals);
        if self.scale > decimals {
            return Err(MoneyError::TooManyDecimals {
                input: self.input.clone(),
                given: self.scale,
                max: decimals,
            });
        }
        if self.digits.is_zero() {
            return Ok(U256::ZERO);
        }
        let overflow = || MoneyError::Overflow {
            input: self.input.clone(),
        };
        let factor = U256::from(10u8)
            .checked_pow(U256::from(decimals - self.scale))
            .ok_or_else(overflow)?;
        self.digits.checked_mul(factor).ok_or_else(overflow)
    }
}

/// Removes trailing zeros from the fraction of `digits / 10^scale`.
fn normalize(mut digits: U256, mut scale: u32) -> (U256, u32) {
    let ten = U256::from(10u8);
    if digits.is_zero() {
        return (digits, 0);
    }
    while scale > 0 && (digits % ten).is_zero() {
        digits /= ten;
        scale -= 1;
    }
    (digits, scale)
}

impl PartialEq for DecimalAmount {
    fn eq(&self, other: &Self) -> bool {
        (self.digits, self.scale) == (other.digits, other.scale)
    }
}

impl Eq for DecimalAmount {}

impl Hash for DecimalAmount {
    fn hash<H: Hasher>(&self, state: &mut H) {
        (self.digits, self.scale).hash(state);
    }
}

impl FromStr for DecimalAmount {
    type Err = MoneyError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let body = input.strip_prefix('$').unwrap_or(input);
        let offset = input.len() - body.len();
        if body.is_empty() {
            return Err(MoneyError::Empty);
        }
        if body.starts_with('-') {
            return Err(MoneyError::Negative {
                input: input.to_owned(),
            });
        }
        let invalid = |i: usize, found: char| MoneyError::InvalidCharacter {
            input: input.to_owned(),
            position: offset + i,
            found,
        };
        let mut point = None;
        for (i, c) in body.char_indices() {
            match c {
                '0'..='9' => {}
                '.' if point.is_some() => {
                    return Err(MoneyError::MultipleDecimalPoints {
                        input: input.to_owned(),
                    })
                }
                '.' => point = Some(i),
                _ => return Err(invalid(i, c)),
            }
        }
        let (int, frac) = match point {
            // A point needs a digit on each side: ".5" and "5." are refused.
            Some(i) if i == 0 || i + 1 == body.len() => return Err(invalid(i, '.')),
            Some(i) => (&body[..i], body[i + 1..].trim_end_matches('0')),
            None => (body, ""),
        };
        let scale = u32::try_from(frac.len()).map_err(|_| MoneyError::Overflow {
            input: input.to_owned(),
        })?;
        let digits = digits_to_u256(&format!("{int}{frac}"), input)?;
        let (digits, scale) = normalize(digits, scale);
        Ok(Self {
            input: input.to_owned(),
            digits,
            scale,
        })
    }
}

impl fmt::Display for DecimalAmount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format_scaled(self.digits, self.scale))
    }
}

impl Serialize for DecimalAmount {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for DecimalAmount {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(D::Error::custom)
    }
}

/// An amount with its unit, as people write budgets and limits: `"0.05 USDC"`.
///
/// Exactly one space separates a [`DecimalAmount`] from a symbol of `[A-Za-z0-9.]` (at most 32
/// characters, e.g. `USDC`, `USDC.e`, `1INCH`). The symbol is kept as written; matching it to an
/// asset is the caller's business.
///
/// ```
/// use tollgate_proto::money::{MoneyError, TokenAmount};
/// let max: TokenAmount = "0.05 USDC".parse().unwrap();
/// assert_eq!(max.symbol, "USDC");
/// assert_eq!(max.amount.to_atomic(6).unwrap().to::<u64>(), 50_000);
/// assert_eq!(max.to_string(), "0.05 USDC");
/// assert!(matches!("USD 10".parse::<TokenAmount>(), Err(MoneyError::UnknownFormat { .. })));
/// assert!(matches!("10".parse::<TokenAmount>(), Err(MoneyError::MissingUnit { .. })));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TokenAmount {
    /// The number.
    pub amount: DecimalAmount,
    /// The token symbol, as written.
    pub symbol: String,
}

fn is_symbol(s: &str) -> bool {
    (1..=32).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.')
}

impl FromStr for TokenAmount {
    type Err = MoneyError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        if input.is_empty() {
            return Err(MoneyError::Empty);
        }
        let unknown = || MoneyError::UnknownFormat {
            input: input.to_owned(),
        };
        let Some((number, symbol)) = input.split_once(' ') else {
            return Err(match input.parse::<DecimalAmount>() {
                Ok(_) => MoneyError::MissingUnit {
                    input: input.to_owned(),
                },
                Err(_) => unknown(),
            });
        };
        if symbol.is_empty() {
            return Err(MoneyError::MissingUnit {
                input: input.to_owned(),
            });
        }
        if !is_symbol(symbol) {
            return Err(unknown());
        }
        let amount = match number.parse::<DecimalAmount>() {
            Ok(amount) => amount,
            // The unit written first ("USD 10"): a format problem, not a bad number.
            Err(_) if is_symbol(number) && symbol.parse::<DecimalAmount>().is_ok() => {
                return Err(unknown())
            }
            Err(e) => return Err(e),
        };
        Ok(Self {
            amount,
            symbol: symbol.to_owned(),
        })
    }
}

impl fmt::Display for TokenAmount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.amount, self.symbol)
    }
}

impl Serialize for TokenAmount {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for TokenAmount {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(D::Error::custom)
    }
}

/// `amount / 10^scale` as a decimal string, trailing fractional zeros trimmed.
fn format_scaled(amount: U256, scale: u32) -> String {
    let s = amount.to_string();
    let d = scale as usize;
    if d == 0 {
        return s;
    }
    let (int, frac) = if s.len() > d {
        let (int, frac) = s.split_at(s.len() - d);
        (int.to_owned(), frac.to_owned())
    } else {
        ("0".to_owned(), format!("{s:0>d$}"))
    };
    let frac = frac.trim_end_matches('0');
    if frac.is_empty() {
        int
    } else {
        format!("{int}.{frac}")
    }
}

/// Formats atomic units as a decimal of whole tokens with `decimals` places, trailing zeros
/// trimmed — for logs, receipts and error messages.
///
/// ```
/// use tollgate_proto::{money::format_atomic, U256};
/// assert_eq!(format_atomic(U256::from(10_000), 6), "0.01");
/// assert_eq!(format_atomic(U256::from(1_500_000), 6), "1.5");
/// assert_eq!(format_atomic(U256::ZERO, 6), "0");
/// ```
pub fn format_atomic(amount: U256, decimals: u8) -> String {
    format_scaled(amount, u32::from(decimals))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn atomic(s: &str, d: u8) -> Result<U256, MoneyError> {
        s.parse::<DecimalAmount>()?.to_atomic(d)
    }

    #[test]
    fn parses_prices() {
        assert_eq!(atomic("$0.01", 6).unwrap(), U256::from(10_000));
        assert_eq!(atomic("0.01", 6).unwrap(), U256::from(10_000));
        assert_eq!(atomic("1", 6).unwrap(), U256::from(1_000_000));
        assert_eq!(atomic("10", 6).unwrap(), U256::from(10_000_000));
        assert_eq!(atomic("0.000001", 6).unwrap(), U256::from(1));
        assert_eq!(atomic("0", 6).unwrap(), U256::ZERO);
        assert_eq!(atomic("0.0", 0).unwrap(), U256::ZERO);
        assert_eq!(atomic("0", 255).unwrap(), U256::ZERO);
        assert_eq!(atomic("007.50", 2).unwrap(), U256::from(750));
        // Trailing zeros carry no precision.
        assert_eq!(atomic("0.0100000000", 6).unwrap(), U256::from(10_000));
        assert_eq!(atomic("5.000", 0).unwrap(), U256::from(5));
        assert_eq!(
            atomic("1.5", 18).unwrap(),
            U256::from(1_500_000_000_000_000_000u128)
        );
        let max = U256::MAX.to_string();
        assert_eq!(atomic(&max, 0).unwrap(), U256::MAX);
    }

    #[test]
    fn rejects_bad_input_with_the_right_error() {
        use MoneyError::*;
        assert!(matches!(
            atomic("1abc", 6),
            Err(InvalidCharacter {
                position: 1,
                found: 'a',
                ..
            })
        ));
        assert!(matches!(
            atomic("USD 10", 6),
            Err(InvalidCharacter {
                position: 0,
                found: 'U',
                ..
            })
        ));
        assert!(matches!(atomic("-1", 6), Err(Negative { .. })));
        assert!(matches!(atomic("$-1", 6), Err(Negative { .. })));
        assert!(matches!(
            atomic("+1", 6),
            Err(InvalidCharacter { found: '+', .. })
        ));
        assert!(matches!(
            atomic("0.0000001", 6),
            Err(TooManyDecimals {
                given: 7,
                max: 6,
                ..
            })
        ));
        assert!(matches!(atomic(&"9".repeat(79), 0), Err(Overflow { .. })));
        assert!(matches!(atomic(&"9".repeat(78), 0), Err(Overflow { .. })));
        assert!(matches!(atomic(&"9".repeat(70), 18), Err(Overflow { .. })));
        assert!(matches!(atomic("1", 255), Err(Overflow { .. })));
        assert!(matches!(
            atomic("1e6", 6),
            Err(InvalidCharacter { found: 'e', .. })
        ));
        assert!(matches!(
            atomic(" 1", 6),
            Err(InvalidCharacter { position: 0, .. })
        ));
        assert!(matches!(
            atomic("1 ", 6),
            Err(InvalidCharacter { position: 1, .. })
        ));
        assert!(matches!(
            atomic("1.", 6),
            Err(InvalidCharacter {
                position: 1,
                found: '.',
                ..
            })
        ));
        assert!(matches!(
            atomic(".5", 6),
            Err(InvalidCharacter { position: 0, .. })
        ));
        assert!(matches!(
            atomic("$.5", 6),
            Err(InvalidCharacter { position: 1, .. })
        ));
        assert!(matches!(
            atomic("1..2", 6),
            Err(MultipleDecimalPoints { .. })
        ));
        assert!(matches!(
            atomic("1.2.3", 6),
            Err(MultipleDecimalPoints { .. })
        ));
        assert!(matches!(
            atomic("1,000", 6),
            Err(InvalidCharacter { found: ',', .. })
        ));
        assert!(matches!(
            atomic("$$1", 6),
            Err(InvalidCharacter {
                position: 1,
                found: '$',
                ..
            })
        ));
        assert!(matches!(
            atomic("0x10", 6),
            Err(InvalidCharacter { found: 'x', .. })
        ));
        assert!(matches!(atomic("", 6), Err(Empty)));
        assert!(matches!(atomic("$", 6), Err(Empty)));
        assert!(matches!(atomic("１", 6), Err(InvalidCharacter { .. })));
        let msg = atomic("0.0000001", 6).unwrap_err().to_string();
        assert!(
            msg.contains("\"0.0000001\"") && msg.contains("only 6"),
            "{msg}"
        );
        let msg = atomic("1abc", 6).unwrap_err().to_string();
        assert!(msg.contains("\"1abc\"") && msg.contains("'a'"), "{msg}");
    }

    #[test]
    fn decimal_equality_is_by_value() {
        let a: DecimalAmount = "$1.50".parse().unwrap();
        let b: DecimalAmount = "1.5".parse().unwrap();
        assert_eq!(a, b);
        assert_eq!(a.scale(), 1);
        assert_eq!(a.to_string(), "1.5");
        assert_ne!(a, "1.05".parse().unwrap());
        assert_eq!(
            DecimalAmount::from_atomic(U256::from(10_000), 6),
            "0.01".parse().unwrap()
        );
        let json = serde_json::to_string(&a).unwrap();
        assert_eq!(json, "\"1.5\"");
        assert_eq!(serde_json::from_str::<DecimalAmount>(&json).unwrap(), a);
        assert!(serde_json::from_str::<DecimalAmount>("1.5").is_err());
    }

    #[test]
    fn atomic_amount_wire_format() {
        let a: AtomicAmount = serde_json::from_str("\"10000\"").unwrap();
        assert_eq!(a.get(), U256::from(10_000));
        assert_eq!(serde_json::to_string(&a).unwrap(), "\"10000\"");
        assert_eq!("0".parse::<AtomicAmount>().unwrap(), AtomicAmount::ZERO);
        assert_eq!(
            "007".parse::<AtomicAmount>().unwrap(),
            AtomicAmount::from(7)
        );
        for (bad, expected) in [
            ("", "Empty"),
            ("-1", "Negative"),
            ("+1", "InvalidCharacter"),
            ("1.0", "InvalidCharacter"),
            ("0x10", "InvalidCharacter"),
            (" 1", "InvalidCharacter"),
            ("1 ", "InvalidCharacter"),
            ("1e3", "InvalidCharacter"),
        ] {
            let err = bad.parse::<AtomicAmount>().unwrap_err();
            assert!(format!("{err:?}").starts_with(expected), "{bad:?}: {err:?}");
        }
        for bad in ["10000", "1.5", "null", "\"\"", "\"-1\""] {
            assert!(serde_json::from_str::<AtomicAmount>(bad).is_err(), "{bad}");
        }
        let max = U256::MAX.to_string();
        assert_eq!(max.parse::<AtomicAmount>().unwrap().get(), U256::MAX);
        assert_eq!(
            format!("000{max}").parse::<AtomicAmount>().unwrap().get(),
            U256::MAX
        );
        assert!(matches!(
            format!("{max}0").parse::<AtomicAmount>(),
            Err(MoneyError::Overflow { .. })
        ));
        // U256::MAX + 1 has as many digits as U256::MAX.
        assert!(matches!(
            "115792089237316195423570985008687907853269984665640564039457584007913129639936"
                .parse::<AtomicAmount>(),
            Err(MoneyError::Overflow { .. })
        ));
    }

    /// A deterministic xorshift generator, so the property test is reproducible.
    struct XorShift(u64);

    impl XorShift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
    }

    #[test]
    fn format_and_parse_round_trip() {
        let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
        for round in 0..5_000 {
            let v = match round % 4 {
                0 => U256::from(rng.next() % 10u64.pow(12)),
                1 => U256::from(rng.next()),
                2 => U256::from_limbs([rng.next(), rng.next(), rng.next(), rng.next()]),
                _ => {
                    U256::from(rng.next() % 1000)
                        * U256::from(10u8).pow(U256::from(rng.next() % 60))
                }
            };
            let decimals = match round % 3 {
                0 => 6,
                1 => 18,
                _ => (rng.next() % 256) as u8,
            };
            let s = format_atomic(v, decimals);
            let parsed: DecimalAmount = s.parse().unwrap_or_else(|e| panic!("{s}: {e}"));
            assert_eq!(parsed.to_string(), s);
            assert_eq!(parsed.to_atomic(decimals).unwrap(), v, "{s} at {decimals}");
            assert_eq!(DecimalAmount::from_atomic(v, decimals), parsed);
            // One more decimal place than the token has is refused, never rounded (or, past 78
            // significant digits, cannot even be held).
            if decimals > 0 && parsed.scale() == u32::from(decimals) {
                match atomic(&format!("{s}1"), decimals) {
                    Err(MoneyError::TooManyDecimals { .. }) => {}
                    Err(MoneyError::Overflow { .. })
                        if s.replace('.', "").trim_start_matches('0').len() + 1 >= U256_DIGITS => {}
                    other => panic!("{s}1 at {decimals}: {other:?}"),
                }
            }
        }
        assert_eq!(format_atomic(U256::from(10_000), 6), "0.01");
        assert_eq!(format_atomic(U256::from(1_000_000), 6), "1");
        assert_eq!(format_atomic(U256::from(1_234_500), 6), "1.2345");
        assert_eq!(format_atomic(U256::ZERO, 6), "0");
        assert_eq!(format_atomic(U256::ZERO, 0), "0");
        assert_eq!(format_atomic(U256::from(1), 6), "0.000001");
        assert_eq!(format_atomic(U256::from(120), 0), "120");
    }

    #[test]
    fn token_amounts() {
        use MoneyError::*;
        let t: TokenAmount = "5 USDC".parse().unwrap();
        assert_eq!(t.amount.to_atomic(6).unwrap(), U256::from(5_000_000));
        let t: TokenAmount = "$0.05 USDC.e".parse().unwrap();
        assert_eq!(t.symbol, "USDC.e");
        assert_eq!(t.to_string(), "0.05 USDC.e");
        assert_eq!(
            serde_json::from_str::<TokenAmount>("\"0.05 USDC.e\"").unwrap(),
            t
        );
        assert!(matches!("".parse::<TokenAmount>(), Err(Empty)));
        assert!(matches!(
            "5".parse::<TokenAmount>(),
            Err(MissingUnit { .. })
        ));
        assert!(matches!(
            "5 ".parse::<TokenAmount>(),
            Err(MissingUnit { .. })
        ));
        assert!(matches!(
            "USD 10".parse::<TokenAmount>(),
            Err(UnknownFormat { .. })
        ));
        assert!(matches!(
            "5USDC".parse::<TokenAmount>(),
            Err(UnknownFormat { .. })
        ));
        assert!(matches!(
            "5 US DC".parse::<TokenAmount>(),
            Err(UnknownFormat { .. })
        ));
        assert!(matches!(
            "5  USDC".parse::<TokenAmount>(),
            Err(UnknownFormat { .. })
        ));
        assert!(matches!(
            "5 US$".parse::<TokenAmount>(),
            Err(UnknownFormat { .. })
        ));
        assert!(matches!(
            "-5 USDC".parse::<TokenAmount>(),
            Err(Negative { .. })
        ));
        assert!(matches!(
            "1.2.3 USDC".parse::<TokenAmount>(),
            Err(MultipleDecimalPoints { .. })
        ));
        let msg = "USD 10".parse::<TokenAmount>().unwrap_err().to_string();
        assert!(msg.contains("\"USD 10\""), "{msg}");
    }
}
