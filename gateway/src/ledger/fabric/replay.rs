//! Where a resumed event stream starts: the check that a resume point `<block>.<tx_id>` names a
//! committed chaincode event of this chaincode in that block.
//!
//! A Fabric Gateway's `ChaincodeEvents` with `after_transaction_id` skips the start block's
//! events up to that transaction and does not say when the transaction is not there, so a
//! consumer holding an id from elsewhere (another channel, another ledger, a transaction of
//! another block) would get a replay that silently starts at the wrong place. The block comes
//! from the ledger query system chaincode (`qscc GetBlockByNumber`) and the check is the
//! embedded ledger's: the transaction is in the block, VALID (the block's TRANSACTIONS_FILTER),
//! and its endorsed action carries this chaincode's event. A refusal is
//! [`crate::ledger::no_committed_event`], the same 400 on every back end.

use prost::Message;

use super::protos::{common, peer};
use super::FabricLedger;
use crate::ledger::{no_committed_event, LedgerError};

/// Block metadata index of the per-transaction validation codes (common.BlockMetadataIndex).
const TRANSACTIONS_FILTER: usize = 2;

/// Why transaction `tx_id` has no event of `chaincode` in `block` (Fabric's encoding), or `Ok`
/// when it has one. `Err(None)`: the transaction is not in the block.
pub(super) fn event_in_block(
    block: &[u8],
    tx_id: &str,
    chaincode: &str,
) -> Result<(), Option<String>> {
    let block = common::Block::decode(block).map_err(|e| Some(format!("not a block: {e}")))?;
    let envelopes = block.data.map(|d| d.data).unwrap_or_default();
    let mut found = None;
    for (index, bytes) in envelopes.iter().enumerate() {
        if let Some(action) = chaincode_action_of(bytes, tx_id) {
            found = Some((index, action));
            break;
        }
    }
    let (index, action) = found.ok_or(None)?;
    let code = block
        .metadata
        .and_then(|m| m.metadata.get(TRANSACTIONS_FILTER).cloned())
        .and_then(|filter| filter.get(index).copied());
    match code {
        Some(code) if i32::from(code) == peer::TxValidationCode::Valid as i32 => {}
        Some(code) => {
            return Err(Some(format!(
                "the transaction is {}, so it committed no event",
                super::errors::validation_code_name(i32::from(code))
            )))
        }
        None => {
            return Err(Some(
                "the block has no validation code for the transaction".into(),
            ))
        }
    }
    let action = action.map_err(Some)?;
    let event = peer::ChaincodeEvent::decode(action.events.as_slice())
        .map_err(|e| Some(format!("its chaincode event does not decode: {e}")))?;
    if event.chaincode_id != chaincode || event.event_name.is_empty() {
        return Err(Some(format!(
            "the transaction emitted no event of chaincode {chaincode}"
        )));
    }
    Ok(())
}

/// The chaincode action of the envelope `bytes` if it is transaction `tx_id` (`None`: another
/// transaction or not a transaction); `Some(Err)` when it is `tx_id` but its action does not
/// decode as an endorser transaction's.
fn chaincode_action_of(bytes: &[u8], tx_id: &str) -> Option<Result<peer::ChaincodeAction, String>> {
    let envelope = common::Envelope::decode(bytes).ok()?;
    let payload = common::Payload::decode(envelope.payload.as_slice()).ok()?;
    let header = common::ChannelHeader::decode(payload.header?.channel_header.as_slice()).ok()?;
    if header.tx_id != tx_id {
        return None;
    }
    Some(
        super::evidence::chaincode_action(&payload.data)
            .map_err(|e| format!("not a chaincode transaction: {e}")),
    )
}

