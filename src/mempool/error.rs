//! `MempoolError`: why the mempool refused (or later dropped) a transaction, each with a
//! stable reason code that RPC errors, REJECT messages and logs carry verbatim.

use crate::types::{Amount, Hash256};

/// A refusal. `code()` is stable: never rename one, add new ones instead.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MempoolError {
    #[error("coinbase: a coinbase transaction is only valid as a block's first transaction")]
    Coinbase,
    #[error("duplicate: transaction {0} is already in the mempool")]
    Duplicate(Hash256),
    #[error(
        "bad-amount: amount and fee must each be within the money range, and so must their sum"
    )]
    BadAmount,
    #[error("fee-too-low: fee {} is below the minimum relay fee {} for this size", fee.in_units(), min.in_units())]
    FeeTooLow { fee: Amount, min: Amount },
    #[error("nonce-too-low: nonce {nonce} is below the account's next nonce {expected}")]
    NonceTooLow { nonce: u64, expected: u64 },
    #[error(
        "insufficient-funds: the account's pending transactions and this one need {}, \
         its balance is {}",
        needed.in_units(),
        available.in_units()
    )]
    InsufficientFunds { needed: Amount, available: Amount },
    #[error(
        "replacement-fee-too-low: replacing {replaces} needs a fee of at least {}, this one pays {}",
        min.in_units(),
        fee.in_units()
    )]
    ReplacementFeeTooLow {
        replaces: Hash256,
        fee: Amount,
        min: Amount,
    },
    #[error("bad-signature: the signature does not verify for this network")]
    BadSignature,
    #[error("too-many-future: too many transactions waiting for a missing earlier nonce")]
    TooManyFuture,
    #[error(
        "too-many-future-from-peer: the peer that relayed it has as many transactions waiting \
         for a missing earlier nonce as one peer may"
    )]
    TooManyFutureFromPeer,
    #[error("chain-too-long: the account has the maximum number of transactions in the mempool")]
    ChainTooLong,
    #[error("mempool-full: the mempool is full and this transaction's fee rate does not beat the lowest")]
    MempoolFull,
    #[error("expired: the transaction stayed in the mempool past the expiry time")]
    Expired,
    #[error(
        "future-expired: the transaction waited past the expiry time for its missing earlier nonce"
    )]
    FutureExpired,
    #[error("evicted: the transaction was evicted to keep the mempool within its size limit")]
    Evicted,
}

impl MempoolError {
    /// The stable reason code: lowercase, hyphenated, the same word the message starts with.
    pub fn code(&self) -> &'static str {
        match self {
            MempoolError::Coinbase => "coinbase",
            MempoolError::Duplicate(_) => "duplicate",
            MempoolError::BadAmount => "bad-amount",
            MempoolError::FeeTooLow { .. } => "fee-too-low",
            MempoolError::NonceTooLow { .. } => "nonce-too-low",
            MempoolError::InsufficientFunds { .. } => "insufficient-funds",
            MempoolError::ReplacementFeeTooLow { .. } => "replacement-fee-too-low",
            MempoolError::BadSignature => "bad-signature",
            MempoolError::TooManyFuture => "too-many-future",
            MempoolError::TooManyFutureFromPeer => "too-many-future-from-peer",
            MempoolError::ChainTooLong => "chain-too-long",
            MempoolError::MempoolFull => "mempool-full",
            MempoolError::Expired => "expired",
            MempoolError::FutureExpired => "future-expired",
            MempoolError::Evicted => "evicted",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_message_starts_with_its_code() {
        let all = [
            MempoolError::Coinbase,
            MempoolError::Duplicate(Hash256::ZERO),
            MempoolError::BadAmount,
            MempoolError::FeeTooLow {
                fee: Amount(1),
                min: Amount(2),
            },
            MempoolError::NonceTooLow {
                nonce: 1,
                expected: 2,
            },
            MempoolError::InsufficientFunds {
                needed: Amount(2),
                available: Amount(1),
            },
            MempoolError::ReplacementFeeTooLow {
                replaces: Hash256::ZERO,
                fee: Amount(1),
                min: Amount(2),
            },
            MempoolError::BadSignature,
            MempoolError::TooManyFuture,
            MempoolError::TooManyFutureFromPeer,
            MempoolError::ChainTooLong,
            MempoolError::MempoolFull,
            MempoolError::Expired,
            MempoolError::FutureExpired,
            MempoolError::Evicted,
        ];
        for e in all {
            assert!(e.to_string().starts_with(&format!("{}: ", e.code())), "{e}");
        }
    }
}
