//! Identity proofs: X.509 certificates, the Fabric CA role attribute, chains to an organisation's
//! registered CA, and ECDSA P-256 signatures.
//!
//! Pure functions over bytes; the only notion of time is the transaction timestamp passed in.

use serde::Deserialize;
use std::collections::BTreeMap;
use x509_parser::prelude::*;

use crate::ledger::Timestamp;
use crate::model::{AgentRef, CertificateInfo, Role};

/// Fabric CA writes enrolment attributes into this extension as JSON (`{"attrs":{…}}`).
pub const FABRIC_ATTRIBUTE_OID: &str = "1.2.3.4.5.6.7.8.1";
/// The attribute that carries a TOM role.
pub const ROLE_ATTRIBUTE: &str = "tom.role";

/// An owned, parsed certificate: what the contract needs of it, without borrowing the input.
#[derive(Debug, Clone)]
pub struct Certificate {
    pub der: Vec<u8>,
    pub info: CertificateInfo,
    pub common_name: String,
    /// The uncompressed EC point of the subject key.
    pub public_key: Vec<u8>,
    /// The raw `tom.role` attribute, if present.
    pub role_attribute: Option<String>,
    pub is_ca: bool,
    subject_raw: Vec<u8>,
    issuer_raw: Vec<u8>,
}

#[derive(Deserialize)]
struct FabricAttributes {
    #[serde(default)]
    attrs: BTreeMap<String, String>,
}

impl Certificate {
    /// Parse a PEM certificate through a bounded memo of earlier parses. Parsing is a pure
    /// function of the text, so the memo cannot change a result; it spares re-parsing the same
    /// creator and CA certificates on every transaction.
    pub fn from_pem_cached(pem: &str) -> Result<std::sync::Arc<Certificate>, String> {
        parsed::get_or_parse(pem)
    }

    /// Parse a single PEM-encoded certificate.
    pub fn from_pem(pem: &str) -> Result<Certificate, String> {
        let (rest, block) = x509_parser::pem::parse_x509_pem(pem.as_bytes())
            .map_err(|e| format!("not a PEM certificate: {e}"))?;
        if block.label != "CERTIFICATE" {
            return Err(format!(
                "PEM block is a {:?}, not a CERTIFICATE",
                block.label
            ));
        }
        if rest.iter().any(|b| !b.is_ascii_whitespace()) {
            return Err("expected exactly one PEM certificate".into());
        }
        Self::from_der(&block.contents, pem)
    }

    fn from_der(der: &[u8], pem: &str) -> Result<Certificate, String> {
        let (rest, cert) = X509Certificate::from_der(der)
            .map_err(|e| format!("invalid X.509 certificate: {e}"))?;
        if !rest.is_empty() {
            return Err("trailing bytes after the certificate".into());
        }
        let common_name = cert
            .subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .unwrap_or_default()
            .to_owned();
        let mut role_attribute = None;
        for ext in cert.extensions() {
            if ext.oid.to_id_string() == FABRIC_ATTRIBUTE_OID {
                let attrs: FabricAttributes = serde_json::from_slice(ext.value)
                    .map_err(|e| format!("malformed Fabric attribute extension: {e}"))?;
                role_attribute = attrs.attrs.get(ROLE_ATTRIBUTE).cloned();
            }
        }
        let is_ca = matches!(cert.basic_constraints(), Ok(Some(bc)) if bc.value.ca);
        let validity = cert.validity();
        Ok(Certificate {
            der: der.to_vec(),
            info: CertificateInfo {
                pem: pem.trim().to_owned() + "\n",
                sha256: sha256_hex(der),
                subject: cert.subject().to_string(),
                issuer: cert.issuer().to_string(),
                not_before: Timestamp::from_seconds(validity.not_before.timestamp()),
                not_after: Timestamp::from_seconds(validity.not_after.timestamp()),
            },
            common_name,
            public_key: cert.public_key().subject_public_key.data.to_vec(),
            role_attribute,
            is_ca,
            subject_raw: cert.subject().as_raw().to_vec(),
            issuer_raw: cert.issuer().as_raw().to_vec(),
        })
    }

    /// The role from the `tom.role` attribute: `Ok(None)` when absent, `Err` when unknown.
    pub fn role(&self) -> Result<Option<Role>, String> {
        match &self.role_attribute {
            None => Ok(None),
            Some(text) => Role::parse(text).map(Some).ok_or_else(|| {
                format!(
                    "unknown tom.role {text:?} (expected admin, orchestrator, device or auditor)"
                )
            }),
        }
    }

    /// Valid at `at` (inclusive bounds, as X.509 defines them).
    pub fn check_valid_at(&self, at: Timestamp) -> Result<(), String> {
        let (not_before, not_after) = (self.info.not_before, self.info.not_after);
        if at < not_before {
            Err(format!(
                "certificate {} is not valid before {} (transaction time {at})",
                self.info.subject, not_before
            ))
        } else if at.seconds > not_after.seconds {
            Err(format!(
                "certificate {} expired at {} (transaction time {at})",
                self.info.subject, not_after
            ))
        } else {
            Ok(())
        }
    }

