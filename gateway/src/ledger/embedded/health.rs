//! What the committer thread and the ledger handle share: the store (which the committer
//! reopens after an I/O error), why storage cannot take writes right now, and whether the
//! committer is alive. `/readyz` reads it through [`crate::ledger::Ledger::readiness`].
//!
//! # Storage faults
//!
//! redb refuses every operation after one I/O error ("Previous I/O error occurred") until the
//! database is closed and opened again; a full disk used to leave the ledger failing until a
//! restart. Now the committer answers the block's submitters 503 ("nothing was recorded"),
//! publishes the fault here, takes the store out of [`Shared::db`] (so endorsements answer 503
//! with the same reason instead of redb's error), waits for every other user of the old handle to
//! let go, and reopens the store (redb repairs it on open) with backoff, answering whatever is
//! submitted meanwhile with 503. Once reopened it re-reads the tip of the log and carries on, so
//! writes resume by themselves when space returns. An acknowledged transaction is never affected:
//! a block whose commit failed was never acknowledged, and the reopened store holds every block
//! committed before.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use crate::ledger::{LedgerError, Readiness};

/// Below this many free bytes in the data directory's file system the ledger reports itself not
/// ready: the next block may not fit.
pub const MIN_FREE_BYTES: u64 = 64 << 10;

#[derive(Default)]
pub(super) struct Shared {
    /// The open store; `None` after shutdown and while the committer reopens it.
    pub db: Mutex<Option<Arc<redb::Database>>>,
    /// Why writes fail now (a message fit for callers: no paths), if they do.
    pub fault: Mutex<Option<String>>,
    pub committer_alive: AtomicBool,
    pub shut_down: AtomicBool,
    /// The dictionary new values are compressed with, once the store has one.
    pub dictionary: super::dictionary::InUse,
}

impl Shared {
    pub fn new(db: Arc<redb::Database>) -> Shared {
        Shared {
            db: Mutex::new(Some(db)),
            fault: Mutex::new(None),
            committer_alive: AtomicBool::new(true),
            shut_down: AtomicBool::new(false),
            dictionary: Default::default(),
        }
    }

    /// The store, or why there is none.
    pub fn db(&self) -> Result<Arc<redb::Database>, LedgerError> {
        if let Some(db) = self
            .db
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
        {
            return Ok(db);
        }
        if self.shut_down.load(Ordering::Acquire) {
            return Err(LedgerError::Unavailable(
                "the embedded ledger is shut down".into(),
            ));
        }
        Err(LedgerError::Unavailable(self.fault().unwrap_or_else(
            || "ledger storage is being reopened after an I/O error; nothing was recorded".into(),
        )))
    }

    pub fn fault(&self) -> Option<String> {
        self.fault
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub fn set_fault(&self, fault: Option<String>) {
        *self.fault.lock().unwrap_or_else(PoisonError::into_inner) = fault;
    }

    pub fn readiness(&self, data_dir: &Path) -> Readiness {
        if self.shut_down.load(Ordering::Acquire) {
            return Readiness::not_ready("the embedded ledger is shut down");
        }
        if !self.committer_alive.load(Ordering::Acquire) {
            return Readiness::not_ready(
                "the embedded ledger's commit thread has stopped (the gateway log says why); restart the gateway",
            );
        }
        if let Some(fault) = self.fault() {
            return Readiness::not_ready(fault);
        }
        match free_bytes(data_dir) {
            Some(free) if free < MIN_FREE_BYTES => Readiness::not_ready(format!(
                "ledger storage full: {free} bytes free on the data directory's file system (at least {MIN_FREE_BYTES} needed)"
            )),
            _ => Readiness::ready("embedded ledger committing"),
        }
    }
}

/// Bytes an unprivileged writer may still allocate on the file system holding `dir`.
pub fn free_bytes(dir: &Path) -> Option<u64> {
    let stat = rustix::fs::statvfs(dir).ok()?;
    Some(stat.f_bavail.saturating_mul(stat.f_frsize))
}

/// Marks the committer dead when its thread ends, however it ends (a panic included).
pub(super) struct AliveGuard(pub Arc<Shared>);

impl Drop for AliveGuard {
    fn drop(&mut self) {
        self.0.committer_alive.store(false, Ordering::Release);
    }
}

/// A store error as the committer reports it: an I/O failure becomes
/// [`LedgerError::Unavailable`] with a message for callers (full disk named as such, no paths,
/// "nothing was recorded"); anything else stays [`LedgerError::Internal`].
pub(super) fn classify(context: &str, e: impl Into<redb::Error>) -> LedgerError {
    let e: redb::Error = e.into();
    match &e {
        redb::Error::Io(io) => LedgerError::Unavailable(io_fault(io)),
        redb::Error::PreviousIo => LedgerError::Unavailable(
            "ledger storage failed on an earlier write and is being reopened; nothing was recorded"
                .into(),
        ),
        _ => LedgerError::Internal(format!("embedded ledger store: {context}: {e}")),
    }
}

/// The caller-facing message of an I/O error of the store.
pub(super) fn io_fault(io: &std::io::Error) -> String {
    if is_full(io) {
        "ledger storage full: no space left on device; nothing was recorded (writes resume by themselves when space is freed)".into()
    } else {
        format!("ledger storage failed: {io}; nothing was recorded (the ledger retries by itself)")
    }
}

fn is_full(io: &std::io::Error) -> bool {
    const ENOSPC: i32 = 28;
    const EDQUOT: i32 = 122;
    matches!(io.raw_os_error(), Some(ENOSPC | EDQUOT))
        || matches!(
            io.kind(),
            std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
        )
}

/// Whether a redb open error is an I/O failure worth retrying.
pub(super) fn open_fault(e: &redb::DatabaseError) -> Option<String> {
    match e {
        redb::DatabaseError::Storage(redb::StorageError::Io(io)) => Some(io_fault(io)),
        redb::DatabaseError::Storage(redb::StorageError::PreviousIo) => Some(
            "ledger storage failed on an earlier write and is being reopened; nothing was recorded"
                .into(),
        ),
        _ => None,
    }
}
