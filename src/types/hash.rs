//! 256-bit hashes: the `Hash256` value type and SHA-256d.
//!
//! A hash is shown as lowercase hex of its bytes in order (no byte reversal). Where a hash is
//! read as a number (proof of work), it is read big-endian, so leading zero bytes show as
//! leading zeros in its hex form.

use bincode::{Decode, Encode};
use sha2::{Digest, Sha256};
use std::fmt;
use std::str::FromStr;

#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Encode, Decode)]
pub struct Hash256(pub [u8; 32]);

impl Hash256 {
    pub const ZERO: Hash256 = Hash256([0; 32]);

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

/// SHA-256 applied twice.
pub fn sha256d(data: &[u8]) -> Hash256 {
    Hash256(Sha256::digest(Sha256::digest(data)).into())
}

/// SHA-256d over the concatenation of `parts`, without copying them together.
pub fn sha256d_parts(parts: &[&[u8]]) -> Hash256 {
    let mut first = Sha256::new();
    for part in parts {
        first.update(part);
    }
    Hash256(Sha256::digest(first.finalize()).into())
}

impl fmt::Display for Hash256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for Hash256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hash256({self})")
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("a hash is 64 hex characters")]
pub struct ParseHashError;

impl FromStr for Hash256 {
    type Err = ParseHashError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).map_err(|_| ParseHashError)?;
        Ok(Hash256(out))
    }
}

impl serde::Serialize for Hash256 {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Hash256 {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256d_matches_known_vector() {
        // SHA-256d("hello") from Bitcoin's test suite, in byte order.
        assert_eq!(
            sha256d(b"hello").to_string(),
            "9595c9df90075148eb06860365df33584b75bff782a510c6cd4883a419833d50"
        );
        assert_eq!(sha256d_parts(&[b"he", b"llo"]), sha256d(b"hello"));
    }

    #[test]
    fn hex_round_trip() {
        let h = sha256d(b"x");
        assert_eq!(h.to_string().parse::<Hash256>().unwrap(), h);
        assert!("zz".parse::<Hash256>().is_err());
    }
}
