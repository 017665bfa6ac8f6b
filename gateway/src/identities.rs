//! The ledger identities the gateway holds for its callers, and the API tokens that select them.
//!
//! Orchestrators, auditors and devices do not send certificates over HTTP: each authenticates
//! with a bearer token, and the token maps to an identity (X.509 certificate + P-256 key) kept in
//! the data directory. The gateway signs that caller's transactions with that identity, so the
//! contract sees the caller as creator and enforces roles and non-repudiation exactly as it
//! would on a Fabric network.
//!
//! Layout of `<data>/identities/`:
//!
//! ```text
//! <name>/cert.pem      the identity's certificate
//! <name>/key.pem       its PKCS#8 P-256 private key (mode 0600)
//! <name>/msp_id        its organisation's MSP id
//! tokens.json          {"tokens": [{"identity": <name>, "sha256": <hex of the token>,
//!                                    "not_after": <unix seconds, optional>}]}
//! ```
//!
//! Changes take effect in a running server without a restart: `authenticate` re-reads the
//! directory when its fingerprint (the modification times and sizes of the directory and
//! `tokens.json`) changed, checked on every unknown token (two `stat`s, a reload only when
//! something changed, so a flood of bad tokens costs no reloads) and at most once a second for
//! known ones (so a revocation or an expired rotation overlap bites within a second). Why not a
//! file watcher: it needs a platform notification backend and misses changes on network file
//! systems; why not an admin endpoint: it would need its own credential, and the CLI that
//! changes the files already runs where they are. A reload that fails (a half-written file)
//! keeps the previous identities and retries at the next check.
//!
//! Tokens are stored only as SHA-256 digests: a leaked data directory does not leak tokens (it
//! leaks keys, which is why key files are 0600). This module never talks to the ledger; the
//! development bootstrap's organisation registration is done by the caller (see
//! [`crate::app::bootstrap`]).

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tom_contract::identity::Certificate;
use tom_contract::model::Role;

use crate::clock::Clock;
use crate::ledger::SigningIdentity;

/// Why an identity could not be loaded, added or authenticated.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("identity {name}: {detail}")]
    Invalid { name: String, detail: String },
    #[error("identity name {0:?} must be 1 to 64 characters of letters, digits, '-', '_' and '.'")]
    BadName(String),
    #[error("identity {0} exists already")]
    Exists(String),
    #[error("no identity named {0}")]
    Unknown(String),
    #[error("{path}: malformed token file: {detail}")]
    TokenFile { path: PathBuf, detail: String },
    #[error("certificate generation failed: {0}")]
    Pki(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> IdentityError + '_ {
    move |source| IdentityError::Io {
        path: path.to_owned(),
        source,
    }
}

