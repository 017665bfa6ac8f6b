//! The connection profile: everything the gateway needs to reach one Fabric peer's Gateway
//! service as one default identity, read from a JSON file.
//!
//! Paths in the file may be relative; they are resolved against the profile's own directory, so
//! a profile can sit beside the crypto material it names. Loading reads every file it names and
//! checks it, so a wrong path or a key of the wrong kind fails at start with the field and the
//! file named, never at the first transaction.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::ledger::{LedgerError, SigningIdentity};

/// How to reach a Fabric peer's Gateway service (one channel, one chaincode).
///
/// ```json
/// {
///   "peer_endpoint": "https://peer0.org1.example.com:7051",
///   "tls_ca_certificate": "org1/peer0/tls/ca.crt",
///   "tls_server_name": "peer0.org1.example.com",
///   "msp_id": "Org1MSP",
///   "certificate": "org1/users/gateway/msp/signcerts/cert.pem",
///   "private_key": "org1/users/gateway/msp/keystore/key.pem",
///   "channel": "tom",
///   "chaincode": "tom"
/// }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectionProfile {
    /// `https://host:port` (TLS, the normal case) or `http://host:port` (a peer with TLS off).
    pub peer_endpoint: String,
    /// PEM CA certificate(s) that issued the peer's TLS certificate. Required for `https`.
    #[serde(default)]
    pub tls_ca_certificate: Option<PathBuf>,
    /// The name to expect in the peer's TLS certificate when it differs from the endpoint's host
    /// (e.g. connecting to `localhost:7051` for `peer0.org1.example.com`). Default: the host.
    #[serde(default)]
    pub tls_server_name: Option<String>,
    /// Client certificate (PEM) for peers that require mutual TLS. Default: none.
    #[serde(default)]
    pub tls_client_certificate: Option<PathBuf>,
    /// Client key (PEM) matching `tls_client_certificate`.
    #[serde(default)]
    pub tls_client_key: Option<PathBuf>,
    /// MSP id of the default identity (`Org1MSP`).
    pub msp_id: String,
    /// The default identity's X.509 certificate (PEM): used to sign the chaincode-event stream
    /// request and by callers that have no identity of their own.
    pub certificate: PathBuf,
    /// The default identity's private key (PKCS#8 PEM, as Fabric CA and cryptogen write it).
    pub private_key: PathBuf,
    /// Channel name.
    pub channel: String,
    /// Chaincode name as deployed (the chaincode definition's name).
    pub chaincode: String,
    /// Call deadlines. Default: see [`Timeouts`].
    #[serde(default)]
    pub timeouts: Timeouts,
    /// The directory relative paths are resolved against (the profile file's directory).
    #[serde(skip)]
    pub base_dir: PathBuf,
}

/// Deadlines for each Gateway call, in milliseconds. The defaults are the official Fabric
/// Gateway clients' recommended values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Timeouts {
    /// Establishing the gRPC connection. Default 5 000.
    pub connect_ms: u64,
    /// `Evaluate`. Default 5 000.
    pub evaluate_ms: u64,
    /// `Endorse` (collecting every organisation's endorsement). Default 15 000.
    pub endorse_ms: u64,
    /// `Submit` (hand-over to the ordering service). Default 5 000.
    pub submit_ms: u64,
    /// `CommitStatus` (waiting for the block that carries the transaction). Default 60 000.
    pub commit_status_ms: u64,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect_ms: 5_000,
            evaluate_ms: 5_000,
            endorse_ms: 15_000,
            submit_ms: 5_000,
            commit_status_ms: 60_000,
        }
    }
}

impl Timeouts {
    pub fn connect(&self) -> Duration {
        Duration::from_millis(self.connect_ms)
    }
    pub fn evaluate(&self) -> Duration {
        Duration::from_millis(self.evaluate_ms)
    }
    pub fn endorse(&self) -> Duration {
        Duration::from_millis(self.endorse_ms)
    }
    pub fn submit(&self) -> Duration {
        Duration::from_millis(self.submit_ms)
    }
    pub fn commit_status(&self) -> Duration {
        Duration::from_millis(self.commit_status_ms)
    }
}

