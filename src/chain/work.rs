//! Proof-of-work arithmetic: the work a target represents, cumulative chain work, difficulty
//! and the retarget rule. Pure functions of their inputs; no clock, no store.

use crate::params::NetworkParams;
use crate::types::pow::{compact_from_target, target_from_compact, CompactError, Target};
use primitive_types::{U256, U512};

/// Cumulative work: a 256-bit unsigned integer.
pub type ChainWork = U256;

/// A target as a number.
pub fn target_number(target: &Target) -> U256 {
    U256::from_big_endian(target)
}

/// The expected number of hashes to find a block at `bits`: `2^256 / (target + 1)`.
pub fn block_work(bits: u32) -> Result<ChainWork, CompactError> {
    let target = target_number(&target_from_compact(bits)?);
    // 2^256 / (t + 1) == (2^256 - 1 - t) / (t + 1) + 1, computed without 257-bit numbers.
    Ok(match target.checked_add(U256::one()) {
        Some(divisor) => (!target / divisor) + U256::one(),
        None => U256::one(),
    })
}

/// Chain work as 32 big-endian bytes (the stored and displayed form).
pub fn work_to_bytes(work: ChainWork) -> [u8; 32] {
    work.to_big_endian()
}

pub fn work_from_bytes(bytes: &[u8; 32]) -> ChainWork {
    U256::from_big_endian(bytes)
}

/// bitcoind's "difficulty": the pow limit target divided by the block's target.
pub fn difficulty(params: &NetworkParams, bits: u32) -> f64 {
    let Ok(target) = target_from_compact(bits) else {
        return 0.0;
    };
    u256_to_f64(target_number(&params.pow_limit())) / u256_to_f64(target_number(&target))
}

fn u256_to_f64(n: U256) -> f64 {
    n.0.iter().rev().fold(0.0f64, |acc, limb| {
        acc * 18_446_744_073_709_551_616.0 + *limb as f64
    })
}

/// The retarget rule: `new = old × actual / (interval × spacing)`, where `actual` is clamped
/// to `[expected / factor, expected × factor]` (a negative timespan counts as 0 and so as the
/// minimum), and the result is capped at the pow limit and expressed in compact form
/// (rounding down). `first_time` and `last_time` are the times of the first and last blocks
/// of the interval that just ended.
pub fn retarget_bits(
    params: &NetworkParams,
    old_bits: u32,
    first_time: u64,
    last_time: u64,
) -> u32 {
    let expected = params.retarget_interval * params.target_spacing_secs;
    let factor = params.max_retarget_factor.max(1);
    let actual = last_time
        .saturating_sub(first_time)
        .clamp(expected / factor, expected.saturating_mul(factor));
    let limit = target_number(&params.pow_limit());
    let old = match target_from_compact(old_bits) {
        Ok(t) => target_number(&t),
        // Only valid targets are ever accepted; an invalid one retargets to the limit.
        Err(_) => limit,
    };
    let product: U512 = old.full_mul(U256::from(actual));
    let quotient = product / U512::from(expected.max(1));
    let new = U256::try_from(quotient).unwrap_or(U256::MAX).min(limit);
    compact_from_target(&new.to_big_endian())
}

/// Whether the block at `height` starts a new difficulty interval on this network.
pub fn is_retarget_height(params: &NetworkParams, height: u64) -> bool {
    params.retarget && height > 0 && height.is_multiple_of(params.retarget_interval)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::{MAIN, REGTEST};

    #[test]
    fn work_of_known_targets() {
        // Target 2^255 - 1 (about) gives work 2; the regtest limit 0x7fffff << 232 gives 2.
        assert_eq!(block_work(0x207fffff).unwrap(), U256::from(2));
        // Bitcoin's difficulty-1 target 0x1d00ffff has work 0x100010001.
        assert_eq!(
            block_work(0x1d00ffff).unwrap(),
            U256::from(0x1_0001_0001u64)
        );
        assert!(block_work(0x1d00ffff).unwrap() > block_work(0x1e0fffff).unwrap());
        assert!(block_work(0).is_err());
    }

    #[test]
    fn work_bytes_round_trip() {
        let w = block_work(0x1b0404cb).unwrap() * U256::from(12345);
        assert_eq!(work_from_bytes(&work_to_bytes(w)), w);
    }

    #[test]
    fn difficulty_is_one_at_the_limit_and_grows_with_harder_targets() {
        assert_eq!(difficulty(&MAIN, MAIN.pow_limit_bits), 1.0);
        assert!((difficulty(&MAIN, 0x1d0fffff) - 256.0).abs() < 1e-9);
        assert_eq!(difficulty(&REGTEST, REGTEST.pow_limit_bits), 1.0);
    }

    #[test]
    fn retarget_keeps_the_target_when_blocks_are_on_schedule() {
        let expected = MAIN.retarget_interval * MAIN.target_spacing_secs;
        let bits = 0x1d0f_ffff;
        assert_eq!(retarget_bits(&MAIN, bits, 1000, 1000 + expected), bits);
    }

    #[test]
    fn retarget_halves_the_target_when_blocks_come_twice_as_fast() {
        let expected = MAIN.retarget_interval * MAIN.target_spacing_secs;
        let new = retarget_bits(&MAIN, 0x1d0f_fffe, 0, expected / 2);
        assert_eq!(new, 0x1d07_ffff);
    }

    #[test]
    fn retarget_clamps_the_timespan_to_the_factor() {
        let expected = MAIN.retarget_interval * MAIN.target_spacing_secs;
        let bits = 0x1c0f_fff0;
        let fastest = retarget_bits(&MAIN, bits, 0, expected / 4);
        assert_eq!(retarget_bits(&MAIN, bits, 0, 1), fastest);
        // A last time before the first counts as the minimum timespan too.
        assert_eq!(retarget_bits(&MAIN, bits, 500, 100), fastest);
        assert_eq!(fastest, 0x1c03_fffc);
        let slowest = retarget_bits(&MAIN, bits, 0, expected * 4);
        assert_eq!(retarget_bits(&MAIN, bits, 0, expected * 1000), slowest);
        assert_eq!(slowest, 0x1c3f_ffc0);
    }

    #[test]
    fn retarget_never_exceeds_the_pow_limit() {
        let expected = MAIN.retarget_interval * MAIN.target_spacing_secs;
        let new = retarget_bits(&MAIN, MAIN.pow_limit_bits, 0, expected * 4);
        assert_eq!(new, MAIN.pow_limit_bits);
    }

    #[test]
    fn retarget_heights() {
        assert!(!is_retarget_height(&MAIN, 0));
        assert!(!is_retarget_height(&MAIN, 719));
        assert!(is_retarget_height(&MAIN, 720));
        assert!(is_retarget_height(&MAIN, 1440));
        assert!(!is_retarget_height(&REGTEST, 720));
    }
}
