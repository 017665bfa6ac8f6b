//! The gateway's ledger port: how the gateway submits transactions and evaluates queries,
//! whichever ledger is underneath.
//!
//! Two adapters implement [`Ledger`]: the embedded single-machine ledger (the default) and a
//! Fabric network reached through the Fabric Gateway gRPC API. [`memory::InMemoryLedger`] is a
//! third, non-durable one for tests. All of them run transactions as the caller's
//! [`SigningIdentity`], so the contract sees the caller as creator on every back end.

pub mod embedded;
pub mod fabric;
pub mod memory;

use std::fmt;

use std::sync::Arc;

use p256::ecdsa::signature::Signer as _;

/// A ledger identity the gateway holds for a caller: X.509 certificate and private key.
#[derive(Clone)]
pub struct SigningIdentity {
    pub msp_id: String,
    pub certificate_pem: String,
    key: p256::ecdsa::SigningKey,
    /// The same key for ring, which signs about ten times faster than the pure-Rust p256 crate
    /// (measured in the embedded ledger's benchmark); every transaction is signed, so it
    /// matters. `None` when ring rejects the encoding; p256 then signs.
    fast_key: Option<Arc<ring::signature::EcdsaKeyPair>>,
}

impl fmt::Debug for SigningIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningIdentity")
            .field("msp_id", &self.msp_id)
            .finish_non_exhaustive()
    }
}

impl SigningIdentity {
    /// From a PEM certificate and a PEM PKCS#8 P-256 private key.
    pub fn from_pem(
        msp_id: &str,
        certificate_pem: &str,
        key_pkcs8_pem: &str,
    ) -> Result<Self, LedgerError> {
        use p256::pkcs8::{DecodePrivateKey, EncodePrivateKey};
        let key = p256::ecdsa::SigningKey::from_pkcs8_pem(key_pkcs8_pem).map_err(|e| {
            LedgerError::Internal(format!(
                "identity of {msp_id}: private key is not a PKCS#8 P-256 key: {e}"
            ))
        })?;
        // Re-encoded by p256, the document carries the public key, as ring requires.
        let fast_key = p256::SecretKey::from(&key)
            .to_pkcs8_der()
            .ok()
            .and_then(|der| {
                ring::signature::EcdsaKeyPair::from_pkcs8(
                    &ring::signature::ECDSA_P256_SHA256_ASN1_SIGNING,
                    der.as_bytes(),
                    &ring::rand::SystemRandom::new(),
                )
                .ok()
            })
            .map(Arc::new);
        Ok(SigningIdentity {
            msp_id: msp_id.to_owned(),
            certificate_pem: certificate_pem.to_owned(),
            key,
            fast_key,
        })
    }

    /// ECDSA P-256 / SHA-256 over `message`, DER encoded, with low S as Fabric requires.
    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        let fast = self.fast_key.as_ref().and_then(|pair| {
            let signed = pair.sign(&ring::rand::SystemRandom::new(), message).ok()?;
            p256::ecdsa::Signature::from_der(signed.as_ref()).ok()
        });
        let signature = fast.unwrap_or_else(|| self.key.sign(message));
        let signature = signature.normalize_s().unwrap_or(signature);
        signature.to_der().as_bytes().to_vec()
    }

    /// The creator as the contract sees it.
    pub fn creator(&self) -> tom_contract::Creator {
        tom_contract::Creator {
            msp_id: self.msp_id.clone(),
            certificate_pem: self.certificate_pem.clone().into_bytes(),
        }
    }
}

/// A committed transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submitted {
    pub tx_id: String,
    /// The block that carries it.
    pub block: u64,
    /// The contract's response (JSON).
    pub response: Vec<u8>,
}

/// A chaincode event of a committed transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedEvent {
    pub tx_id: String,
    pub block: u64,
    pub name: String,
    pub payload: Vec<u8>,
}

/// Why a ledger call failed, by what the caller can do: `Rejected` and `Conflict` are the
/// caller's business (fix the request, or retry a conflict); `Unavailable` means nothing was
/// recorded and the same call may succeed later; `OutcomeUnknown` means the transaction was
/// handed to the ledger but whether it committed was not seen: ask about `tx_id` before sending
/// it again; `Internal` is a failure to give up on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LedgerError {
    /// The contract refused the transaction (status as the chaincode returned it: 400/403/404/409).
    #[error("{message}")]
    Rejected { status: u16, message: String },
    /// The transaction was endorsed but invalidated at commit (MVCC conflict, duplicate tx id).
    #[error("transaction {tx_id} was not committed: {reason}")]
    Conflict { tx_id: String, reason: String },
    /// The ledger cannot be reached or is shutting down; nothing was recorded.
    #[error("ledger unavailable: {0}")]
    Unavailable(String),
    /// The transaction was submitted for ordering but its commit was not seen (the peers went
    /// away, or the commit-status deadline passed): it may yet commit, or not.
    #[error("transaction {tx_id} was submitted but its outcome is unknown: {reason}")]
    OutcomeUnknown { tx_id: String, reason: String },
    /// Anything else: a bug or corrupt local state.
    #[error("ledger failure: {0}")]
    Internal(String),
}

impl From<tom_contract::ContractError> for LedgerError {
    fn from(e: tom_contract::ContractError) -> Self {
        match e.status() {
            status @ 400..=499 => LedgerError::Rejected {
                status,
                message: e.to_string(),
            },
            _ => LedgerError::Internal(e.to_string()),
        }
    }
}