/// Whether the endpoint is reached over TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Https,
    Http,
}

impl ConnectionProfile {
    /// Reads and checks a JSON profile. Errors name the file and the field.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, LedgerError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| {
            config_error(
                path,
                None,
                format!("cannot read the connection profile: {e}"),
            )
        })?;
        let mut profile: ConnectionProfile = serde_json::from_str(&text).map_err(|e| {
            config_error(path, None, format!("not a valid connection profile: {e}"))
        })?;
        profile.base_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        profile
            .validate()
            .map_err(|(field, message)| config_error(path, Some(field), message))?;
        Ok(profile)
    }

    /// Checks the fields that need no file access; `(field, why)` on failure.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        self.scheme()?;
        if self.scheme()? == Scheme::Https && self.tls_ca_certificate.is_none() {
            return Err((
                "tls_ca_certificate",
                "required for an https peer_endpoint".into(),
            ));
        }
        if self.tls_client_certificate.is_some() != self.tls_client_key.is_some() {
            return Err((
                "tls_client_key",
                "tls_client_certificate and tls_client_key go together".into(),
            ));
        }
        for (field, value) in [
            ("msp_id", &self.msp_id),
            ("channel", &self.channel),
            ("chaincode", &self.chaincode),
        ] {
            if value.trim().is_empty() {
                return Err((field, "must not be empty".into()));
            }
        }
        let t = &self.timeouts;
        for (field, ms) in [
            ("timeouts.connect_ms", t.connect_ms),
            ("timeouts.evaluate_ms", t.evaluate_ms),
            ("timeouts.endorse_ms", t.endorse_ms),
            ("timeouts.submit_ms", t.submit_ms),
            ("timeouts.commit_status_ms", t.commit_status_ms),
        ] {
            if ms == 0 {
                return Err((field, "must be greater than zero".into()));
            }
        }
        Ok(())
    }

    /// `https` or `http`, from `peer_endpoint`.
    pub fn scheme(&self) -> Result<Scheme, (&'static str, String)> {
        let (scheme, rest) = self.peer_endpoint.split_once("://").ok_or((
            "peer_endpoint",
            format!(
                "{:?} is not a URL like https://host:port",
                self.peer_endpoint
            ),
        ))?;
        if rest.is_empty() || rest.starts_with(':') {
            return Err((
                "peer_endpoint",
                format!("{:?} has no host", self.peer_endpoint),
            ));
        }
        match scheme {
            "https" => Ok(Scheme::Https),
            "http" => Ok(Scheme::Http),
            other => Err((
                "peer_endpoint",
                format!("scheme {other:?} is not https or http"),
            )),
        }
    }

    /// `path` resolved against the profile's directory.
    pub fn resolve(&self, path: &Path) -> PathBuf {
        if path.is_absolute() {
            path.to_path_buf()
        } else {
            self.base_dir.join(path)
        }
    }

    /// Reads a file the profile names; the error names the field and the file.
    pub fn read(&self, field: &'static str, path: &Path) -> Result<String, LedgerError> {
        let resolved = self.resolve(path);
        std::fs::read_to_string(&resolved).map_err(|e| {
            LedgerError::Internal(format!(
                "connection profile field {field}: cannot read {}: {e}",
                resolved.display()
            ))
        })
    }

    /// The default identity (certificate and key files), checked.
    pub fn identity(&self) -> Result<SigningIdentity, LedgerError> {
        let certificate = self.read("certificate", &self.certificate)?;
        if !certificate.contains("-----BEGIN CERTIFICATE-----") {
            return Err(LedgerError::Internal(format!(
                "connection profile field certificate: {} is not a PEM certificate",
                self.resolve(&self.certificate).display()
            )));
        }
        let key = self.read("private_key", &self.private_key)?;
        SigningIdentity::from_pem(&self.msp_id, &certificate, &key).map_err(|e| {
            LedgerError::Internal(format!(
                "connection profile field private_key: {}: {e}",
                self.resolve(&self.private_key).display()
            ))
        })
    }
}