/// One identity the gateway can act as.
#[derive(Debug, Clone)]
pub struct Identity {
    pub name: String,
    pub signing: SigningIdentity,
    /// The `tom.role` its certificate carries (the contract decides what the role allows).
    pub role: Option<Role>,
    /// `<msp_id>/<common name>`: how the ledger's records name this agent.
    pub agent_id: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenFile {
    tokens: Vec<TokenEntry>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenEntry {
    identity: String,
    /// Hex SHA-256 of the token text.
    sha256: String,
    /// Unix seconds after which the token is refused (the overlap of a rotation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    not_after: Option<u64>,
}

/// What a running server compares to notice changes: (modified, length) of the directory and
/// of `tokens.json`.
type Fingerprint = [Option<(std::time::SystemTime, u64)>; 2];

#[derive(Debug, Default)]
struct Live {
    fingerprint: Fingerprint,
    checked: Option<std::time::Instant>,
    /// The store as last reloaded; `None` while the one opened is current.
    current: Option<Arc<IdentityStore>>,
}

/// The store's clock (token expiry, development certificate validity); the system clock unless
/// [`IdentityStore::open_with_clock`] says otherwise.
#[derive(Debug, Clone)]
struct StoreClock(Arc<dyn Clock>);

impl Default for StoreClock {
    fn default() -> Self {
        StoreClock(crate::clock::system_clock())
    }
}

/// The identities and token digests of one data directory.
///
/// Adding identities or tokens (`tom identity add|issue|rotate|revoke`, `tom demo install`)
/// writes the files; a running server picks them up by itself (see the module docs).
#[derive(Debug, Default)]
pub struct IdentityStore {
    dir: PathBuf,
    identities: BTreeMap<String, Arc<Identity>>,
    /// Token digest → (identity name, refused after these unix seconds).
    tokens: BTreeMap<String, (String, Option<u64>)>,
    live: std::sync::Mutex<Live>,
    clock: StoreClock,
}

/// Hex SHA-256 of a token, as stored in `tokens.json`.
pub fn token_digest(token: &str) -> String {
    hex::encode(ring::digest::digest(
        &ring::digest::SHA256,
        token.as_bytes(),
    ))
}

/// A fresh random API token (`tom_` + 64 hex digits, 256 bits).
pub fn new_token() -> Result<String, IdentityError> {
    let mut bytes = [0u8; 32];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
        .map_err(|_| IdentityError::Pki("the system random number generator failed".into()))?;
    Ok(format!("tom_{}", hex::encode(bytes)))
}

fn check_name(name: &str) -> Result<(), IdentityError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !name.starts_with('.');
    if ok {
        Ok(())
    } else {
        Err(IdentityError::BadName(name.to_owned()))
    }
}

/// Write `contents` to `path` via a temporary file and a rename, so a crash never leaves a
/// half-written file; `private` makes it readable by the owner only.
fn write_atomically(path: &Path, contents: &[u8], private: bool) -> Result<(), IdentityError> {
    let tmp = path.with_extension("tmp");
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = private;
    let mut file = options.open(&tmp).map_err(io(&tmp))?;
    file.write_all(contents).map_err(io(&tmp))?;
    file.sync_all().map_err(io(&tmp))?;
    fs::rename(&tmp, path).map_err(io(path))
}

impl IdentityStore {
    /// The store of `<data_dir>/identities` (created if missing).
    pub fn open(data_dir: &Path) -> Result<IdentityStore, IdentityError> {
        Self::open_with_clock(data_dir, crate::clock::system_clock())
    }

    /// [`IdentityStore::open`], telling token expiry and development certificate validity by
    /// `clock`.
    pub fn open_with_clock(
        data_dir: &Path,
        clock: Arc<dyn Clock>,
    ) -> Result<IdentityStore, IdentityError> {
        let dir = data_dir.join("identities");
        fs::create_dir_all(&dir).map_err(io(&dir))?;
        let mut store = IdentityStore {
            dir: dir.clone(),
            clock: StoreClock(clock),
            ..Default::default()
        };
        for entry in fs::read_dir(&dir).map_err(io(&dir))? {
            let entry = entry.map_err(io(&dir))?;
            if !entry.file_type().map_err(io(&entry.path()))?.is_dir() {
                continue;
            }
            let name = entry.file_name().to_string_lossy().into_owned();
            if check_name(&name).is_err() {
                tracing::warn!(dir = %entry.path().display(), "ignoring a directory that is not a valid identity name");
                continue;
            }
            let read = |file: &str| {
                let path = entry.path().join(file);
                fs::read_to_string(&path).map_err(io(&path))
            };
            if !entry.path().join("msp_id").exists() {
                // `add` writes msp_id last: this one is still being written.
                continue;
            }
            let identity = load(
                &name,
                read("msp_id")?.trim(),
                &read("cert.pem")?,
                &read("key.pem")?,
            )?;
            store.identities.insert(name, Arc::new(identity));
        }
        let path = store.token_path();
        if path.exists() {
            let text = fs::read(&path).map_err(io(&path))?;
            let file: TokenFile =
                serde_json::from_slice(&text).map_err(|e| IdentityError::TokenFile {
                    path: path.clone(),
                    detail: e.to_string(),
                })?;
            for entry in file.tokens {
                if !store.identities.contains_key(&entry.identity) {
                    return Err(IdentityError::TokenFile {
                        path,
                        detail: format!(
                            "a token names identity {} that is not in {}",
                            entry.identity,
                            dir.display()
                        ),
                    });
                }
                store
                    .tokens
                    .insert(entry.sha256, (entry.identity, entry.not_after));
            }
        }
        store.live = std::sync::Mutex::new(Live {
            fingerprint: fingerprint(&dir),
            ..Live::default()
        });
        Ok(store)
    }

