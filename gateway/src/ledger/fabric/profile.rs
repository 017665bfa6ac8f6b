//! The connection profile: everything the gateway needs to reach its organisation's Fabric
//! peers' Gateway service (one peer, or several to fail over between) as one default identity,
//! read from a JSON file.
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
/// One peer (`peer_endpoint`) or several peers of the organisation (`peers`, tried in order and
/// failed over between; each entry an endpoint, or an object that may override the TLS CA and
/// server name for that peer):
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
///
/// ```json
/// {
///   "peers": [
///     "https://peer0.org1.example.com:7051",
///     { "endpoint": "https://10.0.0.12:7051", "tls_server_name": "peer1.org1.example.com" }
///   ],
///   "tls_ca_certificate": "org1/tlsca/tlsca.org1.example.com-cert.pem",
///   ...
/// }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectionProfile {
    /// `https://host:port` (TLS, the normal case) or `http://host:port` (a peer with TLS off).
    /// Give this or `peers`.
    #[serde(default)]
    pub peer_endpoint: Option<String>,
    /// Several peers of the organisation, in order of preference: the gateway uses the first
    /// that answers and fails over to the next when one is unreachable. Give this or
    /// `peer_endpoint`.
    #[serde(default)]
    pub peers: Vec<PeerEntry>,
    /// PEM CA certificate(s) that issued the peers' TLS certificates. Required for `https`
    /// unless every peer entry names its own.
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

/// One entry of `peers`: an endpoint URL, or an object with per-peer TLS settings.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum PeerEntry {
    Endpoint(String),
    Detailed(PeerSettings),
}

/// A peer entry with its own TLS settings (each defaults to the profile's).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerSettings {
    pub endpoint: String,
    #[serde(default)]
    pub tls_ca_certificate: Option<PathBuf>,
    #[serde(default)]
    pub tls_server_name: Option<String>,
}

/// One peer to connect to, with the profile's defaults filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerConfig {
    /// The field it came from (`peer_endpoint`, `peers[1]`), for error messages.
    pub field: String,
    pub endpoint: String,
    pub tls_ca_certificate: Option<PathBuf>,
    pub tls_server_name: Option<String>,
}

impl PeerConfig {
    /// `host:port`, as logs and metrics name the peer.
    pub fn label(&self) -> String {
        let rest = self
            .endpoint
            .split_once("://")
            .map_or(self.endpoint.as_str(), |(_, r)| r);
        rest.trim_end_matches('/').to_owned()
    }

