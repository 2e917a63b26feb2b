//! Signing keys (`nextbest keygen NAME --dir keys/`): one ed25519 key pair
//! per person, as two small TOML files. `NAME.key` holds the secret key
//! (whoever holds it can approve as NAME; it is written readable by its
//! owner only); `NAME.pub` holds the public key, which goes into a
//! governance repository's `governance.toml`.

use std::path::{Path, PathBuf};

use ed25519_dalek::{Signer, SigningKey};
use serde::{Deserialize, Serialize};

use crate::error::{read_text, CliError};

use nextbest_governance::keys::decode_32;
pub use nextbest_governance::keys::{PublicKey, ALGORITHM};

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SecretFile {
    name: String,
    algorithm: String,
    secret_key: String,
    public_key: String,
}

/// A person's signing key, loaded from `NAME.key`.
pub struct KeyPair {
    /// Who the key belongs to.
    pub name: String,
    signing: SigningKey,
}

impl KeyPair {
    /// The public half.
    pub fn public(&self) -> PublicKey {
        PublicKey {
            name: self.name.clone(),
            algorithm: ALGORITHM.into(),
            public_key: hex::encode(self.signing.verifying_key().as_bytes()),
        }
    }

    /// The public key, hex.
    pub fn public_hex(&self) -> String {
        hex::encode(self.signing.verifying_key().as_bytes())
    }

    /// Sign `message`; the signature in hex.
    pub fn sign(&self, message: &[u8]) -> String {
        hex::encode(self.signing.sign(message).to_bytes())
    }

    /// Load a secret key file, checking that its public key is the
    /// secret's.
    pub fn load(path: &Path) -> Result<KeyPair, CliError> {
        let text = read_text(path)?;
        let f: SecretFile = toml::from_str(&text).map_err(|e| {
            CliError::bad_file(
                path,
                format!("not a nextbest secret key file: {}", e.message()),
            )
        })?;
        if f.algorithm != ALGORITHM {
            return Err(CliError::bad_file(
                path,
                format!("unknown algorithm `{}`", f.algorithm),
            ));
        }
        let secret: [u8; 32] = decode_32(&f.secret_key)
            .ok_or_else(|| CliError::bad_file(path, "secret_key is not 64 hex digits"))?;
        let signing = SigningKey::from_bytes(&secret);
        let pair = KeyPair {
            name: f.name,
            signing,
        };
        if pair.public_hex() != f.public_key.to_ascii_lowercase() {
            return Err(CliError::bad_file(
                path,
                "public_key does not belong to secret_key: the file was edited",
            ));
        }
        Ok(pair)
    }
}

/// Load a public key file (`NAME.pub`).
pub fn load_public(path: &Path) -> Result<PublicKey, CliError> {
    let text = read_text(path)?;
    let k: PublicKey = toml::from_str(&text).map_err(|e| {
        CliError::bad_file(
            path,
            format!("not a nextbest public key file: {}", e.message()),
        )
    })?;
    k.check().map_err(|m| CliError::bad_file(path, m))?;
    Ok(k)
}

/// Whether `name` is usable as a person's name and a file name.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        && !name.starts_with('.')
}

/// Generate a key pair for `name` and write `dir/NAME.key` and
/// `dir/NAME.pub`; never overwrites a key. Returns both paths.
pub fn keygen(name: &str, dir: &Path) -> Result<(PathBuf, PublicKey, PathBuf), CliError> {
    if !valid_name(name) {
        return Err(CliError::refused(format!(
            "key name `{name}`: use letters, digits, `_`, `-` and `.` (at most 64, not starting with `.`)"
        )));
    }
    std::fs::create_dir_all(dir).map_err(|e| CliError::io(dir, e))?;
    let (secret_path, public_path) = (
        dir.join(format!("{name}.key")),
        dir.join(format!("{name}.pub")),
    );
    for p in [&secret_path, &public_path] {
        if p.exists() {
            return Err(CliError::refused(format!(
                "{} exists: refusing to overwrite a key (move it away first)",
                p.display()
            )));
        }
    }
    let mut secret = [0u8; 32];
    getrandom::fill(&mut secret)
        .map_err(|e| CliError::refused(format!("no randomness from the operating system: {e}")))?;
    let pair = KeyPair {
        name: name.to_string(),
        signing: SigningKey::from_bytes(&secret),
    };
    let file = SecretFile {
        name: name.to_string(),
        algorithm: ALGORITHM.into(),
        secret_key: hex::encode(secret),
        public_key: pair.public_hex(),
    };
    let text = format!(
        "# nextbest signing key of {name}: SECRET. Whoever holds this file can sign as {name}.\n{}",
        toml::to_string(&file).map_err(|e| CliError::refused(e.to_string()))?
    );
    write_secret(&secret_path, text.as_bytes())?;
    let public = pair.public();
    let text = format!(
        "# nextbest public key of {name}: list it in a governance.toml to make {name} an approver.\n{}",
        toml::to_string(&public).map_err(|e| CliError::refused(e.to_string()))?
    );
    std::fs::write(&public_path, text).map_err(|e| CliError::io(&public_path, e))?;
    Ok((secret_path, public, public_path))
}

/// Create `path` new (never replacing a file), readable by its owner only.
fn write_secret(path: &Path, bytes: &[u8]) -> Result<(), CliError> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path).map_err(|e| CliError::io(path, e))?;
    f.write_all(bytes)
        .and_then(|_| f.sync_all())
        .map_err(|e| CliError::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use nextbest_governance::keys::verify;

    #[test]
    fn a_generated_key_signs_and_its_public_file_verifies() {
        let dir = tempfile::tempdir().unwrap();
        let (secret, public, public_path) = keygen("alice", dir.path()).unwrap();
        let pair = KeyPair::load(&secret).unwrap();
        assert_eq!(load_public(&public_path).unwrap(), public);
        let sig = pair.sign(b"revision abc");
        assert!(verify(&public.public_key, b"revision abc", &sig));
        assert!(
            !verify(&public.public_key, b"revision abd", &sig),
            "another message must not verify"
        );
    }

    #[test]
    fn keygen_never_overwrites_a_key() {
        let dir = tempfile::tempdir().unwrap();
        keygen("bob", dir.path()).unwrap();
        let err = keygen("bob", dir.path()).err().unwrap().to_string();
        assert!(err.contains("bob.key exists"), "{err}");
    }

    #[test]
    fn a_secret_file_whose_public_key_was_swapped_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (secret, _, _) = keygen("carol", dir.path()).unwrap();
        let (_, other, _) = keygen("dave", dir.path()).unwrap();
        let text = std::fs::read_to_string(&secret).unwrap();
        let own = KeyPair::load(&secret).unwrap().public_hex();
        std::fs::write(&secret, text.replace(&own, &other.public_key)).unwrap();
        let err = KeyPair::load(&secret).err().unwrap().to_string();
        assert!(err.contains("does not belong to secret_key"), "{err}");
    }
}
