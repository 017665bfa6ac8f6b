//! Configuration from the environment, named the way Fabric's chaincode-as-a-service servers are
//! named so that a `connection.json`/container set-up written for any CCaaS chaincode fits TOM's.
//!
//! | variable | meaning | default |
//! | --- | --- | --- |
//! | `CHAINCODE_ID` | the package id the peer knows the chaincode by (`label:sha256`); sent in REGISTER | required |
//! | `CHAINCODE_SERVER_ADDRESS` | `host:port` to listen on | required |
//! | `CHAINCODE_TLS_DISABLED` | `true` serves plain gRPC and ignores the TLS settings | `false` |
//! | `CHAINCODE_TLS_CERT` | server certificate: a PEM file path or the PEM itself | none (plain gRPC) |
//! | `CHAINCODE_TLS_KEY` | server private key (PKCS#8, SEC1 or RSA), file path or PEM | none |
//! | `CHAINCODE_CLIENT_CA_CERT` | CA for peers' client certificates; when given, client auth is required | none |
//! | `CHAINCODE_SHUTDOWN_GRACE_SECS` | how long SIGTERM waits for in-flight transactions | `2` |
//!
//! Every value is checked at start; an error names the variable, so a container that is
//! misconfigured stops at once with a message instead of failing the peer's first call.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use crate::error::ChaincodeError;

pub const CHAINCODE_ID: &str = "CHAINCODE_ID";
pub const CHAINCODE_SERVER_ADDRESS: &str = "CHAINCODE_SERVER_ADDRESS";
pub const CHAINCODE_TLS_DISABLED: &str = "CHAINCODE_TLS_DISABLED";
pub const CHAINCODE_TLS_CERT: &str = "CHAINCODE_TLS_CERT";
pub const CHAINCODE_TLS_KEY: &str = "CHAINCODE_TLS_KEY";
pub const CHAINCODE_CLIENT_CA_CERT: &str = "CHAINCODE_CLIENT_CA_CERT";
pub const CHAINCODE_SHUTDOWN_GRACE_SECS: &str = "CHAINCODE_SHUTDOWN_GRACE_SECS";

/// The default time SIGTERM waits for in-flight transactions before closing the streams.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(2);
const MAX_SHUTDOWN_GRACE_SECS: u64 = 30;

/// Everything the server needs to start.
#[derive(Clone)]
pub struct Config {
    /// The package id (`label:sha256`) registered with every peer.
    pub chaincode_id: String,
    /// Where to listen.
    pub address: SocketAddr,
    /// `None`: plain gRPC.
    pub tls: Option<TlsConfig>,
    /// How long a shutdown waits for in-flight transactions.
    pub shutdown_grace: Duration,
}

/// Server TLS material, PEM encoded.
#[derive(Clone)]
pub struct TlsConfig {
    pub cert_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
    /// When present, peers must present a client certificate issued by this CA.
    pub client_ca_pem: Option<Vec<u8>>,
}

impl std::fmt::Debug for TlsConfig {
    // The private key must never reach a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsConfig")
            .field("cert_pem", &format_args!("{} bytes", self.cert_pem.len()))
            .field("key_pem", &"<redacted>")
            .field("client_auth_required", &self.client_ca_pem.is_some())
            .finish()
    }
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("chaincode_id", &self.chaincode_id)
            .field("address", &self.address)
            .field("tls", &self.tls)
            .field("shutdown_grace", &self.shutdown_grace)
            .finish()
    }
}

