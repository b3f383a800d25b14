//! Parameter types that accept what bitcoind accepts: verbosity as a bool or an integer, and
//! amounts as integer base units or as a decimal coin string.
//!
//! The amount rule, one for every method: a JSON integer (or a string of digits) is base
//! units, 1 coin = 100,000,000; a string ending in `coin` ("1.5coin", "0.0001 coin") is
//! coins, up to 8 decimals. A bare fraction (1.5 or "1.5") is refused: it would mean coins to
//! a bitcoind user and nothing sensible in base units.

use crate::types::amount::COIN;
use crate::types::Amount;
use serde::de::{self, Deserializer, Visitor};
use std::fmt;

/// Decimals a coin amount may have: one base unit is 10^-8 coin.
pub const COIN_DECIMALS: usize = 8;

/// A verbosity or verbose flag: `false`/`true` or a non-negative integer (false = 0, true = 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verbosity(pub u8);

impl Verbosity {
    pub fn is_verbose(self) -> bool {
        self.0 > 0
    }
}

impl<'de> serde::Deserialize<'de> for Verbosity {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Verbosity;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a bool or an integer 0 to 255")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Verbosity, E> {
                Ok(Verbosity(u8::from(v)))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Verbosity, E> {
                u8::try_from(v)
                    .map(Verbosity)
                    .map_err(|_| E::custom(format!("verbosity {v} is out of range")))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Verbosity, E> {
                u64::try_from(v)
                    .map_err(|_| E::custom(format!("verbosity {v} is negative")))
                    .and_then(|v| self.visit_u64(v))
            }
        }
        d.deserialize_any(V)
    }
}

/// Parses a coin amount like "1.5" (the text before the `coin` suffix) into base units.
fn coins_to_units(text: &str) -> Result<Amount, String> {
    let bad = || format!("'{text}coin' is not a coin amount like \"1.5coin\"");
    let (whole, frac) = text.split_once('.').unwrap_or((text, ""));
    if whole.is_empty() && frac.is_empty()
        || !whole.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(bad());
    }
    if frac.len() > COIN_DECIMALS {
        return Err(format!(
            "'{text}coin' has more than {COIN_DECIMALS} decimals (1 base unit = 0.00000001 coin)"
        ));
    }
    let whole: u64 = if whole.is_empty() {
        0
    } else {
        whole.parse().map_err(|_| bad())?
    };
    let frac_units: u64 = format!("{frac:0<width$}", width = COIN_DECIMALS)
        .parse()
        .map_err(|_| bad())?;
    let units = whole
        .checked_mul(COIN)
        .and_then(|u| u.checked_add(frac_units))
        .filter(|u| Amount(*u).is_valid())
        .ok_or_else(|| format!("'{text}coin' is more than all the money there can be"))?;
    Ok(Amount(units))
}

/// Parses an amount parameter's text form (see the module comment).
pub fn parse_amount(text: &str) -> Result<Amount, String> {
    let t = text.trim();
    if let Some(coins) = t.strip_suffix("coins").or_else(|| t.strip_suffix("coin")) {
        return coins_to_units(coins.trim_end());
    }
    if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) {
        return t
            .parse()
            .map(Amount)
            .map_err(|_| format!("amount '{t}' is too large"));
    }
    Err(fraction_or_junk(t))
}

fn fraction_or_junk(t: &str) -> String {
    if t.parse::<f64>().is_ok() {
        format!(
            "amount {t} is not whole base units (1 coin = 100000000 base units); for coins write \"{t}coin\""
        )
    } else {
        format!("amount '{t}' is neither base units (an integer) nor coins (like \"1.5coin\")")
    }
}

/// An amount parameter: integer base units or a "<decimal>coin" string.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AmountParam(pub Amount);

impl<'de> serde::Deserialize<'de> for AmountParam {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = AmountParam;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("base units (an integer) or coins (a string like \"1.5coin\")")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<AmountParam, E> {
                Ok(AmountParam(Amount(v)))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<AmountParam, E> {
                u64::try_from(v)
                    .map(|v| AmountParam(Amount(v)))
                    .map_err(|_| E::custom(format!("amount {v} is negative")))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<AmountParam, E> {
                Err(E::custom(fraction_or_junk(&v.to_string())))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<AmountParam, E> {
                parse_amount(v).map(AmountParam).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn amount(v: serde_json::Value) -> Result<u64, String> {
        serde_json::from_value::<AmountParam>(v)
            .map(|a| a.0 .0)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn integers_are_base_units_and_coin_strings_are_coins() {
        assert_eq!(amount(json!(150)), Ok(150));
        assert_eq!(amount(json!("150")), Ok(150));
        assert_eq!(amount(json!("1.5coin")), Ok(150_000_000));
        assert_eq!(amount(json!("0.00000001 coin")), Ok(1));
        assert_eq!(amount(json!("2coins")), Ok(200_000_000));
        assert_eq!(amount(json!(".5coin")), Ok(50_000_000));
        assert!(amount(json!(1.5)).unwrap_err().contains("\"1.5coin\""));
        assert!(amount(json!("1.5"))
            .unwrap_err()
            .contains("not whole base units"));
        assert!(amount(json!("0.000000001coin"))
            .unwrap_err()
            .contains("8 decimals"));
        assert!(amount(json!("abc")).is_err());
        assert!(amount(json!(-1)).is_err());
        assert!(amount(json!("coin")).is_err());
        assert!(amount(json!("99999999999coin")).is_err());
    }

    #[test]
    fn verbosity_is_a_bool_or_an_integer() {
        let v = |j| serde_json::from_value::<Verbosity>(j).map(|v| v.0).ok();
        assert_eq!(v(json!(true)), Some(1));
        assert_eq!(v(json!(false)), Some(0));
        assert_eq!(v(json!(2)), Some(2));
        assert_eq!(v(json!(-1)), None);
        assert_eq!(v(json!("1")), None);
    }
}
