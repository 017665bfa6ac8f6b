//! A non-durable [`Ledger`] over the contract's in-memory ledger, for tests of the layers above
//! the ledger (REST, Swarm). Same contract, same Fabric semantics, nothing on disk.

use std::sync::Mutex;

use tokio::sync::broadcast;
use tom_contract::memory::{MemoryLedger, SubmitError};

use super::{CommittedEvent, Ledger, LedgerError, SigningIdentity, Submitted};

pub struct InMemoryLedger {
    // A std Mutex: every use is short and synchronous (never held across an await).
    inner: Mutex<MemoryLedger>,
    events: broadcast::Sender<CommittedEvent>,
    /// Every event sent, for [`Ledger::replay_after`].
    sent: Mutex<Vec<CommittedEvent>>,
}

impl Default for InMemoryLedger {
    fn default() -> Self {
        InMemoryLedger {
            inner: Mutex::new(MemoryLedger::new()),
            events: broadcast::channel(1024).0,
            sent: Mutex::new(Vec::new()),
        }
    }
}

impl InMemoryLedger {
    pub fn new() -> Self {
        Self::default()
    }
}

/// A transaction id as Fabric derives it: hex SHA-256 of nonce ‖ creator.
pub fn new_tx_id(creator: &tom_contract::Creator) -> (String, [u8; 24]) {
    let mut nonce = [0u8; 24];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut nonce)
        .unwrap_or_default();
    let mut bytes = nonce.to_vec();
    bytes.extend_from_slice(creator.msp_id.as_bytes());
    bytes.extend_from_slice(&creator.certificate_pem);
    (
        hex::encode(ring::digest::digest(&ring::digest::SHA256, &bytes)),
        nonce,
    )
}

/// Now, as the transaction timestamp a client puts in its proposal.
pub fn now() -> tom_contract::Timestamp {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    tom_contract::Timestamp {
        seconds: since.as_secs() as i64,
        nanos: since.subsec_nanos() as i32,
    }
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
        let (tx_id, _) = new_tx_id(&creator);
        let mut ledger = self
            .inner
            .lock()
            .map_err(|_| LedgerError::Internal("ledger lock poisoned".into()))?;
        let response = ledger
            .submit(&creator, &tx_id, now(), function, &[argument])
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
        let (tx_id, _) = new_tx_id(&creator);
        let ledger = self
            .inner
            .lock()
            .map_err(|_| LedgerError::Internal("ledger lock poisoned".into()))?;
        Ok(ledger.evaluate(&creator, &tx_id, now(), function, &[argument])?)
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
