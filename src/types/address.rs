//! `Address`: the 20-byte account identifier derived from an ed25519 public key.

use super::hash::sha256d_parts;
use bincode::{Decode, Encode};
use std::fmt;
use std::str::FromStr;

/// An account address: the first 20 bytes of SHA-256d("noded-address" || public key).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Encode, Decode)]
pub struct Address(pub [u8; 20]);

impl Address {
    pub fn from_public_key(public_key: &[u8; 32]) -> Address {
        let digest = sha256d_parts(&[b"noded-address", public_key]);
        let mut out = [0u8; 20];
        out.copy_from_slice(&digest.0[..20]);
        Address(out)
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Address({self})")
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("an address is 40 hex characters")]
pub struct ParseAddressError;

impl FromStr for Address {
    type Err = ParseAddressError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut out = [0u8; 20];
        hex::decode_to_slice(s, &mut out).map_err(|_| ParseAddressError)?;
        Ok(Address(out))
    }
}

impl serde::Serialize for Address {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}
