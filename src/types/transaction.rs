//! Transactions of the account model: a coinbase that mints, a transfer that moves coin.
//!
//! A transfer is signed with ed25519 over a domain-separated message that includes the
//! network magic, so a transaction signed for one network never verifies on another.

use super::address::Address;
use super::amount::Amount;
use super::hash::{sha256d, Hash256};
use super::NetworkMagic;
use crate::encoding;
use bincode::{Decode, Encode};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};

/// Domain-separation prefix of every transfer signature.
pub const TX_SIGNING_DOMAIN: &[u8] = b"noded/tx/v1";

#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub enum Transaction {
    /// Mints the block subsidy plus the block's fees; only as a block's first transaction.
    Coinbase(Coinbase),
    /// Moves `amount` from the account of `from` to `to`, paying `fee` to the miner.
    Transfer(Transfer),
}

#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct Coinbase {
    /// Height of the block that carries it; makes every coinbase's txid unique.
    pub height: u64,
    pub to: Address,
    pub amount: Amount,
}

#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct Transfer {
    /// The sender's ed25519 public key; the sending account is its address.
    pub from: [u8; 32],
    pub to: Address,
    pub amount: Amount,
    pub fee: Amount,
    /// Must equal the sending account's nonce; the account nonce increments when applied.
    pub nonce: u64,
    pub signature: [u8; 64],
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SignatureError {
    #[error("the sender's public key is not a valid ed25519 point")]
    BadPublicKey,
    #[error("the signature does not verify for this network")]
    BadSignature,
}

/// The exact bytes a transfer's signature covers.
pub fn transfer_signing_message(
    magic: NetworkMagic,
    from: &[u8; 32],
    to: &Address,
    amount: Amount,
    fee: Amount,
    nonce: u64,
) -> Vec<u8> {
    let mut msg = Vec::with_capacity(TX_SIGNING_DOMAIN.len() + 4 + 76);
    msg.extend_from_slice(TX_SIGNING_DOMAIN);
    msg.extend_from_slice(&magic.0);
    encoding::encode_into(&(from, to, amount, fee, nonce), &mut msg);
    msg
}

impl Transfer {
    /// Builds and signs a transfer for the network with `magic`.
    pub fn sign(
        key: &SigningKey,
        magic: NetworkMagic,
        to: Address,
        amount: Amount,
        fee: Amount,
        nonce: u64,
    ) -> Transfer {
        let from = key.verifying_key().to_bytes();
        let msg = transfer_signing_message(magic, &from, &to, amount, fee, nonce);
        Transfer {
            from,
            to,
            amount,
            fee,
            nonce,
            signature: key.sign(&msg).to_bytes(),
        }
    }

    pub fn sender(&self) -> Address {
        Address::from_public_key(&self.from)
    }

    pub fn signing_message(&self, magic: NetworkMagic) -> Vec<u8> {
        transfer_signing_message(
            magic,
            &self.from,
            &self.to,
            self.amount,
            self.fee,
            self.nonce,
        )
    }

    /// Verifies the signature strictly (no small-order keys, canonical signatures only), so
    /// that a valid signature cannot be re-encoded into a second valid one.
    pub fn verify_signature(&self, magic: NetworkMagic) -> Result<(), SignatureError> {
        let key = VerifyingKey::from_bytes(&self.from).map_err(|_| SignatureError::BadPublicKey)?;
        let signature = Signature::from_bytes(&self.signature);
        key.verify_strict(&self.signing_message(magic), &signature)
            .map_err(|_| SignatureError::BadSignature)
    }
}

impl Transaction {
    /// The transaction id: SHA-256d of the transaction's canonical encoding.
    pub fn txid(&self) -> Hash256 {
        sha256d(&encoding::encode(self))
    }

    pub fn fee(&self) -> Amount {
        match self {
            Transaction::Coinbase(_) => Amount::ZERO,
            Transaction::Transfer(t) => t.fee,
        }
    }

    pub fn is_coinbase(&self) -> bool {
        matches!(self, Transaction::Coinbase(_))
    }
}

/// Encoded size of the largest transaction (a transfer), in bytes.
pub const MAX_TX_SIZE: usize = 4 + 32 + 20 + 8 + 8 + 8 + 64;

/// Encoded size of the smallest transaction (a coinbase), in bytes.
pub const MIN_TX_SIZE: usize = 4 + 8 + 20 + 8;

#[cfg(test)]
mod tests {
    use super::*;

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    #[test]
    fn a_signed_transfer_verifies_on_its_network_only() {
        let main = NetworkMagic(*b"test");
        let other = NetworkMagic(*b"othr");
        let tx = Transfer::sign(&key(1), main, Address([9; 20]), Amount(5), Amount(1), 0);
        assert_eq!(tx.verify_signature(main), Ok(()));
        assert_eq!(
            tx.verify_signature(other),
            Err(SignatureError::BadSignature)
        );
    }

    #[test]
    fn any_changed_field_breaks_the_signature() {
        let magic = NetworkMagic(*b"test");
        let tx = Transfer::sign(&key(2), magic, Address([9; 20]), Amount(5), Amount(1), 3);
        let mut t = tx.clone();
        t.amount = Amount(6);
        assert!(t.verify_signature(magic).is_err());
        let mut t = tx.clone();
        t.nonce = 4;
        assert!(t.verify_signature(magic).is_err());
        let mut t = tx.clone();
        t.to = Address([8; 20]);
        assert!(t.verify_signature(magic).is_err());
        let mut t = tx;
        t.fee = Amount(0);
        assert!(t.verify_signature(magic).is_err());
    }

    #[test]
    fn encoded_sizes_match_the_constants() {
        let magic = NetworkMagic(*b"test");
        let t = Transfer::sign(&key(3), magic, Address([1; 20]), Amount(1), Amount(1), 1);
        assert_eq!(
            encoding::encode(&Transaction::Transfer(t)).len(),
            MAX_TX_SIZE
        );
        let c = Coinbase {
            height: 1,
            to: Address([1; 20]),
            amount: Amount(1),
        };
        assert_eq!(
            encoding::encode(&Transaction::Coinbase(c)).len(),
            MIN_TX_SIZE
        );
    }

    #[test]
    fn sender_is_the_address_of_the_signing_key() {
        let k = key(4);
        let t = Transfer::sign(
            &k,
            NetworkMagic(*b"test"),
            Address([1; 20]),
            Amount(1),
            Amount(0),
            0,
        );
        assert_eq!(
            t.sender(),
            Address::from_public_key(&k.verifying_key().to_bytes())
        );
    }
}
