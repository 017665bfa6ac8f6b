//! The contract's [`LedgerStub`] implemented by asking the peer over the chaincode stream.
//!
//! Each stub call becomes one request message (GET_STATE, PUT_STATE, DEL_STATE,
//! GET_STATE_BY_RANGE + QUERY_STATE_NEXT…, GET_HISTORY_FOR_KEY) carrying the transaction's id
//! and channel, and blocks until the peer answers with RESPONSE or ERROR for that transaction.
//! The contract is synchronous, so a transaction runs on a blocking thread and this stub
//! bridges to the async stream with a bounded tokio channel (requests out) and a std channel
//! (responses in, routed by the stream handler).
//!
//! Fabric's semantics are the peer's: writes are sent at once and buffered by the peer's
//! simulator, reads see committed state only. Range and history queries are read to the end
//! (the trait returns whole results), so the peer records each range read as exhausted and
//! every endorsing peer records the same read set. This module never reads a clock or does
//! anything a peer could observe differently from one endorsement to the next.

use std::sync::mpsc as std_mpsc;
use std::time::Duration;

use fabric_shim_protos::peer::chaincode_message::Type;
use fabric_shim_protos::peer::{
    ChaincodeEvent, ChaincodeMessage, DelState, GetHistoryForKey, GetState, GetStateByRange,
    PutState, QueryMetadata, QueryResponse, QueryResponseMetadata, QueryStateClose, QueryStateNext,
};
use fabric_shim_protos::queryresult;
use prost::Message;
use tom_contract::ledger::{KeyModification, KeyValue, LedgerError};
use tom_contract::{Creator, LedgerStub, Timestamp};

use crate::proposal::ProposalContext;

/// Messages to the peer: the sending half of a stream's response channel.
pub(crate) type Outbound = tokio::sync::mpsc::Sender<Result<ChaincodeMessage, tonic::Status>>;

/// Fabric's shim substitutes this for an empty range start so that a plain range query never
/// returns composite keys (which start with `\0`).
const EMPTY_START_SUBSTITUTE: &str = "\u{1}";

/// One transaction's conversation with its peer.
pub(crate) struct PeerLink {
    pub(crate) channel_id: String,
    pub(crate) tx_id: String,
    pub(crate) outbound: Outbound,
    pub(crate) responses: std_mpsc::Receiver<ChaincodeMessage>,
    /// How long to wait for one answer. The peer gives up on the transaction after its own
    /// execute timeout (30 s by default); waiting longer would only leak a blocked thread.
    pub(crate) timeout: Duration,
}

