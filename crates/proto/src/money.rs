//! Exact money: atomic token units as `U256`, and human decimal prices converted without floats.
//!
//! A price like `"$0.01"` becomes `10000` atomic units of a 6-decimal token by integer
//! arithmetic only. Anything that is not a plain non-negative decimal is refused with a message
//! that quotes the input, rather than guessed at.

use std::fmt;
use std::str::FromStr;

use alloy_primitives::U256;
use serde::{de::Error as _, Deserialize, Deserializer, Serialize, Serializer};

/// Longest decimal input accepted; `U256` has 78 digits, so anything longer cannot be a price.
const MAX_INPUT: usize = 100;

/// An amount in a token's smallest unit, written on the wire as a decimal string ("10000").
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AtomicAmount(pub U256);

impl AtomicAmount {
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

impl fmt::Display for AtomicAmount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl FromStr for AtomicAmount {
    type Err = MoneyError;

    /// Digits only: no sign, no decimal point, no exponent, no whitespace, no hex.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() {
            return Err(MoneyError::Empty);
        }
        if let Some((position, found)) = s.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
            if found == '-' && position == 0 {
                return Err(MoneyError::Negative {
                    input: s.to_owned(),
                });
            }
            return Err(MoneyError::InvalidCharacter {
                input: s.to_owned(),
                position,
                found,
            });
        }
        if s.len() > MAX_INPUT {
            return Err(MoneyError::Overflow {
                input: s.to_owned(),
            });
        }
        U256::from_str_radix(s, 10)
            .map(Self)
            .map_err(|_| MoneyError::Overflow {
                input: s.to_owned(),
            })
    }
}

impl Serialize for AtomicAmount {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0.to_string())
    }
}

impl<'de> Deserialize<'de> for AtomicAmount {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(D::Error::custom)
    }
}

/// An exact, non-negative decimal such as a price in dollars or tokens.
///
/// Accepted: digits with at most one decimal point between digits, optionally after one `$`
/// (`"10"`, `"0.01"`, `"$0.01"`). Refused: signs, exponents, spaces, thousands separators,
/// `".5"` and `"5."` (ambiguous in hand-written config, so spelled out instead).
///
/// ```
/// use tollgate_proto::money::DecimalAmount;
/// let price: DecimalAmount = "$0.01".parse().unwrap();
/// assert_eq!(price.to_atomic(6).unwrap().to::<u64>(), 10_000);
/// assert!("1abc".parse::<DecimalAmount>().is_err());
/// assert!("0.0000001".parse::<DecimalAmount>().unwrap().to_atomic(6).is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DecimalAmount {
    input: String,
    /// All digits, without the point.
    digits: U256,
    /// How many of them are after the point.
    scale: u32,
}

impl DecimalAmount {
    /// Number of fractional digits written.
    pub fn scale(&self) -> u32 {
        self.scale
    }

    /// In atomic units of a token with `decimals` decimals.
    pub fn to_atomic(&self, decimals: u8) -> Result<U256, MoneyError> {
        let decimals = u32::from(decimals);
        if self.scale > decimals {
            return Err(MoneyError::TooManyDecimals {
                input: self.input.clone(),
                given: self.scale,
                max: decimals,
            });
        }
        let factor = U256::from(10u8)
            .checked_pow(U256::from(decimals - self.scale))
            .ok_or_else(|| MoneyError::Overflow {
                input: self.input.clone(),
            })?;
        self.digits
            .checked_mul(factor)
            .ok_or_else(|| MoneyError::Overflow {
                input: self.input.clone(),
            })
    }
}