impl Config {
    /// Read the configuration from the process environment.
    pub fn from_env() -> Result<Self, ChaincodeError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Read the configuration through `lookup` (the environment, or a map in tests).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ChaincodeError> {
        let get = |name: &str| {
            lookup(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };

        let chaincode_id = get(CHAINCODE_ID).ok_or_else(|| {
            ChaincodeError::config(
                CHAINCODE_ID,
                "not set (the chaincode package id, label:sha256)",
            )
        })?;
        check_package_id(&chaincode_id)?;

        let address_text = get(CHAINCODE_SERVER_ADDRESS).ok_or_else(|| {
            ChaincodeError::config(
                CHAINCODE_SERVER_ADDRESS,
                "not set (host:port to listen on, e.g. 0.0.0.0:9999)",
            )
        })?;
        let address = resolve(&address_text)?;

        let tls_disabled = match get(CHAINCODE_TLS_DISABLED)
            .as_deref()
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            None => None,
            Some("true") => Some(true),
            Some("false") => Some(false),
            Some(other) => {
                return Err(ChaincodeError::config(
                    CHAINCODE_TLS_DISABLED,
                    format!("must be true or false, got {other:?}"),
                ))
            }
        };

        let tls = if tls_disabled == Some(true) {
            None
        } else {
            let cert = get(CHAINCODE_TLS_CERT);
            let key = get(CHAINCODE_TLS_KEY);
            let client_ca = get(CHAINCODE_CLIENT_CA_CERT);
            match (cert, key) {
                (Some(cert), Some(key)) => {
                    let cert_pem = read_pem(CHAINCODE_TLS_CERT, &cert, "CERTIFICATE-----")?;
                    let key_pem = read_pem(CHAINCODE_TLS_KEY, &key, "PRIVATE KEY-----")?;
                    let client_ca_pem = client_ca
                        .map(|ca| read_pem(CHAINCODE_CLIENT_CA_CERT, &ca, "CERTIFICATE-----"))
                        .transpose()?;
                    Some(TlsConfig { cert_pem, key_pem, client_ca_pem })
                }
                (Some(_), None) => {
                    return Err(ChaincodeError::config(CHAINCODE_TLS_KEY, format!("not set, but {CHAINCODE_TLS_CERT} is")))
                }
                (None, Some(_)) => {
                    return Err(ChaincodeError::config(CHAINCODE_TLS_CERT, format!("not set, but {CHAINCODE_TLS_KEY} is")))
                }
                (None, None) if tls_disabled == Some(false) => {
                    return Err(ChaincodeError::config(
                        CHAINCODE_TLS_DISABLED,
                        format!("is false, but {CHAINCODE_TLS_CERT} and {CHAINCODE_TLS_KEY} are not set"),
                    ))
                }
                (None, None) if client_ca.is_some() => {
                    return Err(ChaincodeError::config(
                        CHAINCODE_CLIENT_CA_CERT,
                        format!("client authentication needs TLS: set {CHAINCODE_TLS_CERT} and {CHAINCODE_TLS_KEY}"),
                    ))
                }
                (None, None) => None,
            }
        };

        let shutdown_grace = match get(CHAINCODE_SHUTDOWN_GRACE_SECS) {
            None => DEFAULT_SHUTDOWN_GRACE,
            Some(text) => match text.parse::<u64>() {
                Ok(secs) if secs <= MAX_SHUTDOWN_GRACE_SECS => Duration::from_secs(secs),
                _ => {
                    return Err(ChaincodeError::config(
                        CHAINCODE_SHUTDOWN_GRACE_SECS,
                        format!(
                        "must be whole seconds from 0 to {MAX_SHUTDOWN_GRACE_SECS}, got {text:?}"
                    ),
                    ))
                }
            },
        };

        Ok(Config {
            chaincode_id,
            address,
            tls,
            shutdown_grace,
        })
    }
}

/// Fabric package ids are `<label>:<hex sha256 of the package file>`; the label starts with a
/// letter or digit and continues with letters, digits and `_ . + -`. A wrong id is the most
/// common CCaaS mistake (the peer then waits for a registration that never comes), so it is
/// refused here with the expected shape.
fn check_package_id(id: &str) -> Result<(), ChaincodeError> {
    let fail = |why: &str| {
        Err(ChaincodeError::config(
            CHAINCODE_ID,
            format!("{id:?} is not a package id (label:sha256): {why}"),
        ))
    };
    let Some((label, hash)) = id.rsplit_once(':') else {
        return fail("no ':' between label and hash");
    };
    let mut chars = label.chars();
    match chars.next() {
        None => return fail("empty label"),
        Some(c) if !c.is_ascii_alphanumeric() => {
            return fail("the label must start with a letter or digit")
        }
        Some(_) => {}
    }
    if !chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '+' | '-')) {
        return fail("the label may contain only letters, digits and _ . + -");
    }
    if hash.len() != 64 || !hash.chars().all(|c| c.is_ascii_hexdigit()) {
        return fail("the hash must be 64 hex digits");
    }
    Ok(())
}

