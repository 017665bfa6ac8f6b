//! Where time and randomness enter the gateway: a [`Clock`] for "now" and a [`TxIdSource`] for
//! the nonces transaction ids are derived from, each a small trait with the system
//! implementation production uses and deterministic ones for tests.
//!
//! The ledger back ends (embedded, Fabric, the in-memory test double) and the identity store take
//! them at construction instead of reading `SystemTime` or the system random generator
//! themselves, so a test can fix the time, count through nonces, or make the random source fail.
//!
//! **Architecture invariant:** a nonce comes from a [`TxIdSource`] or not at all: a failing
//! random source is an error ([`RandomnessError`], answered as 503 by the API), never a zero
//! nonce (which would give every transaction of a creator the same id).

use std::fmt;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;

use tom_contract::{Creator, Timestamp};

use crate::ledger::LedgerError;

/// Length of a transaction nonce (what Fabric's own clients use).
pub const NONCE_LEN: usize = 24;

/// A transaction nonce.
pub type Nonce = [u8; NONCE_LEN];

/// The time, as the transaction timestamp a client puts in its proposal.
pub trait Clock: Send + Sync + fmt::Debug {
    /// Now.
    fn now(&self) -> Timestamp;
}

/// The system's wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        // A clock before 1970 reads as 1970: nothing the gateway does is meaningful then, and
        // the contract's checks (validity, deadlines) fail closed on such a time.
        let since = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Timestamp {
            seconds: i64::try_from(since.as_secs()).unwrap_or(i64::MAX),
            nanos: since.subsec_nanos() as i32,
        }
    }
}

/// A clock that says what it is told: for tests of deadlines, expiries and clock skew.
#[derive(Debug)]
pub struct ManualClock {
    nanos: AtomicI64,
}

impl ManualClock {
    /// A clock standing at `at`.
    pub fn new(at: Timestamp) -> Self {
        ManualClock {
            nanos: AtomicI64::new(at.seconds * 1_000_000_000 + i64::from(at.nanos)),
        }
    }

    /// Move the clock to `at`.
    pub fn set(&self, at: Timestamp) {
        self.nanos.store(
            at.seconds * 1_000_000_000 + i64::from(at.nanos),
            Ordering::SeqCst,
        );
    }

