//! The node wallet: ed25519 keys in `<datadir>/wallet.key` (hex secrets, one a line, mode 0600,
//! created on first use), transfer building and signing, and the offline helpers behind
//! `noded keygen` and `noded signtx`.
//!
//! Owns key storage only; balances come from the chain and nonces from the chain plus the
//! mempool. Never writes a key anywhere but its 0600 file, and never logs one.

use crate::chain::state::{Account, AccountView};
use crate::datadir::{write_private, DataDirError};
use crate::encoding;
use crate::mempool::{Accepted, MempoolError, SharedMempool};
use crate::params::NetworkParams;
use crate::types::{Address, Amount, NetworkMagic, Transaction, Transfer};
use ed25519_dalek::SigningKey;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

pub const WALLET_FILE: &str = "wallet.key";

/// Keys one wallet file may hold.
pub const MAX_WALLET_KEYS: usize = 1000;

/// The fee `sendtoaddress` pays when none is given: 10,000 base units (0.0001 coin), about
/// 70 times the minimum relay fee of a transfer.
pub const DEFAULT_FEE: Amount = Amount(10_000);

#[derive(Debug, thiserror::Error)]
pub enum WalletError {
    #[error(transparent)]
    File(#[from] DataDirError),
    #[error("key file {path} line {line} is not a 64-hex-character ed25519 secret key")]
    Corrupt { path: PathBuf, line: usize },
    #[error("key file {0} holds no key")]
    Empty(PathBuf),
    #[error("the wallet holds {MAX_WALLET_KEYS} keys, its maximum")]
    Full,
    #[error(
        "insufficient-funds: no wallet address can pay {} (amount plus fee); \
         the most any one can spend now is {}",
        needed.in_units(),
        best.in_units()
    )]
    InsufficientFunds { needed: Amount, best: Amount },
    #[error("bad-amount: amount and fee must be within the money range")]
    BadAmount,
    #[error(transparent)]
    Rejected(#[from] MempoolError),
}

/// Parses one hex secret key.
pub fn parse_secret(text: &str) -> Option<SigningKey> {
    let mut seed = [0u8; 32];
    hex::decode_to_slice(text.trim(), &mut seed).ok()?;
    Some(SigningKey::from_bytes(&seed))
}

/// The hex form of a secret key, as stored.
pub fn secret_hex(key: &SigningKey) -> String {
    hex::encode(key.to_bytes())
}

pub fn address_of(key: &SigningKey) -> Address {
    Address::from_public_key(&key.verifying_key().to_bytes())
}

/// Reads the keys of a key file: one hex secret a line; blank lines and `#` comments skipped.
pub fn read_keys(path: &Path) -> Result<Vec<SigningKey>, WalletError> {
    let text = std::fs::read_to_string(path).map_err(|source| DataDirError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let mut keys = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if keys.len() == MAX_WALLET_KEYS {
            return Err(WalletError::Full);
        }
        keys.push(parse_secret(line).ok_or_else(|| WalletError::Corrupt {
            path: path.to_path_buf(),
            line: i + 1,
        })?);
    }
    Ok(keys)
}

/// The first key of a key file (for `noded signtx --key`).
pub fn read_key(path: &Path) -> Result<SigningKey, WalletError> {
    read_keys(path)?
        .into_iter()
        .next()
        .ok_or_else(|| WalletError::Empty(path.to_path_buf()))
}

/// Writes `keys` to `path` (mode 0600, atomically).
pub fn write_keys(path: &Path, keys: &[SigningKey]) -> Result<(), WalletError> {
    let mut text = String::with_capacity(keys.len() * 65);
    for key in keys {
        text.push_str(&secret_hex(key));
        text.push('\n');
    }
    write_private(path, text.as_bytes())?;
    Ok(())
}

/// A new random key and its address (`noded keygen`).
pub fn keygen() -> (SigningKey, Address) {
    let key = SigningKey::generate(&mut rand::rngs::OsRng);
    let address = address_of(&key);
    (key, address)
}

/// A signed transfer for the network with `magic`.
pub fn sign_transfer(
    key: &SigningKey,
    magic: NetworkMagic,
    to: Address,
    amount: Amount,
    fee: Amount,
    nonce: u64,
) -> Transaction {
    Transaction::Transfer(Transfer::sign(key, magic, to, amount, fee, nonce))
}

/// The hex of a transaction's canonical encoding (what `sendrawtransaction` takes).
pub fn tx_to_hex(tx: &Transaction) -> String {
    hex::encode(encoding::encode(tx))
}