fn config_error(path: &Path, field: Option<&str>, message: String) -> LedgerError {
    match field {
        Some(field) => LedgerError::Internal(format!(
            "connection profile {}: field {field}: {message}",
            path.display()
        )),
        None => LedgerError::Internal(format!("connection profile {}: {message}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(json: &str) -> Result<ConnectionProfile, String> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("profile.json");
        std::fs::write(&path, json).unwrap();
        ConnectionProfile::load(&path).map_err(|e| e.to_string())
    }

    const MINIMAL: &str = r#"{"peer_endpoint":"https://localhost:7051","tls_ca_certificate":"tls/ca.pem","msp_id":"Org1MSP",
        "certificate":"cert.pem","private_key":"key.pem","channel":"tom","chaincode":"tom"}"#;

    #[test]
    fn minimal_profile_gets_documented_defaults() {
        let p = profile(MINIMAL).unwrap();
        assert_eq!(p.timeouts, Timeouts::default());
        assert_eq!(p.timeouts.endorse(), Duration::from_secs(15));
        assert_eq!(p.scheme().unwrap(), Scheme::Https);
        assert!(p.resolve(Path::new("tls/ca.pem")).ends_with("tls/ca.pem"));
        assert_eq!(
            p.resolve(Path::new("/abs/ca.pem")),
            PathBuf::from("/abs/ca.pem")
        );
    }

    #[test]
    fn errors_name_the_field_and_the_file() {
        let cases = [
            (
                MINIMAL.replace("https://localhost:7051", "localhost:7051"),
                "field peer_endpoint",
            ),
            (
                MINIMAL.replace("https://", "grpcs://"),
                "field peer_endpoint",
            ),
            (
                MINIMAL.replace(r#""tls_ca_certificate":"tls/ca.pem","#, ""),
                "field tls_ca_certificate",
            ),
            (
                MINIMAL.replace(r#""channel":"tom""#, r#""channel":"""#),
                "field channel",
            ),
            (
                MINIMAL.replace(
                    r#""chaincode":"tom""#,
                    r#""chaincode":"tom","timeouts":{"submit_ms":0}"#,
                ),
                "field timeouts.submit_ms",
            ),
            (
                MINIMAL.replace(r#""msp_id""#, r#""mspid""#),
                "unknown field `mspid`",
            ),
            ("{".to_string(), "not a valid connection profile"),
        ];
        for (json, expected) in cases {
            let error = profile(&json).unwrap_err();
            assert!(
                error.contains(expected),
                "{error:?} should mention {expected:?}"
            );
            assert!(
                error.contains("profile.json"),
                "{error:?} should name the file"
            );
        }
    }

    #[test]
    fn http_needs_no_tls_ca() {
        let p = profile(
            &MINIMAL
                .replace("https://", "http://")
                .replace(r#""tls_ca_certificate":"tls/ca.pem","#, ""),
        )
        .unwrap();
        assert_eq!(p.scheme().unwrap(), Scheme::Http);
    }

    #[test]
    fn identity_reads_and_checks_the_key_files() {
        let dir = tempfile::tempdir().unwrap();
        let user = tom_fixtures::identity("org1", "orchestrator");
        std::fs::write(dir.path().join("cert.pem"), user.cert_pem).unwrap();
        std::fs::write(dir.path().join("key.pem"), user.key_pkcs8_pem).unwrap();
        std::fs::write(dir.path().join("bad.pem"), "not a key").unwrap();
        let path = dir.path().join("profile.json");
        std::fs::write(&path, MINIMAL).unwrap();
        let p = ConnectionProfile::load(&path).unwrap();
        assert_eq!(p.identity().unwrap().certificate_pem, user.cert_pem);

        let bad = ConnectionProfile {
            private_key: "bad.pem".into(),
            ..p.clone()
        };
        assert!(bad
            .identity()
            .unwrap_err()
            .to_string()
            .contains("field private_key"));
        let missing = ConnectionProfile {
            certificate: "nope.pem".into(),
            ..p
        };
        let error = missing.identity().unwrap_err().to_string();
        assert!(
            error.contains("field certificate") && error.contains("nope.pem"),
            "{error}"
        );
    }
}
