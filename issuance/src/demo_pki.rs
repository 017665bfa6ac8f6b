//! A demo PKI on disk: every organisation and identity of [`crate::spec`], laid out as
//! `<dir>/<org>/{msp_id, ca.pem, ca.key.pem, <name>.pem, <name>.key.pem}` (the layout of the
//! committed `fixtures/pki/`).
//!
//! [`DemoPki::issue`] makes a fresh one (new keys for every CA and identity: what
//! `tom demo install` does by default, and what `generate-fixtures` committed once);
//! [`DemoPki::load`] reads one back at run time. Nothing is embedded: which private keys a
//! gateway gets is decided by the directory its operator names.

use std::fs;
use std::path::{Path, PathBuf};

use crate::pki::{self, IssuedCa, PkiError};
use crate::spec::{self, CA_NOT_AFTER, CA_NOT_BEFORE};

/// Why a demo PKI could not be issued or loaded.
#[derive(Debug, thiserror::Error)]
pub enum DemoPkiError {
    /// Reading or writing a file of the PKI failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What the file system said.
        source: std::io::Error,
    },
    /// Issuing or checking a certificate failed.
    #[error("issuing {what}: {source}")]
    Pki {
        /// The organisation or identity (`org1/traffic-light-1`).
        what: String,
        /// The issuance error.
        source: PkiError,
    },
}

/// A demo organisation: its MSP id and CA (certificate and private key).
#[derive(Clone, Debug)]
pub struct DemoOrg {
    /// Directory name (`org1`, `org2`, `rogue`).
    pub name: String,
    /// Fabric MSP id (`Org1MSP`, ...).
    pub msp_id: String,
    /// The CA, to register the organisation and to issue further identities.
    pub ca: IssuedCa,
}

/// A demo identity: certificate and private key.
#[derive(Clone, Debug)]
pub struct DemoIdentity {
    /// Organisation name ([`DemoOrg::name`]).
    pub org: String,
    /// Identity name (the certificate's CN).
    pub name: String,
    /// The organisation's MSP id.
    pub msp_id: String,
    /// Certificate, PEM.
    pub cert_pem: String,
    /// Private key, PKCS#8 PEM.
    pub key_pkcs8_pem: String,
}

impl DemoIdentity {
    /// Signs `message` with this identity's key (DER ECDSA P-256 / SHA-256, low-S).
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, PkiError> {
        pki::sign_p256(&self.key_pkcs8_pem, message)
    }
}

/// Every organisation and identity of [`crate::spec`], with their keys.
#[derive(Clone, Debug)]
pub struct DemoPki {
    /// Where the files are.
    pub dir: PathBuf,
    orgs: Vec<DemoOrg>,
    identities: Vec<DemoIdentity>,
}

impl DemoPki {
    /// Issues every CA and identity of [`crate::spec`] with fresh keys and writes them under
    /// `dir` (created if missing; existing files of the same names are overwritten). Private
    /// keys are written with mode 0600 on Unix.
    pub fn issue(dir: &Path) -> Result<Self, DemoPkiError> {
        let mut orgs = Vec::new();
        let mut identities = Vec::new();
        for org in spec::ORGS {
            let org_dir = dir.join(org.name);
            fs::create_dir_all(&org_dir).map_err(io(&org_dir))?;
            let ca = pki::issue_ca(
                &format!("ca.{}", org.name),
                org.organization,
                CA_NOT_BEFORE,
                CA_NOT_AFTER,
            )
            .map_err(pki_error(org.name))?;
            write(&org_dir.join("ca.pem"), &ca.cert_pem, false)?;
            write(&org_dir.join("ca.key.pem"), &ca.key_pkcs8_pem, true)?;
            write(&org_dir.join("msp_id"), org.msp_id, false)?;
            for id in spec::IDENTITIES.iter().filter(|i| i.org == org.name) {
                let issued = pki::issue_identity(
                    &ca,
                    id.name,
                    Some(id.organizational_unit),
                    id.role,
                    id.not_before,
                    id.not_after,
                )
                .map_err(pki_error(&format!("{}/{}", org.name, id.name)))?;
                write(
                    &org_dir.join(format!("{}.pem", id.name)),
                    &issued.cert_pem,
                    false,
                )?;
                write(
                    &org_dir.join(format!("{}.key.pem", id.name)),
                    &issued.key_pkcs8_pem,
                    true,
                )?;
                identities.push(DemoIdentity {
                    org: org.name.to_owned(),
                    name: id.name.to_owned(),
                    msp_id: org.msp_id.to_owned(),
                    cert_pem: issued.cert_pem,
                    key_pkcs8_pem: issued.key_pkcs8_pem,
                });
            }
            orgs.push(DemoOrg {
                name: org.name.to_owned(),
                msp_id: org.msp_id.to_owned(),
                ca,
            });
        }
        Ok(DemoPki {
            dir: dir.to_path_buf(),
            orgs,
            identities,
        })
    }