/// Decodes `sendrawtransaction`'s hex: exactly one canonically encoded transaction.
pub fn tx_from_hex(text: &str) -> Result<Transaction, String> {
    let bytes = hex::decode(text.trim()).map_err(|e| format!("not hex: {e}"))?;
    if bytes.len() > crate::types::transaction::MAX_TX_SIZE {
        return Err(format!(
            "{} bytes is longer than any transaction ({} at most)",
            bytes.len(),
            crate::types::transaction::MAX_TX_SIZE
        ));
    }
    encoding::decode_exact(&bytes).map_err(|e| format!("not a transaction: {e}"))
}

/// `noded keygen`: a new key. Without `out`, returns lines `secret: <hex>`, `address: <hex>`
/// and `pubkey: <hex>`; with `out`, writes the secret there (mode 0600; an existing file is
/// never overwritten) and returns the address and public key lines only.
pub fn keygen_command(out: Option<&Path>) -> Result<String, WalletError> {
    let (key, address) = keygen();
    let pubkey = hex::encode(key.verifying_key().to_bytes());
    match out {
        None => Ok(format!(
            "secret: {}\naddress: {address}\npubkey: {pubkey}",
            secret_hex(&key)
        )),
        Some(path) => {
            if path.exists() {
                return Err(WalletError::File(DataDirError::Write {
                    path: path.to_path_buf(),
                    source: std::io::Error::new(
                        std::io::ErrorKind::AlreadyExists,
                        "file exists; not overwriting a key",
                    ),
                }));
            }
            write_keys(path, std::slice::from_ref(&key))?;
            Ok(format!(
                "address: {address}\npubkey: {pubkey}\nsecret key written to {}",
                path.display()
            ))
        }
    }
}

/// `noded signtx`: signs a transfer with the first key in `key_file` for `network` and
/// returns the hex that `sendrawtransaction` takes.
pub fn signtx_command(
    key_file: &Path,
    network: crate::params::Network,
    to: Address,
    amount: Amount,
    fee: Amount,
    nonce: u64,
) -> Result<String, WalletError> {
    let key = read_key(key_file)?;
    if !amount.is_valid()
        || !fee.is_valid()
        || !amount.checked_add(fee).is_some_and(Amount::is_valid)
    {
        return Err(WalletError::BadAmount);
    }
    let tx = sign_transfer(&key, network.params().magic, to, amount, fee, nonce);
    Ok(tx_to_hex(&tx))
}

/// The node's wallet: its keys, loaded (or created) from the datadir on first use.
pub struct Wallet {
    path: PathBuf,
    keys: Vec<SigningKey>,
}

impl Wallet {
    /// Loads `<datadir>/wallet.key`, creating it with one new key if absent.
    pub fn load_or_create(datadir: &Path) -> Result<Wallet, WalletError> {
        let path = datadir.join(WALLET_FILE);
        let keys = match read_keys(&path) {
            Ok(keys) if keys.is_empty() => return Err(WalletError::Empty(path)),
            Ok(keys) => keys,
            Err(WalletError::File(DataDirError::Read { source, .. }))
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                let keys = vec![keygen().0];
                write_keys(&path, &keys)?;
                keys
            }
            Err(e) => return Err(e),
        };
        Ok(Wallet { path, keys })
    }

    /// The wallet's first (default) address.
    pub fn address(&self) -> Address {
        address_of(&self.keys[0])
    }

    pub fn addresses(&self) -> Vec<Address> {
        self.keys.iter().map(address_of).collect()
    }

    pub fn key_for(&self, address: &Address) -> Option<&SigningKey> {
        self.keys.iter().find(|k| address_of(k) == *address)
    }

    /// Adds a key, saves the file, and returns the new key's address.
    pub fn new_address(&mut self) -> Result<Address, WalletError> {
        if self.keys.len() >= MAX_WALLET_KEYS {
            return Err(WalletError::Full);
        }
        let (key, address) = keygen();
        let mut keys = self.keys.clone();
        keys.push(key);
        write_keys(&self.path, &keys)?;
        self.keys = keys;
        Ok(address)
    }
}

/// What `sendtoaddress` did.
#[derive(Clone, Debug)]
pub struct Sent {
    pub from: Address,
    pub nonce: u64,
    pub accepted: Accepted,
}

/// The wallet as the node serves it: loaded on first use, one operation at a time.
pub struct WalletService {
    datadir: PathBuf,
    params: &'static NetworkParams,
    wallet: Mutex<Option<Wallet>>,
}

impl WalletService {
    pub fn new(datadir: &Path, params: &'static NetworkParams) -> WalletService {
        WalletService {
            datadir: datadir.to_path_buf(),
            params,
            wallet: Mutex::new(None),
        }
    }

    /// Runs `f` on the wallet (loading or creating it first). The lock is synchronous and is
    /// never held across an await.
    pub fn with<T>(
        &self,
        f: impl FnOnce(&mut Wallet) -> Result<T, WalletError>,
    ) -> Result<T, WalletError> {
        let mut guard = self.wallet.lock().unwrap_or_else(|p| p.into_inner());
        if guard.is_none() {
            *guard = Some(Wallet::load_or_create(&self.datadir)?);
        }
        f(guard.as_mut().expect("loaded above"))
    }

