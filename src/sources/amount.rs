//! A decimal amount that arrives as a JSON number (`30`) or string (`"100.00"`, `".40"`).
//! Lenient about that one difference, strict about everything else.

use std::fmt;

use rust_decimal::Decimal;
use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer};

use crate::model::parse_amount;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Amount(pub Decimal);

impl<'de> Deserialize<'de> for Amount {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct AmountVisitor;
        impl Visitor<'_> for AmountVisitor {
            type Value = Amount;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a decimal amount as a number or a string")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Amount, E> {
                Ok(Amount(Decimal::from(v)))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Amount, E> {
                Ok(Amount(Decimal::from(v)))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Amount, E> {
                // Shortest round-trip text of the number, so 0.1 stays 0.1.
                if !v.is_finite() {
                    return Err(E::custom("amount is not a finite number"));
                }
                parse_amount(&v.to_string()).map(Amount).map_err(E::custom)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Amount, E> {
                parse_amount(v).map(Amount).map_err(E::custom)
            }
        }
        d.deserialize_any(AmountVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    #[test]
    fn numbers_and_strings() {
        let v: Vec<Amount> =
            serde_json::from_str(r#"[30, "100.00", ".40", "-50.00", 0.1, -2]"#).unwrap();
        let expect = ["30", "100.00", "0.40", "-50.00", "0.1", "-2"];
        for (a, e) in v.iter().zip(expect) {
            assert_eq!(a.0, Decimal::from_str(e).unwrap());
        }
    }

    #[test]
    fn garbage_is_an_error() {
        for bad in [r#""12$""#, "true", "[]", r#""""#, "{}"] {
            assert!(serde_json::from_str::<Amount>(bad).is_err(), "{bad}");
        }
    }
}