    /// Reads every organisation and identity of [`crate::spec`] from `dir`.
    pub fn load(dir: &Path) -> Result<Self, DemoPkiError> {
        let mut orgs = Vec::new();
        let mut identities = Vec::new();
        for org in spec::ORGS {
            let org_dir = dir.join(org.name);
            let msp_id = read(&org_dir.join("msp_id"))?.trim().to_owned();
            for id in spec::IDENTITIES.iter().filter(|i| i.org == org.name) {
                identities.push(DemoIdentity {
                    org: org.name.to_owned(),
                    name: id.name.to_owned(),
                    msp_id: msp_id.clone(),
                    cert_pem: read(&org_dir.join(format!("{}.pem", id.name)))?,
                    key_pkcs8_pem: read(&org_dir.join(format!("{}.key.pem", id.name)))?,
                });
            }
            orgs.push(DemoOrg {
                name: org.name.to_owned(),
                msp_id,
                ca: IssuedCa {
                    cert_pem: read(&org_dir.join("ca.pem"))?,
                    key_pkcs8_pem: read(&org_dir.join("ca.key.pem"))?,
                },
            });
        }
        Ok(DemoPki {
            dir: dir.to_path_buf(),
            orgs,
            identities,
        })
    }

    /// All organisations, in [`spec::ORGS`] order.
    pub fn orgs(&self) -> &[DemoOrg] {
        &self.orgs
    }

    /// All identities, in [`spec::IDENTITIES`] order.
    pub fn identities(&self) -> &[DemoIdentity] {
        &self.identities
    }

    /// The organisation `name`, if the spec has it.
    pub fn org(&self, name: &str) -> Option<&DemoOrg> {
        self.orgs.iter().find(|o| o.name == name)
    }

    /// The identity `org/name`, if the spec has it.
    pub fn identity(&self, org: &str, name: &str) -> Option<&DemoIdentity> {
        self.identities
            .iter()
            .find(|i| i.org == org && i.name == name)
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> DemoPkiError + '_ {
    move |source| DemoPkiError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn pki_error(what: &str) -> impl FnOnce(PkiError) -> DemoPkiError + '_ {
    move |source| DemoPkiError::Pki {
        what: what.to_owned(),
        source,
    }
}

fn read(path: &Path) -> Result<String, DemoPkiError> {
    fs::read_to_string(path).map_err(io(path))
}

/// Writes `contents` to `path`; a private key gets mode 0600 on Unix.
fn write(path: &Path, contents: &str, private: bool) -> Result<(), DemoPkiError> {
    use std::io::Write;
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = private;
    let mut file = options.open(path).map_err(io(path))?;
    file.write_all(contents.as_bytes()).map_err(io(path))
}

#[cfg(test)]
mod tests {
    // Test code: a failing unwrap is a failing test.
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn issued_pki_loads_back_and_is_fresh_each_time() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        let issued = DemoPki::issue(a.path()).unwrap();
        let loaded = DemoPki::load(a.path()).unwrap();
        assert_eq!(loaded.orgs().len(), spec::ORGS.len());
        assert_eq!(loaded.identities().len(), spec::IDENTITIES.len());
        let light = loaded.identity("org1", "traffic-light-1").unwrap();
        assert_eq!(light.msp_id, "Org1MSP");
        assert_eq!(
            light.key_pkcs8_pem,
            issued
                .identity("org1", "traffic-light-1")
                .unwrap()
                .key_pkcs8_pem
        );
        assert!(light.sign(b"reading").is_ok());
        // A second issuance makes new keys: nothing is shared between two demo installs.
        let other = DemoPki::issue(b.path()).unwrap();
        assert_ne!(
            other.org("org1").unwrap().ca.key_pkcs8_pem,
            loaded.org("org1").unwrap().ca.key_pkcs8_pem
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(a.path().join("org1/ca.key.pem"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0, "a CA key is readable by others");
        }
    }

    #[test]
    fn load_names_the_missing_file() {
        let dir = tempfile::tempdir().unwrap();
        let err = DemoPki::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("org1/msp_id"), "{err}");
    }
}
