//! Evidence bundles from the embedded ledger (format: [`crate::evidence`]).
//!
//! One redb read transaction gives the state the lineage query runs on and the blocks the proof
//! is cut from, so the two agree. The query runs in a [`TxSimulator`], whose read set says which
//! state keys it read and which transaction (block, index) wrote each value: those transactions,
//! plus every transaction the lineage names, go into the bundle with the headers from the oldest
//! of their blocks to the newest block and the node's signature on the newest one.

use std::collections::BTreeSet;
use tom_contract::transaction::Transaction as _;

use base64::Engine;
use tom_contract::requests::LineageQuery;
use tom_contract::simulation::TxSimulator;
use tom_contract::{Creator, Timestamp};

use super::codec::{RawBlock, Transaction};
use super::store::{self, Snapshot};
use crate::evidence::{
    b64, tx_ids_in, Bundle, EmbeddedBlock, EmbeddedProof, EmbeddedTransaction, LedgerProof, Query,
    StateEntry, FORMAT, VERSION,
};
use crate::ledger::LedgerError;

fn internal(context: &str, e: impl std::fmt::Display) -> LedgerError {
    LedgerError::Internal(format!("evidence: {context}: {e}"))
}

/// Build the bundle for `query`, run as `creator` at `now` (blocking: reads the store).
pub(super) fn build(
    db: &redb::Database,
    public_key_pem: &str,
    creator: Creator,
    query: LineageQuery,
    now: Timestamp,
) -> Result<Bundle, LedgerError> {
    use redb::ReadableDatabase;
    let txn = db.begin_read().map_err(|e| internal("begin read", e))?;
    let snapshot = Snapshot::of(&txn).map_err(|e| LedgerError::Internal(e.0))?;
    let blocks = txn
        .open_table(store::BLOCKS)
        .map_err(|e| internal("open blocks", e))?;
    let certs = txn
        .open_table(store::CERTS)
        .map_err(|e| internal("open certs", e))?;

    let argument = serde_json::to_vec(&query).map_err(|e| internal("query", e))?;
    let mut simulator = TxSimulator::new(&snapshot, "evidence", now, creator.clone());
    let lineage = tom_contract::invoke(
        &mut simulator,
        tom_contract::requests::GetLineage::NAME,
        &[&argument],
    )?;
    let prov = tom_contract::invoke(
        &mut simulator,
        tom_contract::requests::ExportProv::NAME,
        &[&argument],
    )?;
    let rwset = simulator.into_rwset();
    let lineage: serde_json::Value =
        serde_json::from_slice(&lineage).map_err(|e| internal("lineage", e))?;
    let prov: serde_json::Value = serde_json::from_slice(&prov).map_err(|e| internal("prov", e))?;

    // What the query read, and where each value came from.
    let mut state = BTreeSet::new();
    for (key, version) in &rwset.reads {
        if let Some(v) = version {
            state.insert(StateEntry {
                key: key.clone(),
                block: v.block,
                tx: v.tx,
            });
        }
    }
    for range in &rwset.range_reads {
        for (key, v) in &range.seen {
            state.insert(StateEntry {
                key: key.clone(),
                block: v.block,
                tx: v.tx,
            });
        }
    }
    let mut positions: BTreeSet<(u64, u32)> = state.iter().map(|e| (e.block, e.tx)).collect();
    // Every transaction the lineage names (relations, stamps).
    let mut named = BTreeSet::new();
    tx_ids_in(&lineage, &mut named);
    for tx_id in &named {
        if let Some((block, index, _)) = snapshot
            .tx_status(tx_id)
            .map_err(|e| LedgerError::Internal(e.0))?
        {
            positions.insert((block, index));
        }
    }

    let tip = store::last_block_number(&blocks)
        .map_err(|e| internal("read blocks", e))?
        .ok_or_else(|| internal("read blocks", "the block log is empty"))?;
    let first = positions.iter().map(|(b, _)| *b).min().unwrap_or(tip);

    let mut transactions = Vec::new();
    let mut records = Vec::new();
    let mut headers = Vec::new();
    let mut wanted = positions.iter().peekable();
    for row in store::StoredBlocks::from(&blocks, first).map_err(|e| internal("read blocks", e))? {
        let (number, bytes) = row.map_err(|e| internal("read blocks", e))?;
        if number > tip {
            break;
        }
        let bytes = store::expand_block(&certs, &bytes)
            .map_err(|e| internal(&format!("block {number}"), e))?;
        let raw = RawBlock::decode(&bytes).map_err(|e| internal(&format!("block {number}"), e))?;
        while let Some(&&(block, index)) = wanted.peek() {
            if block != number {
                break;
            }
            wanted.next();
            let tx_bytes = raw.transactions.get(index as usize).ok_or_else(|| {
                internal(
                    &format!("block {number}"),
                    format!("no transaction {index}"),
                )
            })?;
            let tx = Transaction::decode(tx_bytes)
                .map_err(|e| internal(&format!("block {number} tx {index}"), e))?;
            let record_key =
                tom_contract::keys::key(tom_contract::keys::RECORD, &[&tx.proposal.tx_id])
                    .map_err(|e| internal("record key", e.0))?;
            let record = match tx.rwset.writes.get(&record_key) {
                Some(Some(value)) => serde_json::from_slice(value)
                    .map_err(|e| internal(&format!("record of {}", tx.proposal.tx_id), e))?,
                _ => serde_json::Value::Null,
            };
            records.push(record);
            transactions.push(EmbeddedTransaction {
                tx_id: tx.proposal.tx_id.clone(),
                block: number,
                index,
                bytes: b64().encode(tx_bytes),
            });
        }
        headers.push(EmbeddedBlock {
            number,
            header: b64().encode(raw.header_bytes),
            signature: (number == tip).then(|| b64().encode(raw.signature)),
        });
    }

    let creator_certificate_pem = String::from_utf8(creator.certificate_pem)
        .map_err(|e| internal("creator certificate", e))?;
    Ok(Bundle {
        format: FORMAT.into(),
        version: VERSION,
        subject: query.id.clone(),
        created: now.to_rfc3339(),
        query: Query {
            argument: query,
            timestamp: now.to_rfc3339(),
            creator_msp_id: creator.msp_id,
            creator_certificate_pem,
        },
        lineage,
        prov,
        records,
        state: state.into_iter().collect::<Vec<_>>(),
        ledger: LedgerProof::Embedded(EmbeddedProof {
            node_public_key_pem: public_key_pem.to_owned(),
            transactions,
            blocks: headers,
        }),
    })
}
