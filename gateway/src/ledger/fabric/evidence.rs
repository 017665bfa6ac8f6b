//! Evidence bundles from Fabric (format: [`crate::evidence::fabric`]).
//!
//! The lineage and its PROV-JSON come from endorsing (never submitting) the GetLineage and
//! ExportProv proposals at one timestamp: the endorsed read set says which state keys the query
//! read and at which version (block, transaction number). Those transactions, plus every
//! transaction the lineage names, are fetched from the ledger query system chaincode exactly as
//! the peers hold them (`GetTransactionByID`, `GetBlockByNumber` / `GetBlockByTxID`), with the
//! channel's latest config block (the LAST_CONFIG index of the newest block's metadata).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;
use tom_contract::transaction::Transaction as _;

use base64::Engine;
use prost::Message;
use tom_contract::requests::LineageQuery;

use super::protos::{common, gateway, kvrwset, peer, rwset};
use super::{proposal, request, FabricLedger};
use crate::evidence::fabric::{FabricBlock, FabricProof, FabricTransaction};
use crate::evidence::{b64, tx_ids_in, Bundle, LedgerProof, Query, StateEntry, FORMAT, VERSION};
use crate::ledger::{LedgerError, SigningIdentity};

fn internal(context: &str, e: impl std::fmt::Display) -> LedgerError {
    LedgerError::Internal(format!("evidence: {context}: {e}"))
}

/// What an endorsed, unsubmitted query gave: its result and the state it read.
struct Endorsed {
    result: Vec<u8>,
    reads: Vec<(String, u64, u64)>,
}

/// The chaincode action an endorser transaction's payload data carries: transaction → first
/// action → endorsed action → proposal response payload → its extension.
pub(super) fn chaincode_action(payload_data: &[u8]) -> Result<peer::ChaincodeAction, String> {
    let transaction = peer::Transaction::decode(payload_data).map_err(|e| e.to_string())?;
    let action = transaction.actions.first().ok_or("no action")?;
    let action_payload = peer::ChaincodeActionPayload::decode(action.payload.as_slice())
        .map_err(|e| e.to_string())?;
    let endorsed = action_payload.action.ok_or("no endorsed action")?;
    let response =
        peer::ProposalResponsePayload::decode(endorsed.proposal_response_payload.as_slice())
            .map_err(|e| e.to_string())?;
    peer::ChaincodeAction::decode(response.extension.as_slice()).map_err(|e| e.to_string())
}

/// The endorsed action of an envelope: its response payload and the chaincode namespace's
/// key-value read-write set.
fn endorsed_action(
    envelope: &common::Envelope,
    chaincode: &str,
) -> Result<(Vec<u8>, Option<kvrwset::KvrwSet>), String> {
    let payload =
        common::Payload::decode(envelope.payload.as_slice()).map_err(|e| e.to_string())?;
    let chaincode_action = chaincode_action(&payload.data)?;
    let results = rwset::TxReadWriteSet::decode(chaincode_action.results.as_slice())
        .map_err(|e| e.to_string())?;
    let mut kv = None;
    for ns in results.ns_rwset.iter().filter(|n| n.namespace == chaincode) {
        kv = Some(kvrwset::KvrwSet::decode(ns.rwset.as_slice()).map_err(|e| e.to_string())?);
    }
    Ok((
        chaincode_action
            .response
            .map(|r| r.payload)
            .unwrap_or_default(),
        kv,
    ))
}

fn tx_id_of(envelope_bytes: &[u8]) -> Option<String> {
    let envelope = common::Envelope::decode(envelope_bytes).ok()?;
    let payload = common::Payload::decode(envelope.payload.as_slice()).ok()?;
    let header = common::ChannelHeader::decode(payload.header?.channel_header.as_slice()).ok()?;
    Some(header.tx_id)
}

impl FabricLedger {
    async fn qscc(
        &self,
        identity: &SigningIdentity,
        args: &[&[u8]],
    ) -> Result<Vec<u8>, LedgerError> {
        let nonce = self.nonce()?;
        let proposed = proposal::signed_invocation(
            identity,
            &self.channel,
            "qscc",
            args,
            &nonce,
            self.timestamp(),
        );
        let evaluate = gateway::EvaluateRequest {
            transaction_id: proposed.tx_id,
            channel_id: self.channel.clone(),
            proposed_transaction: Some(proposed.proposal),
            target_organizations: Vec::new(),
        };
        let timeout = self.timeouts.evaluate().max(Duration::from_secs(10));
        let what = format!("qscc {}", String::from_utf8_lossy(args[0]));
        let (evaluated, _) = self
            .shared
            .on_peers("evaluate", &what, timeout, |mut c| {
                let r = request(evaluate.clone(), timeout);
                async move { c.evaluate(r).await }
            })
            .await
            .map_err(|f| f.error)?;
        let result = evaluated
            .result
            .ok_or_else(|| internal(&what, "the peer returned no result"))?;
        if result.status != 200 {
            return Err(internal(
                &what,
                format!("status {}: {}", result.status, result.message),
            ));
        }
        Ok(result.payload)
    }