    /// Confirmed balances of the wallet's addresses at the tip.
    pub fn balances(&self, view: &dyn AccountView) -> Result<Vec<(Address, Account)>, WalletError> {
        self.with(|w| {
            Ok(w.addresses()
                .into_iter()
                .map(|a| (a, view.account(&a)))
                .collect())
        })
    }

    /// Pays `amount` to `to` from the first wallet address that can cover it (after its
    /// pending transactions), with the next nonce after those, and submits it to `pool`.
    pub fn send(
        &self,
        pool: &SharedMempool,
        view: &dyn AccountView,
        to: Address,
        amount: Amount,
        fee: Amount,
        now: u64,
    ) -> Result<Sent, WalletError> {
        let needed = amount
            .checked_add(fee)
            .filter(|n| amount.is_valid() && fee.is_valid() && n.is_valid())
            .ok_or(WalletError::BadAmount)?;
        // The wallet lock is held from choosing the nonce to submitting, so two sends never
        // pick the same nonce.
        self.with(|w| {
            let mut best = Amount::ZERO;
            for key in &w.keys {
                let from = address_of(key);
                let state = view.account(&from);
                let (spent, nonce) = {
                    let p = pool.lock();
                    (p.pending_spend(&from, state), p.next_nonce(&from, state))
                };
                let spendable = state.balance.checked_sub(spent).unwrap_or(Amount::ZERO);
                if spendable < needed {
                    best = best.max(spendable);
                    continue;
                }
                let tx = sign_transfer(key, self.params.magic, to, amount, fee, nonce);
                let accepted = pool.submit(tx, view, now)?;
                return Ok(Sent {
                    from,
                    nonce,
                    accepted,
                });
            }
            Err(WalletError::InsufficientFunds { needed, best })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mempool::{Mempool, MempoolConfig};
    use crate::params::REGTEST;
    use std::collections::HashMap;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn the_wallet_file_is_created_once_private_and_keeps_its_keys() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = Wallet::load_or_create(dir.path()).unwrap();
        let first = w.address();
        let second = w.new_address().unwrap();
        assert_ne!(first, second);
        let again = Wallet::load_or_create(dir.path()).unwrap();
        assert_eq!(again.addresses(), vec![first, second]);
        let mode = std::fs::metadata(dir.path().join(WALLET_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn a_corrupt_wallet_file_is_reported_with_its_line() {
        let dir = tempfile::tempdir().unwrap();
        let good = secret_hex(&keygen().0);
        std::fs::write(dir.path().join(WALLET_FILE), format!("{good}\nnonsense\n")).unwrap();
        let err = Wallet::load_or_create(dir.path()).err().unwrap();
        assert!(err.to_string().contains("line 2"), "{err}");
    }

    #[test]
    fn raw_transactions_round_trip_through_hex_and_junk_is_refused() {
        let (key, _) = keygen();
        let tx = sign_transfer(
            &key,
            REGTEST.magic,
            Address([1; 20]),
            Amount(5),
            Amount(1),
            3,
        );
        assert_eq!(tx_from_hex(&tx_to_hex(&tx)).unwrap(), tx);
        assert!(tx_from_hex("zz").is_err());
        assert!(tx_from_hex(&(tx_to_hex(&tx) + "00")).is_err());
        assert!(tx_from_hex(&"00".repeat(10_000)).is_err());
    }

    #[test]
    fn sends_chain_nonces_and_respect_pending_spends() {
        let dir = tempfile::tempdir().unwrap();
        let service = WalletService::new(dir.path(), &REGTEST);
        let from = service.with(|w| Ok(w.address())).unwrap();
        let mut view = HashMap::new();
        view.insert(
            from,
            Account {
                balance: Amount(100_000),
                nonce: 7,
            },
        );
        let pool = SharedMempool::new(Mempool::new(MempoolConfig::default(), REGTEST.magic));
        let to = Address([9; 20]);
        let a = service
            .send(&pool, &view, to, Amount(40_000), DEFAULT_FEE, 0)
            .unwrap();
        let b = service
            .send(&pool, &view, to, Amount(40_000), DEFAULT_FEE, 0)
            .unwrap();
        assert_eq!((a.nonce, b.nonce), (7, 8));
        assert_eq!(a.from, from);
        let err = service
            .send(&pool, &view, to, Amount(1), DEFAULT_FEE, 0)
            .unwrap_err();
        assert!(
            matches!(err, WalletError::InsufficientFunds { best, .. } if best == Amount(0)),
            "{err}"
        );
        assert_eq!(pool.lock().len(), 2);
    }
}
