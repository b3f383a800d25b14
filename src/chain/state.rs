//! Account state: the `Account` record and the read interface the mempool and validation use.

use crate::types::{Address, Amount};
use bincode::{Decode, Encode};

/// One account's state. An address never seen has the default: zero balance, nonce 0.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Encode, Decode, serde::Serialize)]
pub struct Account {
    pub balance: Amount,
    /// The nonce the account's next transfer must carry.
    pub nonce: u64,
}

/// Read access to account state at some chain tip.
pub trait AccountView {
    fn account(&self, address: &Address) -> Account;
}

impl AccountView for std::collections::HashMap<Address, Account> {
    fn account(&self, address: &Address) -> Account {
        self.get(address).copied().unwrap_or_default()
    }
}