fn resolve(text: &str) -> Result<SocketAddr, ChaincodeError> {
    if let Ok(address) = text.parse::<SocketAddr>() {
        return Ok(address);
    }
    let mut addresses = text.to_socket_addrs().map_err(|e| {
        ChaincodeError::config(
            CHAINCODE_SERVER_ADDRESS,
            format!("{text:?} is not host:port ({e})"),
        )
    })?;
    addresses.next().ok_or_else(|| {
        ChaincodeError::config(
            CHAINCODE_SERVER_ADDRESS,
            format!("{text:?} resolves to no address"),
        )
    })
}

/// A setting holds either the PEM itself or the path of a PEM file (Fabric's samples use paths).
fn read_pem(variable: &'static str, value: &str, marker: &str) -> Result<Vec<u8>, ChaincodeError> {
    let pem = if value.starts_with("-----BEGIN") {
        value.as_bytes().to_vec()
    } else {
        let path = PathBuf::from(value);
        std::fs::read(&path).map_err(|source| ChaincodeError::ReadFile {
            variable,
            path,
            source,
        })?
    };
    let text = String::from_utf8_lossy(&pem);
    if !text.contains("-----BEGIN") || !text.contains(marker) {
        return Err(ChaincodeError::config(
            variable,
            format!("{value:?} holds no PEM block ending in {marker:?}"),
        ));
    }
    Ok(pem)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    const ID: &str = "tom_1.0:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    const CERT: &str = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
    const KEY: &str = "-----BEGIN PRIVATE KEY-----\nMIIB\n-----END PRIVATE KEY-----\n";

    fn load(vars: &[(&str, &str)]) -> Result<Config, String> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|name| map.get(name).cloned()).map_err(|e| e.to_string())
    }

    /// `vars` must be refused with a message containing every fragment.
    #[track_caller]
    fn check_refused(vars: &[(&str, &str)], fragments: &[&str]) {
        let message = load(vars).expect_err("configuration should be refused");
        for fragment in fragments {
            assert!(
                message.contains(fragment),
                "{message:?} should contain {fragment:?}"
            );
        }
    }

    #[test]
    fn plain_grpc_needs_only_the_id_and_address() {
        let config = load(&[
            (CHAINCODE_ID, ID),
            (CHAINCODE_SERVER_ADDRESS, "127.0.0.1:9999"),
        ])
        .unwrap();
        assert_eq!(config.chaincode_id, ID);
        assert_eq!(config.address, "127.0.0.1:9999".parse().unwrap());
        assert!(config.tls.is_none());
        assert_eq!(config.shutdown_grace, DEFAULT_SHUTDOWN_GRACE);
    }

    #[test]
    fn tls_with_and_without_client_auth() {
        let base = [
            (CHAINCODE_ID, ID),
            (CHAINCODE_SERVER_ADDRESS, "0.0.0.0:9999"),
        ];
        let tls = load(
            &[
                &base[..],
                &[(CHAINCODE_TLS_CERT, CERT), (CHAINCODE_TLS_KEY, KEY)],
            ]
            .concat(),
        )
        .unwrap();
        assert!(tls.tls.as_ref().unwrap().client_ca_pem.is_none());
        let mutual = load(
            &[
                &base[..],
                &[
                    (CHAINCODE_TLS_CERT, CERT),
                    (CHAINCODE_TLS_KEY, KEY),
                    (CHAINCODE_CLIENT_CA_CERT, CERT),
                ],
            ]
            .concat(),
        )
        .unwrap();
        assert!(mutual.tls.as_ref().unwrap().client_ca_pem.is_some());
        assert!(
            !format!("{mutual:?}").contains("MIIB\n-----END PRIVATE"),
            "the key must not be printed"
        );
        let disabled = load(
            &[
                &base[..],
                &[
                    (CHAINCODE_TLS_DISABLED, "TRUE"),
                    (CHAINCODE_TLS_CERT, "/nonexistent"),
                    (CHAINCODE_TLS_KEY, "/x"),
                ],
            ]
            .concat(),
        )
        .unwrap();
        assert!(
            disabled.tls.is_none(),
            "CHAINCODE_TLS_DISABLED=true ignores the TLS files"
        );
    }

    #[test]
    fn pem_files_are_read_from_paths() {
        let dir = std::env::temp_dir().join(format!("tom-chaincode-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("cert.pem"), CERT).unwrap();
        std::fs::write(dir.join("key.pem"), KEY).unwrap();
        let config = load(&[
            (CHAINCODE_ID, ID),
            (CHAINCODE_SERVER_ADDRESS, "localhost:7052"),
            (CHAINCODE_TLS_CERT, dir.join("cert.pem").to_str().unwrap()),
            (CHAINCODE_TLS_KEY, dir.join("key.pem").to_str().unwrap()),
        ])
        .unwrap();
        assert_eq!(config.tls.unwrap().cert_pem, CERT.as_bytes());
        assert_eq!(config.address.port(), 7052);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn bad_settings_are_refused_naming_the_variable() {
        let addr = (CHAINCODE_SERVER_ADDRESS, "127.0.0.1:1");
        check_refused(&[addr], &["CHAINCODE_ID", "not set"]);
        check_refused(&[(CHAINCODE_ID, "tom"), addr], &["CHAINCODE_ID", "no ':'"]);
        check_refused(
            &[(CHAINCODE_ID, "tom:abc"), addr],
            &["CHAINCODE_ID", "64 hex digits"],
        );
        check_refused(
            &[(CHAINCODE_ID, &format!("-x:{}", "a".repeat(64))), addr],
            &["start with a letter"],
        );
        check_refused(
            &[(CHAINCODE_ID, &format!("a b:{}", "a".repeat(64))), addr],
            &["only letters"],
        );
        check_refused(
            &[(CHAINCODE_ID, ID)],
            &["CHAINCODE_SERVER_ADDRESS", "not set"],
        );
        check_refused(
            &[(CHAINCODE_ID, ID), (CHAINCODE_SERVER_ADDRESS, "no-port")],
            &["CHAINCODE_SERVER_ADDRESS", "host:port"],
        );
        check_refused(
            &[(CHAINCODE_ID, ID), addr, (CHAINCODE_TLS_DISABLED, "yes")],
            &["CHAINCODE_TLS_DISABLED", "true or false"],
        );
        check_refused(
            &[(CHAINCODE_ID, ID), addr, (CHAINCODE_TLS_DISABLED, "false")],
            &["CHAINCODE_TLS_CERT", "not set"],
        );
        check_refused(
            &[(CHAINCODE_ID, ID), addr, (CHAINCODE_TLS_CERT, CERT)],
            &["CHAINCODE_TLS_KEY", "not set"],
        );
        check_refused(
            &[(CHAINCODE_ID, ID), addr, (CHAINCODE_TLS_KEY, KEY)],
            &["CHAINCODE_TLS_CERT", "not set"],
        );
        check_refused(
            &[(CHAINCODE_ID, ID), addr, (CHAINCODE_CLIENT_CA_CERT, CERT)],
            &["CHAINCODE_CLIENT_CA_CERT", "needs TLS"],
        );
        check_refused(
            &[
                (CHAINCODE_ID, ID),
                addr,
                (CHAINCODE_TLS_CERT, KEY),
                (CHAINCODE_TLS_KEY, KEY),
            ],
            &["CHAINCODE_TLS_CERT", "no PEM block"],
        );
        check_refused(
            &[
                (CHAINCODE_ID, ID),
                addr,
                (CHAINCODE_TLS_CERT, "/nonexistent/cert.pem"),
                (CHAINCODE_TLS_KEY, KEY),
            ],
            &["CHAINCODE_TLS_CERT", "cannot read /nonexistent/cert.pem"],
        );
        check_refused(
            &[
                (CHAINCODE_ID, ID),
                addr,
                (CHAINCODE_SHUTDOWN_GRACE_SECS, "99"),
            ],
            &["CHAINCODE_SHUTDOWN_GRACE_SECS"],
        );
    }
}
