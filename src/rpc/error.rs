//! The control plane's errors: `RpcError`, and the one table of JSON-RPC error codes that every
//! RPC module answers with.
//!
//! Codes follow bitcoind where a counterpart exists, so existing tooling reads them right. No
//! other module may define a code number of its own: a duplicate table is how two methods come
//! to answer the same failure with different codes.

use jsonrpsee::types::ErrorObjectOwned;

/// Stable error codes (bitcoind's `RPCErrorCode` numbers); never renumber one.
///
/// Codes jsonrpsee answers by itself (-32700 parse error, -32600 invalid request, -32601 method
/// not found, -32602 invalid params, -32007 too many calls, -32010 batch too large) are not
/// listed: no method of ours returns them.
pub mod code {
    /// A failure with no more specific code (bitcoind `RPC_MISC_ERROR`).
    pub const MISC_ERROR: i32 = -1;
    /// A value of the wrong type or out of its range (`RPC_TYPE_ERROR`).
    pub const TYPE_ERROR: i32 = -3;
    /// The wallet could not do what was asked (`RPC_WALLET_ERROR`).
    pub const WALLET_ERROR: i32 = -4;
    /// No such block, transaction or address, or an address that does not parse
    /// (`RPC_INVALID_ADDRESS_OR_KEY`).
    pub const INVALID_ADDRESS_OR_KEY: i32 = -5;
    /// The wallet's balance does not cover the amount and fee (`RPC_WALLET_INSUFFICIENT_FUNDS`).
    pub const WALLET_INSUFFICIENT_FUNDS: i32 = -6;
    /// A parameter that is well-formed JSON but not an acceptable value
    /// (`RPC_INVALID_PARAMETER`).
    pub const INVALID_PARAMETER: i32 = -8;
    /// The chain store failed or is corrupt (`RPC_DATABASE_ERROR`).
    pub const DATABASE_ERROR: i32 = -20;
    /// Hex or an encoded block or transaction that does not decode (`RPC_DESERIALIZATION_ERROR`).
    pub const DESERIALIZATION_ERROR: i32 = -22;
    /// The mempool refused a transaction; the reason code is in the message and `data.reason`
    /// (`RPC_VERIFY_REJECTED`).
    pub const VERIFY_REJECTED: i32 = -26;
    /// The transaction is already in a block of the active chain (`RPC_VERIFY_ALREADY_IN_CHAIN`).
    pub const VERIFY_ALREADY_IN_CHAIN: i32 = -27;
    /// A bug or an impossible state on our side (JSON-RPC 2.0 internal error).
    pub const INTERNAL_ERROR: i32 = -32603;
}

/// A JSON-RPC error object with `code` from the table and a human message, no data.
pub fn error_object(code: i32, message: impl Into<String>) -> ErrorObjectOwned {
    ErrorObjectOwned::owned(code, message.into(), None::<()>)
}

#[derive(Debug, thiserror::Error)]
pub enum RpcError {
    #[error("{0}")]
    InvalidParameter(String),
    #[error("{0}")]
    Misc(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl RpcError {
    pub fn code(&self) -> i32 {
        match self {
            RpcError::InvalidParameter(_) => code::INVALID_PARAMETER,
            RpcError::Misc(_) => code::MISC_ERROR,
            RpcError::Internal(_) => code::INTERNAL_ERROR,
        }
    }
}

impl From<RpcError> for ErrorObjectOwned {
    fn from(err: RpcError) -> Self {
        error_object(err.code(), err.to_string())
    }
}
