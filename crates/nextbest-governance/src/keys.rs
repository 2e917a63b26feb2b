//! Public keys and signature checks. A person's key pair is two small
//! TOML files (`nextbest keygen NAME`); the public half, [`PublicKey`],
//! goes into `governance.toml`. Signing stays with the command-line tool:
//! reading a repository only ever verifies.

use ed25519_dalek::{Signature, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};

/// The only algorithm there is, named in the files so that another can be
/// added without guessing.
pub const ALGORITHM: &str = "ed25519";

/// A person's public key, as in `NAME.pub` and `governance.toml`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublicKey {
    /// Who the key belongs to.
    pub name: String,
    /// `ed25519`.
    #[serde(default = "default_algorithm")]
    pub algorithm: String,
    /// The 32-byte public key, hex.
    pub public_key: String,
}

fn default_algorithm() -> String {
    ALGORITHM.to_string()
}

impl PublicKey {
    /// Check the algorithm and that the key is a valid ed25519 point.
    pub fn check(&self) -> Result<(), String> {
        if self.algorithm != ALGORITHM {
            return Err(format!("unknown algorithm `{}`", self.algorithm));
        }
        verifying_key(&self.public_key).map(|_| ())
    }
}

/// Whether `signature` (hex) is the signature of `message` by the public
/// key `public_hex`.
pub fn verify(public_hex: &str, message: &[u8], signature: &str) -> bool {
    let Ok(key) = verifying_key(public_hex) else {
        return false;
    };
    let Some(bytes) = hex::decode(signature)
        .ok()
        .and_then(|b| <[u8; 64]>::try_from(b).ok())
    else {
        return false;
    };
    key.verify(message, &Signature::from_bytes(&bytes)).is_ok()
}

fn verifying_key(public_hex: &str) -> Result<VerifyingKey, String> {
    let bytes = decode_32(public_hex).ok_or("public_key is not 64 hex digits")?;
    VerifyingKey::from_bytes(&bytes).map_err(|_| "public_key is not an ed25519 public key".into())
}

/// 32 bytes from 64 hex digits (surrounding space ignored).
pub fn decode_32(s: &str) -> Option<[u8; 32]> {
    hex::decode(s.trim()).ok()?.try_into().ok()
}
