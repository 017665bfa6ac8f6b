//! A non-durable [`Ledger`] over the contract's in-memory ledger, for tests of the layers above
//! the ledger (REST, Swarm). Same contract, same Fabric semantics, nothing on disk.
//!
//! A test double only: production code takes its time and nonces from [`crate::clock`], never
//! from here. [`now`] and [`new_tx_id`] remain as conveniences for tests.

use std::sync::{Arc, Mutex};

use tokio::sync::broadcast;
use tom_contract::memory::{MemoryLedger, SubmitError};

use super::{CommittedEvent, Ledger, LedgerError, SigningIdentity, Submitted};
use crate::clock::{self, Clock, Nonce, TxIdSource};

pub struct InMemoryLedger {
    // A std Mutex: every use is short and synchronous (never held across an await).
    inner: Mutex<MemoryLedger>,
    events: broadcast::Sender<CommittedEvent>,
    /// Every event sent, for [`Ledger::replay_after`].
    sent: Mutex<Vec<CommittedEvent>>,
    clock: Arc<dyn Clock>,
    tx_ids: Arc<dyn TxIdSource>,
}

impl Default for InMemoryLedger {
    fn default() -> Self {
        Self::with_sources(clock::system_clock(), clock::system_tx_ids())
    }
}

impl InMemoryLedger {
    pub fn new() -> Self {
        Self::default()
    }

    /// A ledger whose transactions take their timestamps from `clock` and their ids from
    /// `tx_ids`.
    pub fn with_sources(clock: Arc<dyn Clock>, tx_ids: Arc<dyn TxIdSource>) -> Self {
        InMemoryLedger {
            inner: Mutex::new(MemoryLedger::new()),
            events: broadcast::channel(1024).0,
            sent: Mutex::new(Vec::new()),
            clock,
            tx_ids,
        }
    }
}

/// For tests: a transaction id as the embedded ledger derives it, from the system random source.
///
/// # Panics
///
/// If the system random source fails (production code uses [`clock::embedded_tx_id`], which
/// returns the failure).
#[allow(clippy::expect_used)] // A test helper: a broken random source should stop the test.
pub fn new_tx_id(creator: &tom_contract::Creator) -> (String, Nonce) {
    clock::embedded_tx_id(&clock::SystemTxIds::default(), creator)
        .expect("the system random source works")
}

/// For tests: now, from the system clock (production code is handed a [`Clock`]).
pub fn now() -> tom_contract::Timestamp {
    clock::SystemClock.now()
}

#[async_trait::async_trait]
impl Ledger for InMemoryLedger {
    async fn submit(
        &self,
        identity: &SigningIdentity,
        function: &str,
        argument: &[u8],
    ) -> Result<Submitted, LedgerError> {
        let creator = identity.creator();
        let (tx_id, _) = clock::embedded_tx_id(self.tx_ids.as_ref(), &creator)?;
        let mut ledger = self
            .inner
            .lock()
            .map_err(|_| LedgerError::Internal("ledger lock poisoned".into()))?;
        let response = ledger
            .submit(&creator, &tx_id, self.clock.now(), function, &[argument])
            .map_err(|e| match e {
                SubmitError::Rejected(e) => LedgerError::from(e),
                SubmitError::Mvcc { tx_id, conflict } => LedgerError::Conflict {
                    tx_id,
                    reason: conflict.to_string(),
                },
                SubmitError::DuplicateTxId(tx_id) => LedgerError::Conflict {
                    tx_id,
                    reason: "duplicate transaction id".into(),
                },
                SubmitError::Ledger(e) => LedgerError::Internal(e.to_string()),
            })?;
        let block = ledger.height();
        if let Some(event) = ledger.events().last().filter(|e| e.tx_id == tx_id) {
            let event = CommittedEvent {
                tx_id: tx_id.clone(),
                block,
                name: event.event.name.clone(),
                payload: event.event.payload.clone(),
            };
            if let Ok(mut sent) = self.sent.lock() {
                sent.push(event.clone());
            }
            let _ = self.events.send(event);
        }
        Ok(Submitted {
            tx_id,
            block,
            response,
        })
    }

    async fn evaluate(
        &self,
        identity: &SigningIdentity,
        function: &str,
        argument: &[u8],
    ) -> Result<Vec<u8>, LedgerError> {
        let creator = identity.creator();
        let (tx_id, _) = clock::embedded_tx_id(self.tx_ids.as_ref(), &creator)?;
        let ledger = self
            .inner
            .lock()
            .map_err(|_| LedgerError::Internal("ledger lock poisoned".into()))?;
        Ok(ledger.evaluate(&creator, &tx_id, self.clock.now(), function, &[argument])?)
    }

    fn subscribe(&self) -> broadcast::Receiver<CommittedEvent> {
        self.events.subscribe()
    }

    async fn replay_after(
        &self,
        block: u64,
        tx_id: &str,
    ) -> Result<Vec<CommittedEvent>, LedgerError> {
        let sent = self
            .sent
            .lock()
            .map_err(|_| LedgerError::Internal("ledger lock poisoned".into()))?
            .iter()
            .filter(|e| e.block >= block)
            .cloned()
            .collect();
        super::events_after(sent, block, tx_id)
    }

    fn describe(&self) -> String {
        "in-memory (not durable)".into()
    }
}