impl PeerLink {
    /// Send one request and wait for the peer's RESPONSE payload.
    fn call(
        &self,
        kind: Type,
        payload: Vec<u8>,
        what: &dyn Fn() -> String,
    ) -> Result<Vec<u8>, LedgerError> {
        let request = ChaincodeMessage {
            r#type: kind as i32,
            payload,
            txid: self.tx_id.clone(),
            channel_id: self.channel_id.clone(),
            ..Default::default()
        };
        self.outbound
            .blocking_send(Ok(request))
            .map_err(|_| LedgerError(format!("{}: the peer's stream is closed", what())))?;
        let reply = match self.responses.recv_timeout(self.timeout) {
            Ok(reply) => reply,
            Err(std_mpsc::RecvTimeoutError::Timeout) => {
                return Err(LedgerError(format!(
                    "{}: no answer from the peer within {:?}",
                    what(),
                    self.timeout
                )))
            }
            Err(std_mpsc::RecvTimeoutError::Disconnected) => {
                return Err(LedgerError(format!(
                    "{}: the peer's stream closed before it answered",
                    what()
                )))
            }
        };
        match Type::try_from(reply.r#type) {
            Ok(Type::Response) => Ok(reply.payload),
            Ok(Type::Error) => Err(LedgerError(format!(
                "{}: the peer refused: {}",
                what(),
                String::from_utf8_lossy(&reply.payload)
            ))),
            _ => Err(LedgerError(format!(
                "{}: the peer answered with {} instead of RESPONSE or ERROR",
                what(),
                type_name(reply.r#type)
            ))),
        }
    }

    /// Read a query iterator to the end: the first QueryResponse, then QUERY_STATE_NEXT while
    /// the peer says there is more. Returns the decoded results and the last response metadata
    /// the peer sent (a paginated query's bookmark comes with its final batch). If a result does
    /// not decode, the iterator is closed on the peer before the error is returned.
    fn drain<T>(
        &self,
        first: Vec<u8>,
        what: &dyn Fn() -> String,
        decode: impl Fn(&[u8]) -> Result<T, prost::DecodeError>,
    ) -> Result<(Vec<T>, Vec<u8>), LedgerError> {
        let mut out = Vec::new();
        let mut metadata = Vec::new();
        let mut payload = first;
        loop {
            let response = QueryResponse::decode(payload.as_slice()).map_err(|e| {
                LedgerError(format!(
                    "{}: the peer's answer is not a QueryResponse: {e}",
                    what()
                ))
            })?;
            for (index, result) in response.results.iter().enumerate() {
                match decode(&result.result_bytes) {
                    Ok(value) => out.push(value),
                    Err(e) => {
                        if response.has_more {
                            self.close(&response.id);
                        }
                        return Err(LedgerError(format!(
                            "{}: result {} of iterator {} does not decode: {e}",
                            what(),
                            out.len() + index,
                            response.id
                        )));
                    }
                }
            }
            if !response.metadata.is_empty() {
                metadata = response.metadata;
            }
            if !response.has_more {
                return Ok((out, metadata));
            }
            if response.results.is_empty() {
                // A peer cuts a batch only when it is full; an empty batch that claims more
                // would loop forever.
                self.close(&response.id);
                return Err(LedgerError(format!(
                    "{}: the peer sent an empty batch that claims more results (iterator {})",
                    what(),
                    response.id
                )));
            }
            let next = QueryStateNext {
                id: response.id.clone(),
            }
            .encode_to_vec();
            payload = self.call(Type::QueryStateNext, next, what)?;
        }
    }

    /// Best effort: the transaction is failing already, so a failed close changes nothing.
    fn close(&self, id: &str) {
        let close = QueryStateClose { id: id.to_owned() }.encode_to_vec();
        let _ = self.call(Type::QueryStateClose, close, &|| {
            format!("QUERY_STATE_CLOSE {id}")
        });
    }
}

/// The ledger stub of one transaction running on a Fabric peer.
pub(crate) struct PeerStub {
    link: PeerLink,
    context: ProposalContext,
    event: Option<ChaincodeEvent>,
}

impl PeerStub {
    pub(crate) fn new(link: PeerLink, context: ProposalContext) -> Self {
        PeerStub {
            link,
            context,
            event: None,
        }
    }

    /// The event to put in the COMPLETED message (Fabric's shim leaves tx and chaincode ids to
    /// the peer).
    pub(crate) fn take_event(&mut self) -> Option<ChaincodeEvent> {
        self.event.take()
    }

    fn range(
        &self,
        start: &str,
        end: &str,
        pagination: Option<QueryMetadata>,
    ) -> Result<(Vec<KeyValue>, Option<QueryResponseMetadata>), LedgerError> {
        let start = if start.is_empty() {
            EMPTY_START_SUBSTITUTE
        } else {
            start
        };
        let paginated = pagination.is_some();
        let request = GetStateByRange {
            start_key: start.to_owned(),
            end_key: end.to_owned(),
            collection: String::new(),
            metadata: pagination.map(|m| m.encode_to_vec()).unwrap_or_default(),
        };
        let what = || format!("GET_STATE_BY_RANGE [{start:?}, {end:?})");
        let first = self
            .link
            .call(Type::GetStateByRange, request.encode_to_vec(), &what)?;
        let (rows, metadata) = self.link.drain(first, &what, |bytes| {
            queryresult::Kv::decode(bytes).map(|kv| KeyValue {
                key: kv.key,
                value: kv.value,
            })
        })?;
        let metadata = if paginated {
            let decoded = QueryResponseMetadata::decode(metadata.as_slice()).map_err(|e| {
                LedgerError(format!(
                    "{}: response metadata does not decode: {e}",
                    what()
                ))
            })?;
            Some(decoded)
        } else {
            None
        };
        Ok((rows, metadata))
    }
}

fn check_key(key: &str, what: &str) -> Result<(), LedgerError> {
    if key.is_empty() {
        return Err(LedgerError(format!("{what}: key must not be empty")));
    }
    Ok(())
}

impl LedgerStub for PeerStub {
    fn tx_id(&self) -> &str {
        &self.link.tx_id
    }

