//! The node's long-lived ed25519 identity key: created on first start in the datadir (mode
//! 0600), loaded afterwards. The node id is the public key.

use crate::datadir::{write_private, DataDirError};
use crate::types::NodeId;
use ed25519_dalek::SigningKey;
use std::path::{Path, PathBuf};

pub const IDENTITY_FILE: &str = "identity.key";

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error(transparent)]
    File(#[from] DataDirError),
    #[error("identity key {0} is corrupt (expected 64 hex characters); move it away to create a new identity")]
    Corrupt(PathBuf),
}

pub struct Identity {
    key: SigningKey,
}

impl Identity {
    /// Loads the key from `<datadir>/identity.key`, creating it if absent.
    pub fn load_or_create(datadir: &Path) -> Result<Identity, IdentityError> {
        let path = datadir.join(IDENTITY_FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                let mut seed = [0u8; 32];
                hex::decode_to_slice(text.trim(), &mut seed)
                    .map_err(|_| IdentityError::Corrupt(path.clone()))?;
                Ok(Identity {
                    key: SigningKey::from_bytes(&seed),
                })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = SigningKey::generate(&mut rand::rngs::OsRng);
                let text = format!("{}\n", hex::encode(key.to_bytes()));
                write_private(&path, text.as_bytes())?;
                Ok(Identity { key })
            }
            Err(source) => Err(DataDirError::Read { path, source }.into()),
        }
    }

    pub fn node_id(&self) -> NodeId {
        NodeId(self.key.verifying_key().to_bytes())
    }

    pub fn signing_key(&self) -> &SigningKey {
        &self.key
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn identity_is_created_once_private_and_stable() {
        let dir = tempfile::tempdir().unwrap();
        let first = Identity::load_or_create(dir.path()).unwrap();
        let again = Identity::load_or_create(dir.path()).unwrap();
        assert_eq!(first.node_id(), again.node_id());
        let mode = std::fs::metadata(dir.path().join(IDENTITY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn a_corrupt_key_is_reported_not_replaced() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(IDENTITY_FILE), "nonsense").unwrap();
        let err = Identity::load_or_create(dir.path()).err().unwrap();
        assert!(err.to_string().contains("is corrupt"), "{err}");
        assert_eq!(
            std::fs::read_to_string(dir.path().join(IDENTITY_FILE)).unwrap(),
            "nonsense"
        );
    }
}
