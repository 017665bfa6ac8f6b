//! The node's block-signing key: created on first start, kept in the data directory.
//!
//! `node.key.pem` holds the private key (PKCS#8, ECDSA P-256, readable by the owner only) and
//! `node.pub.pem` the public key (SubjectPublicKeyInfo), which is all `tom verify` needs. An
//! auditor who keeps a copy of `node.pub.pem` elsewhere can pass it to
//! [`super::verify_with_public_key`], so that replacing both the key and every block signature
//! in the data directory is also detected.

use std::path::{Path, PathBuf};

use base64::Engine;
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_ASN1_SIGNING};

use crate::ledger::LedgerError;

pub const PRIVATE_KEY_FILE: &str = "node.key.pem";
pub const PUBLIC_KEY_FILE: &str = "node.pub.pem";

/// The DER prefix of a P-256 SubjectPublicKeyInfo, before the 65-byte uncompressed point:
/// SEQUENCE { SEQUENCE { id-ecPublicKey, prime256v1 }, BIT STRING (0 unused bits) }.
const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

pub struct NodeKey {
    key_pair: EcdsaKeyPair,
    rng: ring::rand::SystemRandom,
    public_key_pem: String,
}

fn internal(path: &Path, what: &str, e: impl std::fmt::Display) -> LedgerError {
    LedgerError::Internal(format!("node key {}: {what}: {e}", path.display()))
}

impl NodeKey {
    /// Load the node key from `data_dir`, creating it (and the public key file) on first start.
    pub fn load_or_create(data_dir: &Path) -> Result<NodeKey, LedgerError> {
        let rng = ring::rand::SystemRandom::new();
        let private_path = data_dir.join(PRIVATE_KEY_FILE);
        let pkcs8 = if private_path.exists() {
            let pem = std::fs::read_to_string(&private_path)
                .map_err(|e| internal(&private_path, "cannot read", e))?;
            pem_decode(&pem, "PRIVATE KEY")
                .map_err(|e| internal(&private_path, "not a PEM private key", e))?
        } else {
            let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng)
                .map_err(|e| internal(&private_path, "cannot generate", e))?;
            write_private(&private_path, &pem_encode("PRIVATE KEY", pkcs8.as_ref()))?;
            pkcs8.as_ref().to_vec()
        };
        let key_pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &pkcs8, &rng)
            .map_err(|e| internal(&private_path, "not a PKCS#8 ECDSA P-256 key", e))?;
        let public_key_pem = public_key_pem(key_pair.public_key().as_ref());
        Ok(NodeKey {
            key_pair,
            rng,
            public_key_pem,
        })
    }

    /// Write `node.pub.pem` if it is missing or differs. The file is derived from the private
    /// key, so a stale one must never make an intact log look tampered (verify reads it); call
    /// this only once the key is known to be the one that signed the log.
    pub fn write_public_key(&self, data_dir: &Path) -> Result<(), LedgerError> {
        let path = data_dir.join(PUBLIC_KEY_FILE);
        if std::fs::read_to_string(&path).ok().as_deref() != Some(self.public_key_pem.as_str()) {
            std::fs::write(&path, &self.public_key_pem)
                .map_err(|e| internal(&path, "cannot write", e))?;
        }
        Ok(())
    }

    /// ECDSA P-256 / SHA-256 over `message`, DER encoded.
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, LedgerError> {
        self.key_pair
            .sign(&self.rng, message)
            .map(|s| s.as_ref().to_vec())
            .map_err(|e| LedgerError::Internal(format!("node key: signing failed: {e}")))
    }

    pub fn public_key_pem(&self) -> &str {
        &self.public_key_pem
    }

    /// Whether `signature` over `message` was made by this key.
    pub fn signed(&self, message: &[u8], signature: &[u8]) -> bool {
        let public = ring::signature::UnparsedPublicKey::new(
            &ring::signature::ECDSA_P256_SHA256_ASN1,
            self.key_pair.public_key().as_ref(),
        );
        public.verify(message, signature).is_ok()
    }
}

#[cfg(unix)]
fn write_private(path: &PathBuf, pem: &str) -> Result<(), LedgerError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| internal(path, "cannot create", e))?;
    file.write_all(pem.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| internal(path, "cannot write", e))
}

#[cfg(not(unix))]
fn write_private(path: &PathBuf, pem: &str) -> Result<(), LedgerError> {
    std::fs::write(path, pem).map_err(|e| internal(path, "cannot write", e))
}

/// The SubjectPublicKeyInfo PEM of an uncompressed P-256 point.
pub fn public_key_pem(point: &[u8]) -> String {
    let mut der = P256_SPKI_PREFIX.to_vec();
    der.extend_from_slice(point);
    pem_encode("PUBLIC KEY", &der)
}

/// The uncompressed P-256 point in a SubjectPublicKeyInfo PEM.
pub fn public_key_point(pem: &str) -> Result<Vec<u8>, String> {
    let der = pem_decode(pem, "PUBLIC KEY")?;
    match der.strip_prefix(&P256_SPKI_PREFIX[..]) {
        Some(point) if point.len() == 65 && point[0] == 4 => Ok(point.to_vec()),
        _ => Err("not an uncompressed ECDSA P-256 public key".into()),
    }
}

fn pem_encode(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut pem = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        pem.push_str(&String::from_utf8_lossy(line));
        pem.push('\n');
    }
    pem.push_str(&format!("-----END {label}-----\n"));
    pem
}

fn pem_decode(pem: &str, label: &str) -> Result<Vec<u8>, String> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let body = pem
        .split_once(&begin)
        .and_then(|(_, rest)| rest.split_once(&end))
        .map(|(body, _)| body)
        .ok_or_else(|| format!("no {label} PEM block"))?;
    let b64: String = body.chars().filter(|c| !c.is_whitespace()).collect();
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|e| format!("{label} PEM is not base64: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_is_created_once_and_signatures_verify_with_the_public_file() {
        let dir = tempfile::tempdir().unwrap();
        let key = NodeKey::load_or_create(dir.path()).unwrap();
        key.write_public_key(dir.path()).unwrap();
        let again = NodeKey::load_or_create(dir.path()).unwrap();
        assert_eq!(key.public_key_pem(), again.public_key_pem());
        let point =
            public_key_point(&std::fs::read_to_string(dir.path().join(PUBLIC_KEY_FILE)).unwrap())
                .unwrap();
        let signature = key.sign(b"header").unwrap();
        let public = ring::signature::UnparsedPublicKey::new(
            &ring::signature::ECDSA_P256_SHA256_ASN1,
            &point,
        );
        assert!(public.verify(b"header", &signature).is_ok());
        assert!(public.verify(b"headex", &signature).is_err());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(PRIVATE_KEY_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(
                mode & 0o077,
                0,
                "the private key must not be readable by others"
            );
        }
    }
}
