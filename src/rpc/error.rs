//! `RpcError`: the control plane's errors and their stable JSON-RPC codes.
//!
//! Codes follow bitcoind where a counterpart exists, so existing tooling reads them right.

use jsonrpsee::types::ErrorObjectOwned;

/// Stable error codes; never renumber one.
pub mod code {
    pub const MISC_ERROR: i32 = -1;
    pub const INVALID_PARAMETER: i32 = -8;
    pub const INTERNAL_ERROR: i32 = -32603;
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
        ErrorObjectOwned::owned(err.code(), err.to_string(), None::<()>)
    }
}
