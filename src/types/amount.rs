//! `Amount`: a quantity of coin in base units, with checked arithmetic only.

use bincode::{Decode, Encode};
use std::fmt;

/// Base units per coin.
pub const COIN: u64 = 100_000_000;

/// No amount may exceed the total that can ever exist; keeps sums of amounts far from u64::MAX.
pub const MAX_MONEY: u64 = 21_000_000 * COIN;

#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Default,
    Encode,
    Decode,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(transparent)]
pub struct Amount(pub u64);

impl Amount {
    pub const ZERO: Amount = Amount(0);

    pub const fn from_coins(coins: u64) -> Amount {
        Amount(coins * COIN)
    }

    pub fn checked_add(self, other: Amount) -> Option<Amount> {
        self.0.checked_add(other.0).map(Amount)
    }

    pub fn checked_sub(self, other: Amount) -> Option<Amount> {
        self.0.checked_sub(other.0).map(Amount)
    }

    /// Whether the amount is within the money range.
    pub fn is_valid(self) -> bool {
        self.0 <= MAX_MONEY
    }
}

impl Amount {
    /// How an error message shows an amount: base units, as every RPC amount is, with the
    /// coins in brackets for a reader (`150000000 units (1.50000000 coin)`).
    pub fn in_units(self) -> InUnits {
        InUnits(self)
    }
}

/// `Amount::in_units`.
pub struct InUnits(Amount);

impl fmt::Display for InUnits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} units ({} coin)", self.0 .0, self.0)
    }
}

impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:08}", self.0 / COIN, self.0 % COIN)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_messages_show_base_units_first() {
        assert_eq!(
            Amount(150_000_000).in_units().to_string(),
            "150000000 units (1.50000000 coin)"
        );
    }

    #[test]
    fn arithmetic_is_checked() {
        assert_eq!(Amount(u64::MAX).checked_add(Amount(1)), None);
        assert_eq!(Amount(0).checked_sub(Amount(1)), None);
        assert_eq!(Amount(2).checked_add(Amount(3)), Some(Amount(5)));
        assert!(Amount(MAX_MONEY).is_valid());
        assert!(!Amount(MAX_MONEY + 1).is_valid());
    }

    #[test]
    fn displays_in_coins() {
        assert_eq!(Amount(150_000_001).to_string(), "1.50000001");
    }
}