    pub(super) async fn block(
        &self,
        identity: &SigningIdentity,
        number: u64,
    ) -> Result<Vec<u8>, LedgerError> {
        self.qscc(
            identity,
            &[
                b"GetBlockByNumber",
                self.channel.as_bytes(),
                number.to_string().as_bytes(),
            ],
        )
        .await
    }

    /// Endorse `function(argument)` without submitting it.
    async fn endorse_only(
        &self,
        identity: &SigningIdentity,
        function: &str,
        argument: &[u8],
        timestamp: super::protos::Timestamp,
    ) -> Result<Endorsed, LedgerError> {
        let nonce = self.nonce()?;
        let proposed = proposal::signed_proposal(
            identity,
            &self.channel,
            &self.chaincode,
            function,
            argument,
            &nonce,
            timestamp,
        );
        let (envelope, _) = self
            .endorse(proposed, &format!("endorse {function} (evidence)"))
            .await?;
        let (result, kv) =
            endorsed_action(&envelope, &self.chaincode).map_err(|e| internal(function, e))?;
        let mut reads = Vec::new();
        if let Some(kv) = kv {
            for read in kv.reads {
                if let Some(v) = read.version {
                    reads.push((read.key, v.block_num, v.tx_num));
                }
            }
            for range in kv.range_queries_info {
                use kvrwset::range_query_info::ReadsInfo;
                match range.reads_info {
                    Some(ReadsInfo::RawReads(raw)) => {
                        for read in raw.kv_reads {
                            if let Some(v) = read.version {
                                reads.push((read.key, v.block_num, v.tx_num));
                            }
                        }
                    }
                    Some(ReadsInfo::ReadsMerkleHashes(_)) => {
                        return Err(internal(
                            function,
                            format!(
                                "the peer summarised the range {:?}..{:?} as a Merkle hash: too \
                                 many keys for an evidence bundle",
                                range.start_key, range.end_key
                            ),
                        ))
                    }
                    None => {}
                }
            }
        }
        Ok(Endorsed { result, reads })
    }