    fn token_path(&self) -> PathBuf {
        self.dir.join("tokens.json")
    }

    pub fn is_empty(&self) -> bool {
        self.identities.is_empty()
    }

    /// Now in Unix seconds by the store's clock (0 before 1970).
    fn unix_now(&self) -> u64 {
        u64::try_from(self.clock.0.now().seconds).unwrap_or(0)
    }

    pub fn get(&self, name: &str) -> Option<Arc<Identity>> {
        self.identities.get(name).cloned()
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.identities.keys().map(String::as_str)
    }

    /// The identity a bearer token selects in this snapshot (not expired).
    fn lookup(&self, token: &str) -> Option<Arc<Identity>> {
        self.tokens
            .get(&token_digest(token))
            .filter(|(_, not_after)| not_after.is_none_or(|t| self.unix_now() <= t))
            .and_then(|(name, _)| self.get(name))
    }

    /// The identity a bearer token selects, as the files are now (see the module docs).
    pub fn authenticate(&self, token: &str) -> Option<Arc<Identity>> {
        let mut live = self
            .live
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let found = match &live.current {
            Some(store) => store.lookup(token),
            None => self.lookup(token),
        };
        let due = found.is_none()
            || live
                .checked
                .is_none_or(|at| at.elapsed() >= std::time::Duration::from_secs(1));
        if !due {
            return found;
        }
        live.checked = Some(std::time::Instant::now());
        let now = fingerprint(&self.dir);
        if now == live.fingerprint {
            return found;
        }
        let Some(data_dir) = self.dir.parent() else {
            return found;
        };
        match IdentityStore::open_with_clock(data_dir, self.clock.0.clone()) {
            Ok(store) => {
                tracing::info!(dir = %self.dir.display(), identities = store.identities.len(), tokens = store.tokens.len(), "identities reloaded");
                live.fingerprint = now;
                let store = Arc::new(store);
                let found = store.lookup(token);
                live.current = Some(store);
                found
            }
            Err(e) => {
                tracing::warn!(error = %e, "identities changed but cannot be reloaded yet; keeping the previous ones");
                found
            }
        }
    }

    /// Revoke tokens: the token with this text, or every token of identity `name`. Returns how
    /// many were revoked.
    pub fn revoke(
        &mut self,
        token: Option<&str>,
        name: Option<&str>,
    ) -> Result<usize, IdentityError> {
        let digest = token.map(token_digest);
        let before = self.tokens.len();
        self.tokens.retain(|d, (identity, _)| {
            !(digest.as_deref() == Some(d.as_str()) || name == Some(identity.as_str()))
        });
        let revoked = before - self.tokens.len();
        self.write_tokens()?;
        Ok(revoked)
    }

    /// Rotation: every current token of `name` stays valid for `overlap_secs` more, then is
    /// refused. Returns how many were given an end.
    pub fn expire_tokens_of(
        &mut self,
        name: &str,
        overlap_secs: u64,
    ) -> Result<usize, IdentityError> {
        let end = self.unix_now() + overlap_secs;
        let mut n = 0;
        for (identity, not_after) in self.tokens.values_mut() {
            if identity == name && not_after.is_none_or(|t| t > end) {
                *not_after = Some(end);
                n += 1;
            }
        }
        self.write_tokens()?;
        Ok(n)
    }

    /// Add an identity: checks that the key belongs to the certificate, then writes its files.
    pub fn add(
        &mut self,
        name: &str,
        msp_id: &str,
        cert_pem: &str,
        key_pem: &str,
    ) -> Result<Arc<Identity>, IdentityError> {
        check_name(name)?;
        if self.identities.contains_key(name) {
            return Err(IdentityError::Exists(name.to_owned()));
        }
        let identity = Arc::new(load(name, msp_id, cert_pem, key_pem)?);
        let dir = self.dir.join(name);
        fs::create_dir_all(&dir).map_err(io(&dir))?;
        write_atomically(&dir.join("cert.pem"), cert_pem.as_bytes(), false)?;
        write_atomically(&dir.join("key.pem"), key_pem.as_bytes(), true)?;
        // msp_id last: `open` needs all three, so a crash before this leaves no loadable half-identity.
        write_atomically(&dir.join("msp_id"), format!("{msp_id}\n").as_bytes(), false)?;
        self.identities.insert(name.to_owned(), identity.clone());
        Ok(identity)
    }

