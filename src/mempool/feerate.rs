//! `FeeRate`: a fee per encoded byte, compared exactly (no rounding) by cross-multiplication.

use crate::types::Amount;
use std::cmp::Ordering;

/// `fee / size`. Two rates compare as the fractions they are.
#[derive(Clone, Copy, Debug)]
pub struct FeeRate {
    pub fee: u64,
    /// Encoded size in bytes; never zero.
    pub size: u64,
}

impl FeeRate {
    pub fn new(fee: Amount, size: usize) -> FeeRate {
        FeeRate {
            fee: fee.0,
            size: (size as u64).max(1),
        }
    }

    /// The rate in base units per 1,000 bytes, rounded down (for display).
    pub fn per_kb(self) -> u64 {
        ((self.fee as u128 * 1000) / self.size as u128) as u64
    }

    /// The smallest fee that pays `per_kb` base units per 1,000 bytes for `size` bytes.
    pub fn min_fee(per_kb: u64, size: usize) -> Amount {
        Amount(((per_kb as u128 * size as u128).div_ceil(1000)) as u64)
    }
}

impl Ord for FeeRate {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.fee as u128 * other.size as u128).cmp(&(other.fee as u128 * self.size as u128))
    }
}

impl PartialOrd for FeeRate {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for FeeRate {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for FeeRate {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_compare_as_fractions() {
        let a = FeeRate::new(Amount(2), 100);
        let b = FeeRate::new(Amount(1), 50);
        assert_eq!(a, b);
        assert!(FeeRate::new(Amount(3), 100) > a);
        assert!(FeeRate::new(Amount(u64::MAX), 1) > FeeRate::new(Amount(u64::MAX - 1), 1));
        assert_eq!(FeeRate::new(Amount(144), 144).per_kb(), 1000);
    }

    #[test]
    fn min_fee_rounds_up() {
        assert_eq!(FeeRate::min_fee(1000, 144), Amount(144));
        assert_eq!(FeeRate::min_fee(1, 144), Amount(1));
        assert_eq!(FeeRate::min_fee(0, 144), Amount(0));
    }
}