    pub(super) async fn build_evidence(
        &self,
        identity: &SigningIdentity,
        query: &LineageQuery,
    ) -> Result<Bundle, LedgerError> {
        let argument = serde_json::to_vec(query).map_err(|e| internal("query", e))?;
        let now = self.timestamp();
        let lineage = self
            .endorse_only(
                identity,
                tom_contract::requests::GetLineage::NAME,
                &argument,
                now,
            )
            .await?;
        let prov = self
            .endorse_only(
                identity,
                tom_contract::requests::ExportProv::NAME,
                &argument,
                now,
            )
            .await?;
        let lineage_json: serde_json::Value =
            serde_json::from_slice(&lineage.result).map_err(|e| internal("lineage", e))?;
        let prov_json: serde_json::Value =
            serde_json::from_slice(&prov.result).map_err(|e| internal("prov", e))?;

        let mut state = BTreeSet::new();
        for (key, block, tx) in lineage.reads.into_iter().chain(prov.reads) {
            let tx = u32::try_from(tx).map_err(|e| internal("read version", e))?;
            state.insert(StateEntry { key, block, tx });
        }

        // Blocks: those the reads name, and those holding the transactions the lineage names.
        let mut blocks: BTreeMap<u64, common::Block> = BTreeMap::new();
        let mut raw_blocks: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
        let mut positions: BTreeSet<(u64, u32)> = state.iter().map(|e| (e.block, e.tx)).collect();
        for number in positions.iter().map(|p| p.0).collect::<BTreeSet<_>>() {
            let bytes = self.block(identity, number).await?;
            let block = common::Block::decode(bytes.as_slice())
                .map_err(|e| internal(&format!("block {number}"), e))?;
            blocks.insert(number, block);
            raw_blocks.insert(number, bytes);
        }
        let mut named = BTreeSet::new();
        tx_ids_in(&lineage_json, &mut named);
        let find = |blocks: &BTreeMap<u64, common::Block>, tx_id: &str| {
            blocks.iter().find_map(|(n, b)| {
                b.data
                    .as_ref()?
                    .data
                    .iter()
                    .position(|e| tx_id_of(e).as_deref() == Some(tx_id))
                    .map(|i| (*n, i as u32))
            })
        };
        for tx_id in &named {
            if let Some(p) = find(&blocks, tx_id) {
                positions.insert(p);
                continue;
            }
            let bytes = self
                .qscc(
                    identity,
                    &[b"GetBlockByTxID", self.channel.as_bytes(), tx_id.as_bytes()],
                )
                .await?;
            let block = common::Block::decode(bytes.as_slice())
                .map_err(|e| internal(&format!("block of {tx_id}"), e))?;
            let number = block.header.as_ref().map(|h| h.number).unwrap_or_default();
            blocks.insert(number, block);
            raw_blocks.insert(number, bytes);
            let p = find(&blocks, tx_id)
                .ok_or_else(|| internal(tx_id, "not in the block qscc returned"))?;
            positions.insert(p);
        }

        let record_of =
            |envelope_bytes: &[u8], tx_id: &str| -> Result<serde_json::Value, LedgerError> {
                let envelope =
                    common::Envelope::decode(envelope_bytes).map_err(|e| internal(tx_id, e))?;
                let (_, kv) =
                    endorsed_action(&envelope, &self.chaincode).map_err(|e| internal(tx_id, e))?;
                let key = tom_contract::keys::key(tom_contract::keys::RECORD, &[tx_id])
                    .map_err(|e| internal("record key", e.0))?;
                Ok(kv
                    .and_then(|kv| kv.writes.into_iter().find(|w| w.key == key && !w.is_delete))
                    .and_then(|w| serde_json::from_slice(&w.value).ok())
                    .unwrap_or(serde_json::Value::Null))
            };
        let mut transactions = Vec::new();
        let mut records = Vec::new();
        for (number, index) in &positions {
            let envelope = blocks
                .get(number)
                .and_then(|b| b.data.as_ref())
                .and_then(|d| d.data.get(*index as usize))
                .ok_or_else(|| {
                    internal(
                        &format!("block {number}"),
                        format!("no transaction {index}"),
                    )
                })?;
            let tx_id = tx_id_of(envelope).ok_or_else(|| {
                internal(&format!("block {number} tx {index}"), "no transaction id")
            })?;
            let processed = self
                .qscc(
                    identity,
                    &[
                        b"GetTransactionByID",
                        self.channel.as_bytes(),
                        tx_id.as_bytes(),
                    ],
                )
                .await?;
            records.push(record_of(envelope, &tx_id)?);
            transactions.push(FabricTransaction {
                tx_id,
                block: *number,
                index: *index,
                processed: b64().encode(processed),
            });
        }

        // The channel's latest configuration, as the newest block names it.
        let info = self
            .qscc(identity, &[b"GetChainInfo", self.channel.as_bytes()])
            .await?;
        let height = common::BlockchainInfo::decode(info.as_slice())
            .map_err(|e| internal("chain info", e))?
            .height;
        let newest = common::Block::decode(
            self.block(identity, height.saturating_sub(1))
                .await?
                .as_slice(),
        )
        .map_err(|e| internal("newest block", e))?;
        let last_config = newest
            .metadata
            .as_ref()
            .and_then(|m| m.metadata.first())
            .and_then(|m| common::Metadata::decode(m.as_slice()).ok())
            .and_then(|m| common::OrdererBlockMetadata::decode(m.value.as_slice()).ok())
            .and_then(|m| m.last_config)
            .map(|l| l.index)
            .ok_or_else(|| internal("newest block", "no LAST_CONFIG index in its metadata"))?;
        let config_block = self.block(identity, last_config).await?;

        let creator = identity.creator();
        let creator_certificate_pem = String::from_utf8(creator.certificate_pem)
            .map_err(|e| internal("creator certificate", e))?;
        let timestamp = tom_contract::Timestamp {
            seconds: now.seconds,
            nanos: now.nanos,
        }
        .to_rfc3339();
        Ok(Bundle {
            format: FORMAT.into(),
            version: VERSION,
            subject: query.id.clone(),
            created: timestamp.clone(),
            query: Query {
                argument: query.clone(),
                timestamp,
                creator_msp_id: creator.msp_id,
                creator_certificate_pem,
            },
            lineage: lineage_json,
            prov: prov_json,
            records,
            state: state.into_iter().collect(),
            ledger: LedgerProof::Fabric(FabricProof {
                channel: self.channel.clone(),
                chaincode: self.chaincode.clone(),
                config_block: b64().encode(config_block),
                blocks: raw_blocks
                    .into_iter()
                    .map(|(number, bytes)| FabricBlock {
                        number,
                        block: b64().encode(bytes),
                    })
                    .collect(),
                transactions,
            }),
        })
    }
}