    /// Let `token` act as identity `name`; only its digest is written.
    pub fn add_token(&mut self, name: &str, token: &str) -> Result<(), IdentityError> {
        if !self.identities.contains_key(name) {
            return Err(IdentityError::Unknown(name.to_owned()));
        }
        if token.len() < 16 {
            return Err(IdentityError::Invalid {
                name: name.to_owned(),
                detail: "an API token must be at least 16 characters".into(),
            });
        }
        self.tokens
            .insert(token_digest(token), (name.to_owned(), None));
        self.write_tokens()
    }

    fn write_tokens(&self) -> Result<(), IdentityError> {
        let file = TokenFile {
            tokens: self
                .tokens
                .iter()
                .map(|(sha256, (identity, not_after))| TokenEntry {
                    identity: identity.clone(),
                    sha256: sha256.clone(),
                    not_after: *not_after,
                })
                .collect(),
        };
        let json = serde_json::to_vec_pretty(&file).map_err(|e| IdentityError::TokenFile {
            path: self.token_path(),
            detail: e.to_string(),
        })?;
        write_atomically(&self.token_path(), &json, true)
    }
}

fn fingerprint(dir: &Path) -> Fingerprint {
    let of = |path: &Path| {
        fs::metadata(path)
            .ok()
            .and_then(|m| Some((m.modified().ok()?, m.len())))
    };
    [of(dir), of(&dir.join("tokens.json"))]
}

/// Parse and cross-check one identity's material.
fn load(
    name: &str,
    msp_id: &str,
    cert_pem: &str,
    key_pem: &str,
) -> Result<Identity, IdentityError> {
    let invalid = |detail: String| IdentityError::Invalid {
        name: name.to_owned(),
        detail,
    };
    if msp_id.is_empty() || msp_id.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(invalid(format!(
            "msp_id {msp_id:?} must be a non-empty word"
        )));
    }
    let certificate =
        Certificate::from_pem(cert_pem).map_err(|e| invalid(format!("certificate: {e}")))?;
    let signing =
        SigningIdentity::from_pem(msp_id, cert_pem, key_pem).map_err(|e| invalid(e.to_string()))?;
    // A key that does not match the certificate would make every transaction fail signature
    // checks on Fabric (and sign data nobody can verify): refuse it up front.
    let probe = b"tom identity key check";
    if !certificate.verify(probe, &signing.sign(probe)) {
        return Err(invalid(format!(
            "the private key does not belong to certificate {}",
            certificate.info.subject
        )));
    }
    let role = certificate.role().map_err(invalid)?;
    Ok(Identity {
        name: name.to_owned(),
        agent_id: tom_contract::identity::agent_id(msp_id, &certificate.common_name),
        signing,
        role,
    })
}

/// The development organisation created on first start with an empty data directory.
pub const DEV_MSP_ID: &str = "DevOrgMSP";

/// What the development bootstrap created: identity name → token, and where it wrote them.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DevCredentials {
    pub msp_id: String,
    pub ca_certificate: String,
    /// Identity name (`admin`, `orchestrator`, `auditor`) → API token.
    pub tokens: BTreeMap<String, String>,
    #[serde(skip)]
    pub path: PathBuf,
}