impl FromStr for DecimalAmount {
    type Err = MoneyError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        if input.is_empty() {
            return Err(MoneyError::Empty);
        }
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
        if input.len() > MAX_INPUT {
            return Err(MoneyError::Overflow {
                input: input.to_owned(),
            });
        }
        let mut digits = U256::ZERO;
        let mut scale = 0u32;
        let mut seen_point = false;
        let bytes = body.as_bytes();
        for (i, c) in body.char_indices() {
            match c {
                '0'..='9' => {
                    digits = digits
                        .checked_mul(U256::from(10u8))
                        .and_then(|d| d.checked_add(U256::from(c as u8 - b'0')))
                        .ok_or_else(|| MoneyError::Overflow {
                            input: input.to_owned(),
                        })?;
                    if seen_point {
                        scale += 1;
                    }
                }
                '.' if seen_point => {
                    return Err(MoneyError::MultipleDecimalPoints {
                        input: input.to_owned(),
                    })
                }
                '.' if i == 0 || i + 1 == bytes.len() => {
                    return Err(MoneyError::InvalidCharacter {
                        input: input.to_owned(),
                        position: offset + i,
                        found: c,
                    })
                }
                '.' => seen_point = true,
                _ => {
                    return Err(MoneyError::InvalidCharacter {
                        input: input.to_owned(),
                        position: offset + i,
                        found: c,
                    })
                }
            }
        }
        Ok(Self {
            input: input.to_owned(),
            digits,
            scale,
        })
    }
}

impl fmt::Display for DecimalAmount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.input)
    }
}

/// An amount with its unit, as people write budgets: `"0.05 USDC"`.
///
/// ```
/// use tollgate_proto::money::TokenAmount;
/// let max: TokenAmount = "0.05 USDC".parse().unwrap();
/// assert_eq!(max.symbol, "USDC");
/// assert_eq!(max.amount.to_atomic(6).unwrap().to::<u64>(), 50_000);
/// assert!("USD 10".parse::<TokenAmount>().is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TokenAmount {
    /// The number.
    pub amount: DecimalAmount,
    /// The token symbol.
    pub symbol: String,
}

impl FromStr for TokenAmount {
    type Err = MoneyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (number, symbol) = s.split_once(' ').ok_or_else(|| MoneyError::MissingUnit {
            input: s.to_owned(),
        })?;
        let symbol_ok = !symbol.is_empty()
            && symbol.len() <= 16
            && symbol
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.');
        if !symbol_ok {
            return Err(MoneyError::MissingUnit {
                input: s.to_owned(),
            });
        }
        Ok(Self {
            amount: number.parse()?,
            symbol: symbol.to_owned(),
        })
    }
}

impl fmt::Display for TokenAmount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.amount, self.symbol)
    }
}