/// A ledger the gateway can submit transactions to and evaluate queries on.
#[async_trait::async_trait]
pub trait Ledger: Send + Sync + 'static {
    /// Endorse, order and commit one transaction as `identity`; returns once it is committed
    /// (durably, for the embedded ledger).
    async fn submit(
        &self,
        identity: &SigningIdentity,
        function: &str,
        argument: &[u8],
    ) -> Result<Submitted, LedgerError>;

    /// Run a read-only query as `identity`; nothing is recorded.
    async fn evaluate(
        &self,
        identity: &SigningIdentity,
        function: &str,
        argument: &[u8],
    ) -> Result<Vec<u8>, LedgerError>;

    /// An evidence bundle for the lineage `query` asks for, run as `identity`: the lineage, its
    /// PROV-JSON, and the committed transactions and block proof a stranger can check offline
    /// ([`crate::evidence`]).
    async fn evidence(
        &self,
        _identity: &SigningIdentity,
        _query: &tom_contract::requests::LineageQuery,
    ) -> Result<crate::evidence::Bundle, LedgerError> {
        Err(LedgerError::Rejected {
            status: 400,
            message: "evidence bundles are not available from this ledger back end (only from \
                      the embedded ledger and Fabric)"
                .into(),
        })
    }

    /// Committed chaincode events from now on.
    fn subscribe(&self) -> tokio::sync::broadcast::Receiver<CommittedEvent>;

    /// The committed events after transaction `tx_id` of block `block`, in commit order (for a
    /// consumer resuming `/v1/events`). A 400 when that transaction is not a committed event of
    /// that block; back ends that cannot replay answer 400 saying so.
    async fn replay_after(
        &self,
        _block: u64,
        _tx_id: &str,
    ) -> Result<Vec<CommittedEvent>, LedgerError> {
        Err(LedgerError::Rejected {
            status: 400,
            message: "this ledger back end cannot replay events; resume with GET /v1/records"
                .into(),
        })
    }

    /// A short description for logs (e.g. "embedded at /var/lib/tom"); may name paths, so it
    /// is never shown to unauthenticated callers.
    fn describe(&self) -> String;

    /// Whether the ledger can take transactions now, and if not, why (`/readyz`). The detail
    /// is shown to unauthenticated callers: no paths or secrets.
    fn readiness(&self) -> Readiness {
        Readiness::ready("ledger reachable")
    }

    /// Back-end specific Prometheus metrics (text exposition format, with their `# HELP` and
    /// `# TYPE` lines), appended to `/metrics`. Default: none.
    fn metrics(&self) -> String {
        String::new()
    }
}

/// The events of `events` (in commit order, from block `block` on) after transaction `tx_id` of
/// block `block`: a 400 ([`no_committed_event`]) if `tx_id` is not among that block's events.
pub fn events_after(
    events: Vec<CommittedEvent>,
    block: u64,
    tx_id: &str,
) -> Result<Vec<CommittedEvent>, LedgerError> {
    let Some(at) = events
        .iter()
        .position(|e| e.block == block && e.tx_id == tx_id)
    else {
        return Err(no_committed_event(block, tx_id));
    };
    Ok(events.into_iter().skip(at + 1).collect())
}

/// The refusal of a resume point (`<block>.<tx_id>`) that names no committed event, the same on
/// every back end: the consumer holds an id from elsewhere (another channel or ledger, a
/// transaction of another block) and must start over rather than get a silently wrong replay.
pub fn no_committed_event(block: u64, tx_id: &str) -> LedgerError {
    LedgerError::Rejected {
        status: 400,
        message: format!(
            "event id {block}.{tx_id} names no committed event: block {block} has no event of \
             transaction {tx_id}"
        ),
    }
}

/// What [`Ledger::readiness`] reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Readiness {
    pub ready: bool,
    pub detail: String,
}

impl Readiness {
    pub fn ready(detail: impl Into<String>) -> Readiness {
        Readiness {
            ready: true,
            detail: detail.into(),
        }
    }

    pub fn not_ready(detail: impl Into<String>) -> Readiness {
        Readiness {
            ready: false,
            detail: detail.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_verify_with_the_certificate_key_and_have_low_s() {
        let fixture = tom_fixtures::identity("org1", "orchestrator");
        let identity =
            SigningIdentity::from_pem(fixture.msp_id, fixture.cert_pem, fixture.key_pkcs8_pem)
                .unwrap();
        assert!(
            identity.fast_key.is_some(),
            "ring should accept the fixture key"
        );
        let (_, pem) = x509_parser::pem::parse_x509_pem(fixture.cert_pem.as_bytes()).unwrap();
        let cert = pem.parse_x509().unwrap();
        let public = cert.public_key().subject_public_key.data.to_vec();
        for n in 0..64u32 {
            let message = format!("message {n}");
            let der = identity.sign(message.as_bytes());
            ring::signature::UnparsedPublicKey::new(
                &ring::signature::ECDSA_P256_SHA256_ASN1,
                &public,
            )
            .verify(message.as_bytes(), &der)
            .expect("signature verifies");
            let signature = p256::ecdsa::Signature::from_der(&der).unwrap();
            assert!(
                signature.normalize_s().is_none(),
                "signature {n} has high S"
            );
        }
    }
}