/// On an empty store: issue a development CA and `admin`, `orchestrator` and `auditor`
/// identities under [`DEV_MSP_ID`], give each a fresh token, and write the tokens to
/// `<data>/dev-credentials.json` (mode 0600). Returns `None` if the store has identities already.
pub fn bootstrap_dev(
    store: &mut IdentityStore,
    data_dir: &Path,
) -> Result<Option<DevCredentials>, IdentityError> {
    use tom_issuance::pki;
    if !store.is_empty() {
        return Ok(None);
    }
    let pki_err = |e: pki::PkiError| IdentityError::Pki(e.to_string());
    let (from, to) = dev_validity(store.clock.0.as_ref());
    let ca =
        pki::issue_ca("DevOrg CA", "TOM development organisation", from, to).map_err(pki_err)?;
    // Kept (key 0600) so `tom identity issue` can add device and workload identities later.
    let ca_dir = data_dir.join(DEV_CA_DIR);
    fs::create_dir_all(&ca_dir).map_err(io(&ca_dir))?;
    write_atomically(&ca_dir.join("ca.pem"), ca.cert_pem.as_bytes(), false)?;
    write_atomically(
        &ca_dir.join("ca.key.pem"),
        ca.key_pkcs8_pem.as_bytes(),
        true,
    )?;
    let mut tokens = BTreeMap::new();
    for (name, role, ou) in [
        ("admin", "admin", "admin"),
        ("orchestrator", "orchestrator", "client"),
        ("auditor", "auditor", "client"),
    ] {
        let issued =
            pki::issue_identity(&ca, name, Some(ou), Some(role), from, to).map_err(pki_err)?;
        store.add(name, DEV_MSP_ID, &issued.cert_pem, &issued.key_pkcs8_pem)?;
        let token = new_token()?;
        store.add_token(name, &token)?;
        tokens.insert(name.to_owned(), token);
    }
    let path = data_dir.join("dev-credentials.json");
    let credentials = DevCredentials {
        msp_id: DEV_MSP_ID.into(),
        ca_certificate: ca.cert_pem,
        tokens,
        path: path.clone(),
    };
    let json =
        serde_json::to_vec_pretty(&credentials).map_err(|e| IdentityError::Pki(e.to_string()))?;
    write_atomically(&path, &json, true)?;
    Ok(Some(credentials))
}

/// Where the development CA is kept, inside the data directory.
pub const DEV_CA_DIR: &str = "dev-ca";

/// Issue a new identity of the development organisation with `role` (e.g. a device or a
/// workload that signs its own data) and add it to the store.
pub fn issue_dev_identity(
    store: &mut IdentityStore,
    data_dir: &Path,
    name: &str,
    role: Role,
) -> Result<Arc<Identity>, IdentityError> {
    use tom_issuance::pki;
    check_name(name)?;
    let ca_dir = data_dir.join(DEV_CA_DIR);
    let read = |file: &str| {
        let path = ca_dir.join(file);
        fs::read_to_string(&path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => IdentityError::Invalid {
                name: name.to_owned(),
                detail: format!(
                    "{} has no development CA (only a data directory bootstrapped by `tom serve` has one); for other organisations issue the certificate with their CA and use `tom identity add`",
                    data_dir.display()
                ),
            },
            _ => IdentityError::Io { path, source: e },
        })
    };
    let ca = pki::IssuedCa {
        cert_pem: read("ca.pem")?,
        key_pkcs8_pem: read("ca.key.pem")?,
    };
    let (from, to) = dev_validity(store.clock.0.as_ref());
    let issued = pki::issue_identity(&ca, name, Some("client"), Some(role.as_str()), from, to)
        .map_err(|e| IdentityError::Pki(e.to_string()))?;
    store.add(name, DEV_MSP_ID, &issued.cert_pem, &issued.key_pkcs8_pem)
}

/// Development certificates are valid from yesterday for ten years: no clock skew trouble, and
/// no expiry during any plausible development session.
fn dev_validity(clock: &dyn Clock) -> (tom_issuance::pki::Ymd, tom_issuance::pki::Ymd) {
    let now = clock.now();
    let (y, m, d) = civil_from_days(now.seconds.div_euclid(86_400) - 1);
    ((y, m, d), (y + 10, m, d.min(28)))
}