    fn tx_timestamp(&self) -> Timestamp {
        self.context.timestamp
    }

    fn creator(&self) -> &Creator {
        &self.context.creator
    }

    fn channel_id(&self) -> &str {
        &self.link.channel_id
    }

    fn get_state(&self, key: &str) -> Result<Option<Vec<u8>>, LedgerError> {
        check_key(key, "GET_STATE")?;
        let request = GetState {
            key: key.to_owned(),
            collection: String::new(),
        };
        let value = self
            .link
            .call(Type::GetState, request.encode_to_vec(), &|| {
                format!("GET_STATE {key:?}")
            })?;
        // The peer answers an absent key with an empty payload (Fabric stores no empty values).
        Ok((!value.is_empty()).then_some(value))
    }

    fn put_state(&mut self, key: &str, value: Vec<u8>) -> Result<(), LedgerError> {
        check_key(key, "PUT_STATE")?;
        if value.is_empty() {
            // Same rule as the simulator in tom-contract: an empty value would read back as
            // "absent", so a delete is the only way to remove a key.
            return Err(LedgerError(format!("PUT_STATE {key:?}: empty value")));
        }
        let request = PutState {
            key: key.to_owned(),
            value,
            collection: String::new(),
        };
        self.link
            .call(Type::PutState, request.encode_to_vec(), &|| {
                format!("PUT_STATE {key:?}")
            })?;
        Ok(())
    }

    fn delete_state(&mut self, key: &str) -> Result<(), LedgerError> {
        check_key(key, "DEL_STATE")?;
        let request = DelState {
            key: key.to_owned(),
            collection: String::new(),
        };
        self.link
            .call(Type::DelState, request.encode_to_vec(), &|| {
                format!("DEL_STATE {key:?}")
            })?;
        Ok(())
    }

    fn get_state_by_range(&self, start: &str, end: &str) -> Result<Vec<KeyValue>, LedgerError> {
        Ok(self.range(start, end, None)?.0)
    }

    fn get_state_by_range_with_pagination(
        &self,
        start: &str,
        end: &str,
        page_size: u32,
        bookmark: &str,
    ) -> Result<(Vec<KeyValue>, String), LedgerError> {
        let page_size = i32::try_from(page_size).map_err(|_| {
            LedgerError(format!(
                "page size {page_size} is larger than Fabric allows"
            ))
        })?;
        let pagination = QueryMetadata {
            page_size,
            bookmark: bookmark.to_owned(),
        };
        let (rows, metadata) = self.range(start, end, Some(pagination))?;
        Ok((rows, metadata.map(|m| m.bookmark).unwrap_or_default()))
    }

    fn get_history_for_key(&self, key: &str) -> Result<Vec<KeyModification>, LedgerError> {
        check_key(key, "GET_HISTORY_FOR_KEY")?;
        let what = || format!("GET_HISTORY_FOR_KEY {key:?}");
        let request = GetHistoryForKey {
            key: key.to_owned(),
        };
        let first = self
            .link
            .call(Type::GetHistoryForKey, request.encode_to_vec(), &what)?;
        let (mut history, _) = self.link.drain(first, &what, |bytes| {
            queryresult::KeyModification::decode(bytes).map(|m| {
                let timestamp = m.timestamp.unwrap_or_default();
                KeyModification {
                    tx_id: m.tx_id,
                    timestamp: Timestamp {
                        seconds: timestamp.seconds,
                        nanos: timestamp.nanos,
                    },
                    value: m.value,
                    is_delete: m.is_delete,
                }
            })
        })?;
        // Since Fabric v2.0 the peer returns history newest first (by block and transaction
        // height); the stub trait promises oldest first, as the gateway's embedded ledger
        // returns it.
        history.reverse();
        Ok(history)
    }

    fn set_event(&mut self, name: &str, payload: Vec<u8>) -> Result<(), LedgerError> {
        if name.is_empty() {
            return Err(LedgerError("event name must not be empty".into()));
        }
        self.event = Some(ChaincodeEvent {
            event_name: name.to_owned(),
            payload,
            ..Default::default()
        });
        Ok(())
    }
}

/// The protocol name of a message type, for log and error messages.
pub(crate) fn type_name(kind: i32) -> String {
    match Type::try_from(kind) {
        Ok(t) => t.as_str_name().to_owned(),
        Err(_) => format!("unknown message type {kind}"),
    }
}