    /// `https` or `http`, from the endpoint.
    pub fn scheme(&self) -> Result<Scheme, (String, String)> {
        let field = || self.field.clone();
        let (scheme, rest) = self.endpoint.split_once("://").ok_or((
            field(),
            format!("{:?} is not a URL like https://host:port", self.endpoint),
        ))?;
        if rest.is_empty() || rest.starts_with(':') {
            return Err((field(), format!("{:?} has no host", self.endpoint)));
        }
        match scheme {
            "https" => Ok(Scheme::Https),
            "http" => Ok(Scheme::Http),
            other => Err((field(), format!("scheme {other:?} is not https or http"))),
        }
    }
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
            .map_err(|(field, message)| config_error(path, Some(&field), message))?;
        Ok(profile)
    }

    /// The peers to connect to, in order: `peer_endpoint`, or each `peers` entry with the
    /// profile's TLS CA and server name unless the entry gives its own.
    pub fn peer_configs(&self) -> Vec<PeerConfig> {
        let mut peers = Vec::new();
        if let Some(endpoint) = &self.peer_endpoint {
            peers.push(PeerConfig {
                field: "peer_endpoint".into(),
                endpoint: endpoint.clone(),
                tls_ca_certificate: self.tls_ca_certificate.clone(),
                tls_server_name: self.tls_server_name.clone(),
            });
        }
        for (i, entry) in self.peers.iter().enumerate() {
            let (endpoint, ca, name) = match entry {
                PeerEntry::Endpoint(e) => (e.clone(), None, None),
                PeerEntry::Detailed(d) => (
                    d.endpoint.clone(),
                    d.tls_ca_certificate.clone(),
                    d.tls_server_name.clone(),
                ),
            };
            peers.push(PeerConfig {
                field: format!("peers[{i}]"),
                endpoint,
                tls_ca_certificate: ca.or_else(|| self.tls_ca_certificate.clone()),
                tls_server_name: name.or_else(|| self.tls_server_name.clone()),
            });
        }
        peers
    }

    /// Checks the fields that need no file access; `(field, why)` on failure.
    pub fn validate(&self) -> Result<(), (String, String)> {
        match (&self.peer_endpoint, self.peers.is_empty()) {
            (None, true) => {
                return Err((
                    "peer_endpoint".into(),
                    "give peer_endpoint (one peer) or peers (several)".into(),
                ))
            }
            (Some(_), false) => {
                return Err((
                    "peers".into(),
                    "give peer_endpoint or peers, not both".into(),
                ))
            }
            _ => {}
        }
        let peers = self.peer_configs();
        for (i, peer) in peers.iter().enumerate() {
            if peer.scheme()? == Scheme::Https && peer.tls_ca_certificate.is_none() {
                return Err((
                    "tls_ca_certificate".into(),
                    format!("required for the https endpoint of {}", peer.field),
                ));
            }
            if peers[..i].iter().any(|p| p.label() == peer.label()) {
                return Err((
                    peer.field.clone(),
                    format!("{} is listed twice", peer.endpoint),
                ));
            }
        }
        if self.tls_client_certificate.is_some() != self.tls_client_key.is_some() {
            return Err((
                "tls_client_key".into(),
                "tls_client_certificate and tls_client_key go together".into(),
            ));
        }
        for (field, value) in [
            ("msp_id", &self.msp_id),
            ("channel", &self.channel),
            ("chaincode", &self.chaincode),
        ] {
            if value.trim().is_empty() {
                return Err((field.into(), "must not be empty".into()));
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
                return Err((field.into(), "must be greater than zero".into()));
            }
        }
        Ok(())
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
        assert_eq!(p.peer_configs()[0].scheme().unwrap(), Scheme::Https);
        assert_eq!(p.peer_configs()[0].label(), "localhost:7051");
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
            (
                MINIMAL.replace(r#""peer_endpoint":"https://localhost:7051","#, ""),
                "give peer_endpoint (one peer) or peers",
            ),
            (
                MINIMAL.replace(
                    r#""peer_endpoint""#,
                    r#""peers":["https://a:1"],"peer_endpoint""#,
                ),
                "not both",
            ),
            (
                MINIMAL.replace(
                    r#""peer_endpoint":"https://localhost:7051""#,
                    r#""peers":["https://a:1","ftp://b:2"]"#,
                ),
                "field peers[1]",
            ),
            (
                MINIMAL.replace(
                    r#""peer_endpoint":"https://localhost:7051""#,
                    r#""peers":["https://a:1","https://a:1/"]"#,
                ),
                "listed twice",
            ),
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
    fn several_peers_inherit_the_profile_tls_settings_unless_they_give_their_own() {
        let p = profile(&MINIMAL.replace(
            r#""peer_endpoint":"https://localhost:7051""#,
            r#""tls_server_name":"peer0.org1.example.com","peers":["https://127.0.0.1:7051",
               {"endpoint":"https://127.0.0.1:8051","tls_server_name":"peer1.org1.example.com","tls_ca_certificate":"other.pem"}]"#,
        ))
        .unwrap();
        let peers = p.peer_configs();
        assert_eq!(peers.len(), 2);
        assert_eq!(
            (peers[0].label(), peers[0].tls_server_name.as_deref()),
            ("127.0.0.1:7051".to_string(), Some("peer0.org1.example.com"))
        );
        assert_eq!(
            peers[0].tls_ca_certificate,
            Some(PathBuf::from("tls/ca.pem"))
        );
        assert_eq!(
            (peers[1].field.as_str(), peers[1].tls_server_name.as_deref()),
            ("peers[1]", Some("peer1.org1.example.com"))
        );
        assert_eq!(
            peers[1].tls_ca_certificate,
            Some(PathBuf::from("other.pem"))
        );
    }

    #[test]
    fn http_needs_no_tls_ca() {
        let p = profile(
            &MINIMAL
                .replace("https://", "http://")
                .replace(r#""tls_ca_certificate":"tls/ca.pem","#, ""),
        )
        .unwrap();
        assert_eq!(p.peer_configs()[0].scheme().unwrap(), Scheme::Http);
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