/// Days since 1970-01-01 → (year, month, day) in the proleptic Gregorian calendar
/// (H. Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i32, u8, u8) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u8;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u8;
    let y = (yoe + era * 400 + i64::from(m <= 2)) as i32;
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_723), (2024, 1, 1));
        assert_eq!(civil_from_days(19_782), (2024, 2, 29));
    }

    #[test]
    fn add_reload_and_authenticate() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = IdentityStore::open(dir.path()).unwrap();
        let fx = tom_fixtures::identity("org1", "orchestrator");
        store
            .add("orch", fx.msp_id, fx.cert_pem, fx.key_pkcs8_pem)
            .unwrap();
        store.add_token("orch", "0123456789abcdef-token").unwrap();
        let store = IdentityStore::open(dir.path()).unwrap();
        let who = store.authenticate("0123456789abcdef-token").unwrap();
        assert_eq!(who.role, Some(Role::Orchestrator));
        assert_eq!(who.agent_id, "Org1MSP/orchestrator");
        assert!(store.authenticate("0123456789abcdef-tokem").is_none());
        let tokens = fs::read_to_string(dir.path().join("identities/tokens.json")).unwrap();
        assert!(
            !tokens.contains("0123456789abcdef-token"),
            "tokens are stored hashed"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(dir.path().join("identities/orch/key.pem"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn rotated_tokens_expire_by_the_store_clock() {
        use crate::clock::ManualClock;
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::new(tom_contract::Timestamp::from_seconds(
            1_900_000_000,
        )));
        let mut store = IdentityStore::open_with_clock(dir.path(), clock.clone()).unwrap();
        let fx = tom_fixtures::identity("org1", "orchestrator");
        store
            .add("orch", fx.msp_id, fx.cert_pem, fx.key_pkcs8_pem)
            .unwrap();
        store.add_token("orch", "0123456789abcdef-token").unwrap();
        assert_eq!(store.expire_tokens_of("orch", 60).unwrap(), 1);
        clock.advance(std::time::Duration::from_secs(60));
        assert!(
            store.lookup("0123456789abcdef-token").is_some(),
            "still in the overlap"
        );
        clock.advance(std::time::Duration::from_secs(1));
        assert!(
            store.lookup("0123456789abcdef-token").is_none(),
            "refused after it"
        );
    }

    #[test]
    fn development_certificates_start_the_day_before_the_clock() {
        use crate::clock::ManualClock;
        // 2024-02-29T12:00:00Z.
        let clock = ManualClock::new(tom_contract::Timestamp::from_seconds(
            19_782 * 86_400 + 43_200,
        ));
        assert_eq!(dev_validity(&clock), ((2024, 2, 28), (2034, 2, 28)));
    }

    #[test]
    fn mismatched_key_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = IdentityStore::open(dir.path()).unwrap();
        let a = tom_fixtures::identity("org1", "orchestrator");
        let b = tom_fixtures::identity("org1", "admin");
        let err = store
            .add("x", a.msp_id, a.cert_pem, b.key_pkcs8_pem)
            .unwrap_err()
            .to_string();
        assert!(err.contains("does not belong to certificate"), "{err}");
        assert!(!dir.path().join("identities/x").exists());
        assert!(matches!(
            store.add("../x", a.msp_id, a.cert_pem, a.key_pkcs8_pem),
            Err(IdentityError::BadName(_))
        ));
    }

    #[test]
    fn dev_bootstrap_once() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = IdentityStore::open(dir.path()).unwrap();
        let creds = bootstrap_dev(&mut store, dir.path()).unwrap().unwrap();
        assert_eq!(creds.tokens.len(), 3);
        assert_eq!(
            store.authenticate(&creds.tokens["admin"]).unwrap().role,
            Some(Role::Admin)
        );
        assert!(bootstrap_dev(&mut store, dir.path()).unwrap().is_none());
        let device = issue_dev_identity(&mut store, dir.path(), "sensor-1", Role::Device).unwrap();
        assert_eq!(
            (device.role, device.agent_id.as_str()),
            (Some(Role::Device), "DevOrgMSP/sensor-1")
        );
        // It chains to the development CA, so the dev org's devices can identify on the ledger.
        let cert = Certificate::from_pem(&device.signing.certificate_pem).unwrap();
        let ca = Certificate::from_pem(&creds.ca_certificate).unwrap();
        cert.check_issued_by(&ca).unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        let mut other = IdentityStore::open(elsewhere.path()).unwrap();
        let err = issue_dev_identity(&mut other, elsewhere.path(), "x", Role::Device).unwrap_err();
        assert!(err.to_string().contains("has no development CA"), "{err}");
    }
}