impl FabricLedger {
    /// A 400 unless transaction `tx_id` of block `block` (below the channel height) committed an
    /// event of this chaincode.
    pub(super) async fn check_resume_point(
        &self,
        block: u64,
        tx_id: &str,
    ) -> Result<(), LedgerError> {
        let bytes = self.block(&self.default_identity, block).await?;
        match event_in_block(&bytes, tx_id, &self.chaincode) {
            Ok(()) => Ok(()),
            Err(None) => Err(no_committed_event(block, tx_id)),
            Err(Some(why)) => match no_committed_event(block, tx_id) {
                LedgerError::Rejected { status, message } => Err(LedgerError::Rejected {
                    status,
                    message: format!("{message} ({why})"),
                }),
                other => Err(other),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A block of Fabric's shape: one envelope per (tx id, chaincode event), with the codes as
    /// its TRANSACTIONS_FILTER.
    fn block(txs: &[(&str, Option<(&str, &str)>)], codes: &[u8]) -> Vec<u8> {
        let data = txs
            .iter()
            .map(|(tx_id, event)| {
                let events = event
                    .map(|(chaincode, name)| {
                        peer::ChaincodeEvent {
                            chaincode_id: chaincode.into(),
                            tx_id: (*tx_id).into(),
                            event_name: name.into(),
                            payload: b"{}".to_vec(),
                        }
                        .encode_to_vec()
                    })
                    .unwrap_or_default();
                let extension = peer::ChaincodeAction {
                    events,
                    ..Default::default()
                }
                .encode_to_vec();
                let action = peer::ChaincodeActionPayload {
                    chaincode_proposal_payload: Vec::new(),
                    action: Some(peer::ChaincodeEndorsedAction {
                        proposal_response_payload: peer::ProposalResponsePayload {
                            proposal_hash: Vec::new(),
                            extension,
                        }
                        .encode_to_vec(),
                        endorsements: Vec::new(),
                    }),
                };
                let payload = common::Payload {
                    header: Some(common::Header {
                        channel_header: common::ChannelHeader {
                            tx_id: (*tx_id).into(),
                            ..Default::default()
                        }
                        .encode_to_vec(),
                        signature_header: Vec::new(),
                    }),
                    data: peer::Transaction {
                        actions: vec![peer::TransactionAction {
                            header: Vec::new(),
                            payload: action.encode_to_vec(),
                        }],
                    }
                    .encode_to_vec(),
                };
                common::Envelope {
                    payload: payload.encode_to_vec(),
                    signature: Vec::new(),
                }
                .encode_to_vec()
            })
            .collect();
        common::Block {
            header: Some(common::BlockHeader {
                number: 7,
                ..Default::default()
            }),
            data: Some(common::BlockData { data }),
            metadata: Some(common::BlockMetadata {
                metadata: vec![Vec::new(), Vec::new(), codes.to_vec()],
            }),
        }
        .encode_to_vec()
    }

    fn check(tx_id: &str, expected: Result<(), Option<&str>>) {
        const MVCC: u8 = peer::TxValidationCode::MvccReadConflict as u8;
        let bytes = block(
            &[
                ("a1", Some(("tom", "PROV-DATA"))),
                ("b2", Some(("tom", "ORCHESTRATE"))),
                ("c3", Some(("other", "X"))),
                ("d4", None),
                ("e5", Some(("tom", "DRIFT"))),
            ],
            &[0, 0, 0, 0, MVCC],
        );
        let got = event_in_block(&bytes, tx_id, "tom");
        match (&got, expected) {
            (Ok(()), Ok(())) | (Err(None), Err(None)) => {}
            (Err(Some(why)), Err(Some(part))) if why.contains(part) => {}
            _ => panic!("{tx_id}: got {got:?}, expected {expected:?}"),
        }
    }

    #[test]
    fn a_resume_point_must_be_a_valid_event_of_the_chaincode_in_that_block() {
        check("a1", Ok(()));
        check("b2", Ok(()));
        check("zz", Err(None));
        check("c3", Err(Some("no event of chaincode tom")));
        check("d4", Err(Some("no event of chaincode tom")));
        check("e5", Err(Some("MVCC_READ_CONFLICT")));
        assert!(matches!(
            event_in_block(b"\xff\xff", "a1", "tom"),
            Err(Some(why)) if why.starts_with("not a block")
        ));
    }
}