/// Formats atomic units as a decimal with `decimals` places, trailing zeros trimmed
/// (`10000` with 6 → `"0.01"`).
pub fn format_atomic(amount: U256, decimals: u8) -> String {
    let s = amount.to_string();
    let d = usize::from(decimals);
    if d == 0 {
        return s;
    }
    let (int, frac) = if s.len() > d {
        (s[..s.len() - d].to_owned(), s[s.len() - d..].to_owned())
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

/// Why a string is not an amount.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    /// Nothing to parse.
    #[error("amount is empty")]
    Empty,
    /// A character that has no place in an amount.
    #[error("invalid amount {input:?}: unexpected {found:?} at position {position} (write digits with an optional single '.', e.g. \"0.01\")")]
    InvalidCharacter {
        /// The input.
        input: String,
        /// Byte offset of the character.
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
    /// Two decimal points.
    #[error("invalid amount {input:?}: more than one decimal point")]
    MultipleDecimalPoints {
        /// The input.
        input: String,
    },
    /// Finer than the token's smallest unit.
    #[error("amount {input:?} has {given} decimal places but the token has only {max}")]
    TooManyDecimals {
        /// The input.
        input: String,
        /// Decimal places written.
        given: u32,
        /// The token's decimals.
        max: u32,
    },
    /// Larger than 2^256 - 1 atomic units.
    #[error("amount {input:?} is too large (exceeds 2^256-1 atomic units)")]
    Overflow {
        /// The input.
        input: String,
    },
    /// `"<amount> <SYMBOL>"` expected.
    #[error("invalid amount {input:?}: expected \"<amount> <SYMBOL>\", e.g. \"0.05 USDC\"")]
    MissingUnit {
        /// The input.
        input: String,
    },
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
        assert_eq!(atomic("0.000001", 6).unwrap(), U256::from(1));
        assert_eq!(atomic("0", 6).unwrap(), U256::ZERO);
        assert_eq!(
            atomic("1.5", 18).unwrap(),
            U256::from(1_500_000_000_000_000_000u128)
        );
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
            Err(InvalidCharacter { position: 0, .. })
        ));
        assert!(matches!(atomic("-1", 6), Err(Negative { .. })));
        assert!(matches!(atomic("$-1", 6), Err(Negative { .. })));
        assert!(matches!(
            atomic("0.0000001", 6),
            Err(TooManyDecimals {
                given: 7,
                max: 6,
                ..
            })
        ));
        assert!(matches!(atomic(&"9".repeat(80), 6), Err(Overflow { .. })));
        assert!(matches!(atomic(&"9".repeat(78), 6), Err(Overflow { .. })));
        assert!(matches!(
            atomic("1e6", 6),
            Err(InvalidCharacter { found: 'e', .. })
        ));
        assert!(matches!(
            atomic(" 1", 6),
            Err(InvalidCharacter { position: 0, .. })
        ));
        assert!(matches!(atomic("1.", 6), Err(InvalidCharacter { .. })));
        assert!(matches!(atomic(".5", 6), Err(InvalidCharacter { .. })));
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
        assert!(matches!(atomic("", 6), Err(Empty)));
        assert!(matches!(atomic("$", 6), Err(Empty)));
        assert!(matches!(atomic("１", 6), Err(InvalidCharacter { .. })));
        let msg = atomic("0.0000001", 6).unwrap_err().to_string();
        assert!(msg.contains("0.0000001") && msg.contains("only 6"), "{msg}");
    }

    #[test]
    fn atomic_amount_wire_format() {
        let a: AtomicAmount = serde_json::from_str("\"10000\"").unwrap();
        assert_eq!(a.get(), U256::from(10_000));
        assert_eq!(serde_json::to_string(&a).unwrap(), "\"10000\"");
        for bad in [
            "\"\"", "\"-1\"", "\"1.0\"", "\"0x10\"", "\" 1\"", "10000", "\"1e3\"",
        ] {
            assert!(serde_json::from_str::<AtomicAmount>(bad).is_err(), "{bad}");
        }
        let max = U256::MAX.to_string();
        assert_eq!(max.parse::<AtomicAmount>().unwrap().get(), U256::MAX);
        assert!(format!("{max}0").parse::<AtomicAmount>().is_err());
    }

    #[test]
    fn format_and_parse_round_trip() {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for decimals in [0u8, 1, 6, 18] {
            for _ in 0..500 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let v = U256::from(x % 10u64.pow(12));
                let s = format_atomic(v, decimals);
                assert_eq!(atomic(&s, decimals).unwrap(), v, "{s} at {decimals}");
            }
        }
        assert_eq!(format_atomic(U256::from(10_000), 6), "0.01");
        assert_eq!(format_atomic(U256::from(1_000_000), 6), "1");
        assert_eq!(format_atomic(U256::ZERO, 6), "0");
        assert_eq!(format_atomic(U256::from(1), 6), "0.000001");
    }

    #[test]
    fn token_amounts() {
        let t: TokenAmount = "5 USDC".parse().unwrap();
        assert_eq!(t.amount.to_atomic(6).unwrap(), U256::from(5_000_000));
        assert!(matches!(
            "5".parse::<TokenAmount>(),
            Err(MoneyError::MissingUnit { .. })
        ));
        assert!(matches!(
            "5 US DC".parse::<TokenAmount>(),
            Err(MoneyError::MissingUnit { .. })
        ));
        assert!(matches!(
            "-5 USDC".parse::<TokenAmount>(),
            Err(MoneyError::Negative { .. })
        ));
    }
}