    /// Move the clock forward by `by`.
    pub fn advance(&self, by: std::time::Duration) {
        let by = i64::try_from(by.as_nanos()).unwrap_or(i64::MAX);
        self.nanos.fetch_add(by, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        let nanos = self.nanos.load(Ordering::SeqCst);
        Timestamp {
            seconds: nanos.div_euclid(1_000_000_000),
            nanos: nanos.rem_euclid(1_000_000_000) as i32,
        }
    }
}

/// The random source failed: no nonce, so no transaction id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("no transaction nonce: the random source failed ({0})")]
pub struct RandomnessError(pub String);

impl From<RandomnessError> for LedgerError {
    /// Nothing was proposed, and the same call may succeed once the random source recovers:
    /// the API answers 503 with this message.
    fn from(e: RandomnessError) -> Self {
        LedgerError::Unavailable(e.to_string())
    }
}

/// Where transaction nonces come from; a transaction id is derived from the nonce and the
/// creator (see [`embedded_tx_id`] and the Fabric client's `proposal::transaction_id`).
pub trait TxIdSource: Send + Sync + fmt::Debug {
    /// A fresh nonce, unique for practical purposes.
    fn nonce(&self) -> Result<Nonce, RandomnessError>;
}

/// Nonces from the operating system's random generator (ring's `SystemRandom`).
#[derive(Debug)]
pub struct SystemTxIds {
    rng: ring::rand::SystemRandom,
}

impl Default for SystemTxIds {
    fn default() -> Self {
        SystemTxIds {
            rng: ring::rand::SystemRandom::new(),
        }
    }
}

impl TxIdSource for SystemTxIds {
    fn nonce(&self) -> Result<Nonce, RandomnessError> {
        let mut nonce = [0u8; NONCE_LEN];
        ring::rand::SecureRandom::fill(&self.rng, &mut nonce).map_err(|_| {
            RandomnessError("the operating system's random generator failed".into())
        })?;
        Ok(nonce)
    }
}

/// Deterministic nonces for tests: 1, 2, 3, ... (big-endian in the last eight bytes), so ids
/// are distinct and reproducible.
#[derive(Debug, Default)]
pub struct CountingTxIds {
    next: AtomicU64,
}

impl TxIdSource for CountingTxIds {
    fn nonce(&self) -> Result<Nonce, RandomnessError> {
        let n = self.next.fetch_add(1, Ordering::SeqCst) + 1;
        let mut nonce = [0u8; NONCE_LEN];
        nonce[NONCE_LEN - 8..].copy_from_slice(&n.to_be_bytes());
        Ok(nonce)
    }
}

/// A random source that always fails: for tests that a failure reaches the caller.
#[derive(Debug, Default)]
pub struct FailingTxIds;

impl TxIdSource for FailingTxIds {
    fn nonce(&self) -> Result<Nonce, RandomnessError> {
        Err(RandomnessError("test source configured to fail".into()))
    }
}

/// The system clock, shared.
pub fn system_clock() -> Arc<dyn Clock> {
    Arc::new(SystemClock)
}

/// The system random source, shared.
pub fn system_tx_ids() -> Arc<dyn TxIdSource> {
    Arc::new(SystemTxIds::default())
}

/// The embedded and in-memory ledgers' transaction id: hex SHA-256 of nonce ‖ MSP id ‖
/// certificate PEM (Fabric's derivation over the creator's fields), with the nonce it used.
pub fn embedded_tx_id(
    source: &dyn TxIdSource,
    creator: &Creator,
) -> Result<(String, Nonce), RandomnessError> {
    let nonce = source.nonce()?;
    let mut bytes = nonce.to_vec();
    bytes.extend_from_slice(creator.msp_id.as_bytes());
    bytes.extend_from_slice(&creator.certificate_pem);
    Ok((
        hex::encode(ring::digest::digest(&ring::digest::SHA256, &bytes)),
        nonce,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_told() {
        let clock = ManualClock::new(Timestamp::from_seconds(1_700_000_000));
        assert_eq!(clock.now(), Timestamp::from_seconds(1_700_000_000));
        clock.advance(std::time::Duration::from_millis(1500));
        assert_eq!(
            clock.now(),
            Timestamp {
                seconds: 1_700_000_001,
                nanos: 500_000_000
            }
        );
        clock.set(Timestamp::from_seconds(5));
        assert_eq!(clock.now().seconds, 5);
    }

    #[test]
    fn counting_ids_are_distinct_and_reproducible() {
        let creator = Creator {
            msp_id: "Org1MSP".into(),
            certificate_pem: b"pem".to_vec(),
        };
        let (a, b) = (CountingTxIds::default(), CountingTxIds::default());
        let first = embedded_tx_id(&a, &creator).unwrap();
        assert_eq!(first, embedded_tx_id(&b, &creator).unwrap());
        assert_ne!(first.0, embedded_tx_id(&a, &creator).unwrap().0);
        assert_ne!(first.1, [0u8; NONCE_LEN]);
    }

    #[test]
    fn system_nonces_are_not_zero_and_differ() {
        let source = SystemTxIds::default();
        let (a, b) = (source.nonce().unwrap(), source.nonce().unwrap());
        assert_ne!(a, [0u8; NONCE_LEN]);
        assert_ne!(a, b);
    }

    #[test]
    fn a_failing_source_is_an_unavailable_ledger_error() {
        let creator = Creator {
            msp_id: "Org1MSP".into(),
            certificate_pem: b"pem".to_vec(),
        };
        let err = embedded_tx_id(&FailingTxIds, &creator).unwrap_err();
        let err = LedgerError::from(err);
        assert!(
            matches!(&err, LedgerError::Unavailable(m) if m.contains("random source failed")),
            "{err:?}"
        );
    }
}