    /// Check that `ca` issued this certificate: names match, `ca` is a CA and its key signed.
    pub fn check_issued_by(&self, ca: &Certificate) -> Result<(), String> {
        if self.issuer_raw != ca.subject_raw {
            return Err(format!(
                "issuer {} is not the CA {}",
                self.info.issuer, ca.info.subject
            ));
        }
        if !ca.is_ca {
            return Err(format!("{} is not a CA certificate", ca.info.subject));
        }
        let pair = (self.info.sha256.clone(), ca.info.sha256.clone());
        if verified_issuance::contains(&pair) {
            return Ok(());
        }
        let (_, cert) = X509Certificate::from_der(&self.der).map_err(|e| e.to_string())?;
        let (_, issuer) = X509Certificate::from_der(&ca.der).map_err(|e| e.to_string())?;
        cert.verify_signature(Some(issuer.public_key()))
            .map_err(|e| format!("signature of CA {} does not verify: {e}", ca.info.subject))?;
        verified_issuance::insert(pair);
        Ok(())
    }

    /// Verify an ASN.1 DER ECDSA P-256 / SHA-256 signature by this certificate's key.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        verify_p256(&self.public_key, message, signature)
    }

    /// The agent this certificate identifies, under `msp_id`.
    pub fn agent(&self, msp_id: &str) -> AgentRef {
        AgentRef {
            id: agent_id(msp_id, &self.common_name),
            msp_id: msp_id.to_owned(),
            common_name: self.common_name.clone(),
            role: self.role().ok().flatten(),
            certificate_sha256: self.info.sha256.clone(),
        }
    }
}

/// A memo of parsed certificates, keyed by the SHA-256 of their PEM text. Bounded: cleared when
/// full. Only successful parses are kept.
mod parsed {
    use std::collections::BTreeMap;
    use std::sync::{Arc, Mutex};

    use super::Certificate;

    const CAPACITY: usize = 1024;
    static PARSED: Mutex<BTreeMap<[u8; 32], Arc<Certificate>>> = Mutex::new(BTreeMap::new());

    pub fn get_or_parse(pem: &str) -> Result<Arc<Certificate>, String> {
        let mut key = [0u8; 32];
        key.copy_from_slice(ring::digest::digest(&ring::digest::SHA256, pem.as_bytes()).as_ref());
        if let Some(hit) = PARSED.lock().ok().and_then(|memo| memo.get(&key).cloned()) {
            return Ok(hit);
        }
        let certificate = Arc::new(Certificate::from_pem(pem)?);
        if let Ok(mut memo) = PARSED.lock() {
            if memo.len() >= CAPACITY {
                memo.clear();
            }
            memo.insert(key, certificate.clone());
        }
        Ok(certificate)
    }
}

/// A memo of certificate signatures already verified: (certificate sha256, CA sha256).
///
/// Whether a CA's key signed a given certificate is a pure function of the two DER encodings,
/// so remembering the answer cannot change any result (determinism holds) and spares the
/// ECDSA verification of the same creator's chain on every transaction. Validity periods and
/// names are still checked each time. Bounded: cleared when full.
mod verified_issuance {
    use std::collections::BTreeSet;
    use std::sync::Mutex;

    const CAPACITY: usize = 4096;
    static VERIFIED: Mutex<BTreeSet<(String, String)>> = Mutex::new(BTreeSet::new());

    pub fn contains(pair: &(String, String)) -> bool {
        VERIFIED
            .lock()
            .map(|set| set.contains(pair))
            .unwrap_or(false)
    }

    pub fn insert(pair: (String, String)) {
        if let Ok(mut set) = VERIFIED.lock() {
            if set.len() >= CAPACITY {
                set.clear();
            }
            set.insert(pair);
        }
    }
}

/// `<msp_id>/<common name>`.
pub fn agent_id(msp_id: &str, common_name: &str) -> String {
    format!("{msp_id}/{common_name}")
}

/// Check that one of `cas` (PEM) issued `cert` and that both are valid at `at`.
pub fn check_chain(cert: &Certificate, cas: &[String], at: Timestamp) -> Result<(), String> {
    cert.check_valid_at(at)?;
    let mut reasons = Vec::new();
    for pem in cas {
        let ca = Certificate::from_pem_cached(pem)
            .map_err(|e| format!("registered CA certificate is unreadable: {e}"))?;
        match cert
            .check_issued_by(&ca)
            .and_then(|()| ca.check_valid_at(at))
        {
            Ok(()) => return Ok(()),
            Err(reason) => reasons.push(reason),
        }
    }
    Err(format!(
        "certificate {} does not chain to a registered CA of its organisation ({})",
        cert.info.subject,
        reasons.join("; ")
    ))
}

pub fn verify_p256(public_key: &[u8], message: &[u8], signature: &[u8]) -> bool {
    ring::signature::UnparsedPublicKey::new(&ring::signature::ECDSA_P256_SHA256_ASN1, public_key)
        .verify(message, signature)
        .is_ok()
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, bytes))
}
