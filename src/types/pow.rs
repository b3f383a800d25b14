//! Proof of work: compact targets ("bits") and the hash-meets-target check.
//!
//! A target is a 256-bit number held as 32 big-endian bytes; a block hash is read the same
//! way, so comparing the byte arrays compares the numbers.

use super::hash::Hash256;

/// A 256-bit target as big-endian bytes.
pub type Target = [u8; 32];

#[derive(Clone, Copy, Debug, thiserror::Error, PartialEq, Eq)]
pub enum CompactError {
    #[error("compact target {0:#010x} has the sign bit set")]
    Negative(u32),
    #[error("compact target {0:#010x} overflows 256 bits")]
    Overflow(u32),
    #[error("compact target {0:#010x} is zero")]
    Zero(u32),
}

/// Expands a compact target: `mantissa * 256^(exponent - 3)`, where exponent is the top byte
/// and mantissa the low 23 bits (bit 23 is a sign bit and must be clear), as in Bitcoin.
pub fn target_from_compact(bits: u32) -> Result<Target, CompactError> {
    if bits & 0x0080_0000 != 0 && bits & 0x007f_ffff != 0 {
        return Err(CompactError::Negative(bits));
    }
    let exponent = (bits >> 24) as i32;
    let mantissa = bits & 0x007f_ffff;
    let mut target = [0u8; 32];
    for k in 0..3i32 {
        let byte = ((mantissa >> (8 * k)) & 0xff) as u8;
        // Position of this byte counted from the least significant end.
        let position = k + exponent - 3;
        if position < 0 {
            continue;
        }
        if position >= 32 {
            if byte != 0 {
                return Err(CompactError::Overflow(bits));
            }
            continue;
        }
        target[31 - position as usize] = byte;
    }
    if target == [0u8; 32] {
        return Err(CompactError::Zero(bits));
    }
    Ok(target)
}

/// Compresses a target to compact form (rounding down, as Bitcoin does).
pub fn compact_from_target(target: &Target) -> u32 {
    let Some(first) = target.iter().position(|b| *b != 0) else {
        return 0;
    };
    let mut size = (32 - first) as u32;
    let byte_at = |i: usize| target.get(i).copied().unwrap_or(0) as u32;
    let mut mantissa = (byte_at(first) << 16) | (byte_at(first + 1) << 8) | byte_at(first + 2);
    if mantissa & 0x0080_0000 != 0 {
        mantissa >>= 8;
        size += 1;
    }
    (size << 24) | mantissa
}

/// Whether `hash`, read as a big-endian number, is at most `target`.
pub fn hash_meets_target(hash: &Hash256, target: &Target) -> bool {
    hash.0 <= *target
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expands_known_compact_values() {
        let t = target_from_compact(0x1d00ffff).unwrap();
        let mut expected = [0u8; 32];
        expected[4] = 0xff;
        expected[5] = 0xff;
        assert_eq!(t, expected);
        let t = target_from_compact(0x207fffff).unwrap();
        assert_eq!(&t[..3], &[0x7f, 0xff, 0xff]);
        assert!(t[3..].iter().all(|b| *b == 0));
    }

    #[test]
    fn rejects_negative_zero_and_overflowing_values() {
        assert_eq!(
            target_from_compact(0x1d80ffff),
            Err(CompactError::Negative(0x1d80ffff))
        );
        assert_eq!(
            target_from_compact(0x1d000000),
            Err(CompactError::Zero(0x1d000000))
        );
        assert_eq!(
            target_from_compact(0x2101_0000),
            Err(CompactError::Overflow(0x2101_0000))
        );
    }

    #[test]
    fn compact_round_trips_for_normalised_values() {
        for bits in [
            0x1d00ffffu32,
            0x207fffff,
            0x1e0fffff,
            0x1b0404cb,
            0x0300_8000,
        ] {
            let t = target_from_compact(bits).unwrap();
            assert_eq!(compact_from_target(&t), bits, "{bits:#x}");
        }
    }

    #[test]
    fn hash_comparison_is_big_endian() {
        let target = target_from_compact(0x1f00ffff).unwrap();
        let mut low = [0u8; 32];
        low[2] = 0xff;
        assert!(hash_meets_target(&Hash256(low), &target));
        let mut high = [0u8; 32];
        high[0] = 1;
        assert!(!hash_meets_target(&Hash256(high), &target));
    }
}
