//! The redb tables of the embedded ledger and the contract's view of them.
//!
//! One redb file (`ledger.redb` in the data directory) holds everything, so one write transaction
//! commits a block atomically with the world state, key history and transaction index it
//! produces: after a crash either all of a block is there or none of it.
//!
//! | table         | key                          | value                                                |
//! |---------------|------------------------------|------------------------------------------------------|
//! | `block_chunks` | `(block number, chunk index)` | the block, stored compressed (below), in chunks of at most [`BLOCK_CHUNK`] bytes |
//! | `certs`       | SHA-256 of a certificate     | the creator certificate (PEM), once per certificate  |
//! | `world_state_packed` | key, packed ([`super::state_key`]) | `varint block ‖ varint tx ‖ u8 encoding ‖ bytes`: the version that wrote it, then the value ([`encode_versioned`]) |
//! | `key_history` | `(key hash u128, block, tx)` | `u8 is_delete ‖ 16 bytes of the value's SHA-256`, for keys that changed; the rest is in the transaction at `(block, tx)` |
//! | `tx_ids_packed` | transaction id as 32 bytes | `(block, tx index, validation code)`                 |
//! | `meta`        | `"format"`, `"value_dictionary"` | [`FORMAT_VERSION`] of this layout; the id of the dictionary new values are compressed with |
//! | `value_dictionaries` | dictionary id (`u64`) | a zstd dictionary trained on this ledger's values ([`super::dictionary`]) |
//!
//! The block log is the record; the world state, `key_history` and the transaction index are
//! indexes derived from it (a Fabric peer's state and history databases), kept in the same file
//! so they never disagree, and `tom verify` re-derives them from the log.
//!
//! # Why this layout (format 5)
//!
//! Every change here is to how bytes are stored, never to what is hashed or signed: readers get
//! the canonical bytes ([`super::codec`]) back, so verification, evidence bundles and event
//! replay are unchanged. The scale bench (`cargo bench -p tom-gateway --bench scale`) prints
//! where each record's bytes go; these choices follow its figures.
//!
//! * **Blocks** (format 2, then 3): the creator's certificate (~0.8 KB of PEM, the same few
//!   certificates over and over) is cut out of each transaction and named by its SHA-256 (kept
//!   once in `certs`), and the rest is compressed with zstd:
//!   `"TOMC" 1 ‖ u32 n ‖ (u32 offset ‖ hash certificate)* ‖ bytes zstd(canonical without them)`.
//!   A transaction carries its record's JSON several times (argument, written value, event,
//!   response) and its transaction id in every index key, so a block compresses about 9:1
//!   (5.8 KB → 0.64 KB per record in the bench). [`expand_block`] restores the canonical bytes;
//!   a changed certificate or a damaged frame breaks the transaction's hash in the signed header
//!   as before. Format 2's `"TOMZ"` blocks (cut, not compressed) and format 1's canonical
//!   `"TOMB"` blocks are read as they are.
//! * **World state values**: one byte says how the value is kept. An index entry whose value
//!   repeats its key's last attribute (the time-ordered record indexes end with the transaction
//!   id they hold) stores nothing more; another transaction id (64 lowercase hex digits: the
//!   other index entries' values) is kept as its 32 bytes; a value of 160 bytes or more (the
//!   entities and records, JSON with signed envelopes) is compressed with zstd when that is
//!   smaller, from format 4 with a dictionary trained on the ledger's own values once the
//!   committer has seen enough of them (about a third of the size; [`super::dictionary`]);
//!   anything else is kept as it is.
//! * **History** holds entries only for keys that changed. Most keys are written once and never
//!   changed (the contract's indexes and records: about four writes in five), and such a key's
//!   one change is its state version, so it needs no entry until it changes: then its first
//!   write gets its entry from the state's old version and value, and every change after adds
//!   its own ([`record_write`]); a delete always leaves entries. An entry keeps only whether it
//!   was a delete and a hash of the value, keyed by a 128-bit hash of the key (28 bytes of key
//!   whatever the key's length); [`history_of`] reads the transaction id, timestamp and value
//!   from the transaction at `(block, tx)`, as a Fabric peer's history database points into its
//!   block store, and skips an entry whose transaction did not write the key (a hash collision,
//!   never seen). This halves the B-tree inserts of the single committer thread per
//!   transaction, which is what kept ingest from staying flat as the ledger grew.
//! * Writes are prepared (packed key, key hash, encoded value, history entry) and each
//!   transaction's bytes encoded and hashed while it is endorsed, on any core
//!   ([`PreparedWrite`]); the single committer thread only places them.
//! * **Format 5: narrower keys, fuller pages.** World-state keys are stored packed
//!   ([`super::state_key`]: a type code instead of the type's name, transaction ids and
//!   certificate hashes as their 32 bytes, sortable timestamps as 8), which keeps the order of
//!   the contract's ranges; the transaction index is keyed by the id's 32 bytes; a value's
//!   version is two varints instead of 12 bytes; and blocks are stored in chunks of
//!   [`BLOCK_CHUNK`] bytes, four to a 4 KiB page, because redb puts a value larger than a page
//!   in one page of the next power of two (a 19 KB block in 32 KiB). At 100,000 records this
//!   took the store from 3,352 to about 2,240 bytes per record.
//!
//! A store of format 1 (no `meta` table) to 4 is migrated in place when the ledger opens
//! ([`upgrade`]), in batches, resumably; `tom verify` only reads, so it refuses an old format
//! and says to start `tom serve` once. A store of a newer format is refused with a message
//! naming both versions.

use std::collections::HashMap;

use redb::{ReadableTable, TableDefinition};
use tom_contract::ledger::{KeyModification, LedgerError as StubError};
use tom_contract::simulation::{CommittedState, Version, VersionedValue};
use tom_contract::Timestamp;

use super::codec::{self, sha256, Hash, RawBlock, Reader, Transaction, Writer};
use super::dictionary::ValueDictionary;
use super::state_key::{self, is_lower_hex_64};

/// The block log (format 5): each stored block cut into chunks of at most [`BLOCK_CHUNK`]
/// bytes, keyed `(block number, chunk index)` ([`put_block`], [`stored_block`], [`StoredBlocks`]).
pub const BLOCKS: TableDefinition<(u64, u32), &[u8]> = TableDefinition::new("block_chunks");
/// Formats 1 to 4's block log: block number → the whole stored block. Read by [`upgrade`] only
/// (and by tests that make old stores).
pub const BLOCKS_FORMAT_4: TableDefinition<u64, &[u8]> = TableDefinition::new("blocks");
/// The largest chunk of a stored block. redb keeps a value inside one page sized to the next
/// power of two, so a whole block (about 19 KB compressed at 30 transactions) took a 32 KiB
/// page: a third of the block log's bytes were empty page. Four chunks of 1,000 bytes with
/// their 12-byte keys and offsets fit one 4 KiB leaf page, so appended chunks fill the pages
/// (measured on 3,400 blocks of 15-23 KB: 65 MB of blocks took 102 MB of pages whole, 69 MB in
/// chunks of 1,000 bytes, but 86 MB in chunks of 1,024, three to a page, which redb's split of
/// a full leaf leaves two to a page).
pub const BLOCK_CHUNK: usize = 1000;
/// The world state (format 5): packed key ([`state_key::pack`]) → `u64 block ‖ u32 tx ‖ encoded
/// value` ([`encode_versioned`]).
pub const STATE: TableDefinition<&[u8], &[u8]> = TableDefinition::new("world_state_packed");
/// Formats 3 and 4's world state, keyed by the key as the contract wrote it. Read by [`upgrade`]
/// only (and by tests that make old stores).
pub const STATE_FORMAT_4: TableDefinition<&str, &[u8]> = TableDefinition::new("world_state");
/// The key history (format 3): `(key hash, block, tx)` → [`encode_modification`].
pub const HISTORY: TableDefinition<(KeyHash, u64, u32), &[u8]> =
    TableDefinition::new("key_history");
/// Formats 1 and 2's world state: key → `u64 block ‖ u32 tx ‖ value`. Read by [`upgrade`] only
/// (and by tests that make old stores).
pub const STATE_FORMAT_2: TableDefinition<&str, &[u8]> = TableDefinition::new("state");
/// Formats 1 and 2's key history, keyed by the whole key. Read by [`upgrade`] only.
pub const HISTORY_FORMAT_2: TableDefinition<(&str, u64, u32), &[u8]> =
    TableDefinition::new("history");

/// The first 128 bits of SHA-256 of a key: what the history is keyed by, so an entry costs 28
/// bytes of key whatever the key's length. [`history_of`] still checks that the transaction an
/// entry names wrote the key itself.
pub type KeyHash = u128;

/// Every history entry of the key whose hash is `h`, oldest first, as a range of the table.
pub fn entries_of(h: KeyHash) -> std::ops::RangeInclusive<(KeyHash, u64, u32)> {
    (h, 0, 0)..=(h, u64::MAX, u32::MAX)
}

pub fn key_hash(key: &str) -> KeyHash {
    let digest = sha256(key.as_bytes());
    u128::from_be_bytes(digest[..16].try_into().expect("16 of 32 bytes"))
}
/// The transaction index (format 5): transaction id as its 32 bytes ([`packed_tx_id`]) →
/// `(block, tx index, validation code)`.
pub const TX_IDS: TableDefinition<[u8; 32], (u64, u32, u8)> = TableDefinition::new("tx_ids_packed");
/// The transaction index as a read transaction sees it.
pub type TxIndex = redb::ReadOnlyTable<[u8; 32], (u64, u32, u8)>;
/// Formats 1 to 4's transaction index, keyed by the id's 64 hex digits. Read by [`upgrade`]
/// only.
pub const TX_IDS_FORMAT_4: TableDefinition<&str, (u64, u32, u8)> = TableDefinition::new("tx_ids");

/// A transaction id as the index keys it: its 32 bytes. Every id the ledger commits is
/// `hex(sha256(…))` (checked when a proposal is accepted), so an id that is not 64 lowercase hex
/// digits was never committed.
pub fn packed_tx_id(tx_id: &str) -> Option<[u8; 32]> {
    let mut packed = [0u8; 32];
    (is_lower_hex_64(tx_id.as_bytes()) && hex::decode_to_slice(tx_id, &mut packed).is_ok())
        .then_some(packed)
}
pub const CERTS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("certs");
pub const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

/// The storage layout this build writes (see the module documentation).
pub const FORMAT_VERSION: u64 = 5;
const FORMAT_KEY: &str = "format";

/// The name of the store file inside the data directory.
pub const STORE_FILE: &str = "ledger.redb";

pub fn stub_error(context: &str, e: impl std::fmt::Display) -> StubError {
    StubError(format!("embedded ledger store: {context}: {e}"))
}

// --- world-state values ---------------------------------------------------------------------------

/// How a state value's bytes are kept after its version (format 3). The contract's values are
/// JSON documents (entities with their signed envelopes, ledger records) and index entries whose
/// value is a transaction id in hex; storing them as they are was most of the state's size.
const VALUE_AS_IS: u8 = 0;
/// 64 lowercase hex digits (a transaction id) kept as their 32 bytes.
const VALUE_HEX_64: u8 = 1;
/// zstd-compressed (values of [`COMPRESS_FROM`] bytes or more, when that is smaller).
const VALUE_ZSTD: u8 = 2;
/// The value is the key's last attribute (an index entry `…\0<tx id>\0` whose value is that
/// transaction id): nothing more is stored.
const VALUE_LAST_ATTRIBUTE: u8 = 3;
/// zstd-compressed with a dictionary trained on the ledger's own values (format 4):
/// `u64 dictionary id ‖ frame` ([`super::dictionary`]).
const VALUE_ZSTD_DICTIONARY: u8 = 4;
/// Below this a value is not worth a compression frame.
pub(super) const COMPRESS_FROM: usize = 160;
/// zstd's level for single values: small documents gain little from higher levels.
const VALUE_COMPRESSION_LEVEL: i32 = 3;

thread_local! {
    /// One compression context per committing thread: making one per value costs more than
    /// compressing a small document.
    static VALUE_COMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Compressor<'static>>> =
        const { std::cell::RefCell::new(None) };
    static DECOMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> =
        const { std::cell::RefCell::new(None) };
    static BLOCK_COMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Compressor<'static>>> =
        const { std::cell::RefCell::new(None) };
}

/// Whether `value` is the last attribute of the composite key `key` (`\0type\0a\0…\0value\0`):
/// the contract's time-ordered indexes end with the transaction id their value repeats.
fn is_last_attribute(key: &str, value: &[u8]) -> bool {
    let key = key.as_bytes();
    !value.is_empty()
        && !value.contains(&0)
        && key.len() > value.len() + 2
        && key.ends_with(&[0])
        && key[..key.len() - 1].ends_with(value)
        && key[key.len() - value.len() - 2] == 0
}

/// The last attribute of a composite key (see [`is_last_attribute`]).
fn last_attribute(key: &str) -> Option<&[u8]> {
    let body = key.as_bytes().strip_suffix(&[0])?;
    let start = body.iter().rposition(|b| *b == 0)? + 1;
    Some(&body[start..]).filter(|a| !a.is_empty())
}

/// A state value as stored: `varint block ‖ varint tx ‖ u8 encoding ‖ bytes` (see
/// [`VALUE_AS_IS`]), compressed without a dictionary.
pub fn encode_versioned(key: &str, version: Version, value: &[u8]) -> Vec<u8> {
    with_version(version, &encode_value(key, value, None))
}

/// `varint block ‖ varint tx ‖ encoded` (format 5; the varints are protobuf's, LEB128): an
/// [`encode_value`] result placed at its version. A version is most often 3 to 5 bytes this way,
/// not 12, on every one of the several values each record writes.
pub fn with_version(version: Version, encoded: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(MAX_VERSION_LEN + encoded.len());
    prost::encoding::encode_varint(version.block, &mut out);
    prost::encoding::encode_varint(u64::from(version.tx), &mut out);
    out.extend_from_slice(encoded);
    out
}

/// The longest [`with_version`] prefix: two varints, a `u64` and a `u32`.
const MAX_VERSION_LEN: usize = 10 + 5;

/// A stored value split into its version and the encoded value after it ([`with_version`]).
fn split_version<'b>(key: &str, bytes: &'b [u8]) -> Result<(Version, &'b [u8]), StubError> {
    let mut rest = bytes;
    let mut version = || -> Option<Version> {
        let block = prost::encoding::decode_varint(&mut rest).ok()?;
        let tx = prost::encoding::decode_varint(&mut rest).ok()?;
        Some(Version {
            block,
            tx: u32::try_from(tx).ok()?,
        })
    };
    match version() {
        Some(version) => Ok((version, rest)),
        None => Err(StubError(format!(
            "embedded ledger store: value of key {key:?} ({} bytes) does not start with a version",
            bytes.len()
        ))),
    }
}

/// A stored value's version and its [`encode_value`] part, for migrations, reports and tests.
pub fn version_and_encoded(bytes: &[u8]) -> Option<(Version, &[u8])> {
    split_version("", bytes).ok()
}

/// The encoding byte of a stored value (what [`encode_value`] chose).
pub fn value_encoding(bytes: &[u8]) -> Option<u8> {
    version_and_encoded(bytes).and_then(|(_, encoded)| encoded.first().copied())
}

/// `u8 encoding ‖ bytes`: how the value of `key` is kept, whatever version it gets. A value worth
/// compressing is compressed with `dictionary` when there is one (the store's, see
/// [`super::dictionary`]).
pub fn encode_value(key: &str, value: &[u8], dictionary: Option<&ValueDictionary>) -> Vec<u8> {
    if is_last_attribute(key, value) {
        return vec![VALUE_LAST_ATTRIBUTE];
    }
    if is_lower_hex_64(value) {
        let mut encoded = vec![0u8; 33];
        encoded[0] = VALUE_HEX_64;
        hex::decode_to_slice(value, &mut encoded[1..]).expect("checked: 64 hex digits");
        return encoded;
    }
    if value.len() >= COMPRESS_FROM {
        if let Some(dictionary) = dictionary {
            if let Some(frame) = dictionary
                .compress(value)
                .filter(|frame| frame.len() + 8 < value.len())
            {
                let mut encoded = Vec::with_capacity(9 + frame.len());
                encoded.push(VALUE_ZSTD_DICTIONARY);
                encoded.extend_from_slice(&dictionary.id.to_be_bytes());
                encoded.extend_from_slice(&frame);
                return encoded;
            }
        }
        let compressed = VALUE_COMPRESSOR.with(|slot| {
            let mut slot = slot.borrow_mut();
            let compressor = match slot.as_mut() {
                Some(c) => c,
                None => slot.insert(zstd::bulk::Compressor::new(VALUE_COMPRESSION_LEVEL).ok()?),
            };
            compressor.compress(value).ok()
        });
        if let Some(compressed) = compressed.filter(|c| c.len() < value.len()) {
            let mut encoded = Vec::with_capacity(1 + compressed.len());
            encoded.push(VALUE_ZSTD);
            encoded.extend_from_slice(&compressed);
            return encoded;
        }
    }
    let mut encoded = Vec::with_capacity(1 + value.len());
    encoded.push(VALUE_AS_IS);
    encoded.extend_from_slice(value);
    encoded
}

/// One write of a transaction, prepared while it is endorsed (on any core) so the single
/// committer thread only places it: everything about a write that does not depend on the block
/// and position it lands at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreparedWrite {
    /// The key as stored ([`state_key::pack`]).
    pub stored_key: Vec<u8>,
    pub key_hash: KeyHash,
    /// [`encode_value`] of the value; `None` for a delete.
    pub encoded: Option<Vec<u8>>,
    /// [`encode_modification`] of the value.
    pub history_entry: [u8; HISTORY_ENTRY_LEN],
}

impl PreparedWrite {
    pub fn of(
        key: &str,
        value: Option<&[u8]>,
        dictionary: Option<&ValueDictionary>,
    ) -> PreparedWrite {
        PreparedWrite {
            stored_key: state_key::pack(key),
            key_hash: key_hash(key),
            encoded: value.map(|value| encode_value(key, value, dictionary)),
            history_entry: encode_modification(value),
        }
    }
}

/// The version of a stored state value alone (the value is not decoded).
pub fn decode_version(key: &str, bytes: &[u8]) -> Result<Version, StubError> {
    split_version(key, bytes).map(|(version, _)| version)
}

/// The version and value of a stored state value ([`encode_versioned`]).
pub fn decode_versioned(key: &str, bytes: &[u8]) -> Result<VersionedValue, StubError> {
    let (version, encoded) = split_version(key, bytes)?;
    let Some((&encoding, stored)) = encoded.split_first() else {
        return Err(StubError(format!(
            "embedded ledger store: value of key {key:?} is {} bytes, its version and no encoding",
            bytes.len()
        )));
    };
    let value = match encoding {
        VALUE_AS_IS => stored.to_vec(),
        VALUE_HEX_64 if stored.len() == 32 => hex::encode(stored).into_bytes(),
        VALUE_ZSTD => inflate("state value", stored).map_err(|e| stub_error(key, e))?,
        VALUE_ZSTD_DICTIONARY if stored.len() > 8 => {
            let id = u64::from_be_bytes(stored[..8].try_into().expect("8 bytes"));
            let dictionary = super::dictionary::lookup(id).ok_or_else(|| {
                stub_error(
                    key,
                    format!(
                        "value compressed with dictionary {id:016x}, which the store does not hold"
                    ),
                )
            })?;
            dictionary
                .decompress(&stored[8..], MAX_STORED_BLOCK)
                .map_err(|e| stub_error(key, format!("state value: {e}")))?
        }
        VALUE_LAST_ATTRIBUTE if stored.is_empty() => last_attribute(key)
            .ok_or_else(|| {
                stub_error(
                    key,
                    "value stored as the key's last attribute, which it lacks",
                )
            })?
            .to_vec(),
        other => {
            return Err(stub_error(
                key,
                format!(
                    "unknown value encoding {other} (or a damaged value of {} bytes)",
                    stored.len()
                ),
            ))
        }
    };
    Ok(VersionedValue { value, version })
}

/// A state value of formats 1 to 4, `u64 block ‖ u32 tx ‖ rest` (the value itself in formats 1
/// and 2, its encoding byte and bytes in 3 and 4; [`split_fixed_version`] reads it back): what
/// tests that make old stores write.
pub fn encode_fixed_version(version: Version, value: &[u8]) -> Vec<u8> {
    let mut w = Writer::with_capacity(12 + value.len());
    w.version(version);
    w.buf.extend_from_slice(value);
    w.buf
}

/// Inflate a zstd frame of a stored block or value (`what`, for the message), refusing one that
/// claims to be larger than anything the node writes (a damaged or hostile length must not make
/// a reader allocate it). One decompression context per thread, reused.
fn inflate(what: &str, compressed: &[u8]) -> Result<Vec<u8>, String> {
    let size = zstd::zstd_safe::get_frame_content_size(compressed)
        .ok()
        .flatten()
        .ok_or_else(|| format!("{what}: the compressed part has no readable size"))?;
    if size > MAX_STORED_BLOCK {
        return Err(format!(
            "{what}: the compressed part claims {size} bytes, more than the {MAX_STORED_BLOCK} anything stored may hold"
        ));
    }
    DECOMPRESSOR.with(|slot| {
        let mut slot = slot.borrow_mut();
        let decompressor = match slot.as_mut() {
            Some(d) => d,
            None => slot.insert(zstd::bulk::Decompressor::new().map_err(|e| e.to_string())?),
        };
        decompressor
            .decompress(compressed, size as usize)
            .map_err(|e| format!("{what}: the compressed part does not inflate: {e}"))
    })
}

/// A format-1 history entry: `text tx_id ‖ i64 seconds ‖ i32 nanos ‖ u8 is_delete ‖ value`.
/// Format 2 no longer writes it; [`upgrade`] reads it, and tests write it to make old stores.
pub fn encode_modification_v1(tx_id: &str, timestamp: Timestamp, value: Option<&[u8]>) -> Vec<u8> {
    let is_delete = value.is_none();
    let value = value.unwrap_or_default();
    let mut w = Writer::with_capacity(20 + tx_id.len() + value.len());
    w.text(tx_id);
    w.i64(timestamp.seconds);
    w.i32(timestamp.nanos);
    w.u8(u8::from(is_delete));
    w.buf.extend_from_slice(value);
    w.buf
}

/// Whether a format-1 history entry records a delete, and the value it holds.
fn v1_entry(bytes: &[u8]) -> Option<(bool, &[u8])> {
    let mut r = Reader::new("history entry", bytes);
    let tx_id = r.text().ok()?;
    r.i64().ok()?;
    r.i32().ok()?;
    let is_delete = r.flag().ok()?;
    Some((is_delete, bytes.get(4 + tx_id.len() + 13..)?))
}

/// A history entry (format 2): `u8 is_delete ‖ the first 16 bytes of SHA-256 of the value`
/// (zeros for a delete). The value itself is in the transaction at `(block, tx)`; its hash lets
/// `tom verify` check the world state against the history in bounded memory.
pub fn encode_modification(value: Option<&[u8]>) -> [u8; HISTORY_ENTRY_LEN] {
    let mut entry = [0u8; HISTORY_ENTRY_LEN];
    if let Some(value) = value {
        entry[1..].copy_from_slice(&sha256(value)[..HISTORY_ENTRY_LEN - 1]);
    } else {
        entry[0] = 1;
    }
    entry
}

/// The length of a format-2 history entry (a format-1 entry is always longer).
pub const HISTORY_ENTRY_LEN: usize = 17;

// --- stored blocks ------------------------------------------------------------------------------

/// Format 2's stored block: certificates cut out, the rest as is.
const COMPACT_TAG: &[u8; 4] = b"TOMZ";
/// Format 3's stored block: certificates cut out, the rest compressed with zstd.
const COMPRESSED_TAG: &[u8; 4] = b"TOMC";
/// zstd's level for stored blocks: measured by the scale bench, level 3 (zstd's default) takes
/// a 64-transaction block from ~350 KB to ~40 KB (5,531 → 638 bytes per record) in about a
/// millisecond; higher levels cost more time on the commit path for a few percent.
const BLOCK_COMPRESSION_LEVEL: i32 = 3;
/// No block the node writes comes near this (a block holds at most a few hundred transactions of
/// at most a few MiB each); a stored block inflating beyond it is damaged.
const MAX_STORED_BLOCK: u64 = 1 << 30;

/// Where each transaction's certificate lies in a block's canonical bytes: `(offset, length)`.
/// A transaction that does not decode keeps its bytes as they are.
fn certificate_spans(canonical: &[u8]) -> Result<Vec<(usize, usize)>, codec::DecodeError> {
    let raw = RawBlock::decode(canonical)?;
    let mut spans = Vec::with_capacity(raw.transactions.len());
    for tx in raw.transactions {
        let span = (|| -> Result<&[u8], codec::DecodeError> {
            let mut r = Reader::new("transaction", tx);
            r.tag(b"TOMT")?;
            let mut p = Reader::new("proposal", r.bytes()?);
            p.tag(b"TOMP")?;
            p.text()?; // tx_id
            p.bytes()?; // nonce
            p.i64()?;
            p.i32()?;
            p.text()?; // msp_id
            p.bytes()
        })();
        if let Ok(certificate) = span {
            if !certificate.is_empty() {
                spans.push((
                    certificate.as_ptr() as usize - canonical.as_ptr() as usize,
                    certificate.len(),
                ));
            }
        }
    }
    Ok(spans)
}

/// A compact stored block and the certificates (hash, PEM) it refers to, borrowed from the
/// canonical bytes it was cut from.
pub type CompactBlock<'a> = (Vec<u8>, Vec<(Hash, &'a [u8])>);

/// A block's stored form: its canonical bytes with the certificates cut out and the rest
/// compressed, and the certificates (hash, PEM) it refers to, which must be in `certs`.
///
/// `"TOMC" 1 ‖ u32 n ‖ (u32 offset ‖ hash certificate)* ‖ bytes zstd(canonical without them)`.
pub fn compact_block(canonical: &[u8]) -> Result<CompactBlock<'_>, codec::DecodeError> {
    let spans = certificate_spans(canonical)?;
    let cut: usize = spans.iter().map(|(_, len)| len).sum();
    let mut rest = Vec::with_capacity(canonical.len() - cut);
    let mut at = 0;
    for &(offset, len) in &spans {
        rest.extend_from_slice(&canonical[at..offset]);
        at = offset + len;
    }
    rest.extend_from_slice(&canonical[at..]);
    // One context per thread (the committer's), as for values: making one per block cost
    // about as much as a small block's compression.
    let compressed = BLOCK_COMPRESSOR
        .with(|slot| {
            let mut slot = slot.borrow_mut();
            let compressor = match slot.as_mut() {
                Some(c) => c,
                None => slot.insert(zstd::bulk::Compressor::new(BLOCK_COMPRESSION_LEVEL)?),
            };
            compressor.compress(&rest)
        })
        .map_err(|e| codec::DecodeError {
            what: "stored block",
            offset: 0,
            detail: format!("zstd: {e}"),
        })?;
    let mut w = Writer::with_capacity(compressed.len() + 9 + 36 * spans.len());
    w.tag(COMPRESSED_TAG);
    w.count(spans.len());
    let mut certificates = Vec::with_capacity(spans.len());
    for &(offset, len) in &spans {
        let certificate = &canonical[offset..offset + len];
        let hash = sha256(certificate);
        w.count(offset);
        w.hash(&hash);
        certificates.push((hash, certificate));
    }
    w.bytes(&compressed);
    Ok((w.buf, certificates))
}

/// The certificate references and the rest of a compact stored block (either tag).
#[allow(clippy::type_complexity, reason = "a private helper's pair of parts")]
fn parse_compact<'a>(
    r: &mut Reader<'a>,
    tag: &[u8; 4],
) -> Result<(Vec<(usize, Hash)>, &'a [u8]), codec::DecodeError> {
    r.tag(tag)?;
    let n = r.count(36)?;
    let mut refs = Vec::with_capacity(n);
    for _ in 0..n {
        refs.push((r.u32()? as usize, r.hash()?));
    }
    Ok((refs, r.bytes()?))
}

/// The canonical bytes of a stored block (see [`compact_block`]); a block stored canonical
/// (format 1) or compact without compression (format 2) is read in its own form. Fails if the
/// stored form is damaged or names a certificate `certs` does not hold.
pub fn expand_block<T: ReadableTable<&'static [u8], &'static [u8]>>(
    certs: &T,
    stored: &[u8],
) -> Result<Vec<u8>, String> {
    let compressed = stored.starts_with(COMPRESSED_TAG);
    if !compressed && !stored.starts_with(COMPACT_TAG) {
        return Ok(stored.to_vec());
    }
    let mut r = Reader::new("stored block", stored);
    let tag = if compressed {
        COMPRESSED_TAG
    } else {
        COMPACT_TAG
    };
    let (refs, rest) = parse_compact(&mut r, tag).map_err(|e| e.to_string())?;
    r.finish().map_err(|e| e.to_string())?;
    let inflated;
    let rest = if compressed {
        inflated = inflate("stored block", rest)?;
        inflated.as_slice()
    } else {
        rest
    };
    let mut found: HashMap<Hash, Vec<u8>> = HashMap::new();
    let mut out = Vec::with_capacity(rest.len() + 1024 * refs.len());
    let mut from = 0;
    for (offset, hash) in refs {
        if let std::collections::hash_map::Entry::Vacant(slot) = found.entry(hash) {
            let certificate = certs
                .get(hash.as_slice())
                .map_err(|e| format!("certs: {e}"))?
                .ok_or_else(|| {
                    format!(
                        "the block names certificate {} which the certs table does not hold",
                        hex::encode(hash)
                    )
                })?
                .value()
                .to_vec();
            slot.insert(certificate);
        }
        // `offset` is where the certificate starts in the canonical bytes.
        let take = offset
            .checked_sub(out.len())
            .filter(|n| from + n <= rest.len())
            .ok_or_else(|| format!("stored block: certificate offset {offset} out of order"))?;
        out.extend_from_slice(&rest[from..from + take]);
        from += take;
        out.extend_from_slice(&found[&hash]);
    }
    out.extend_from_slice(&rest[from..]);
    Ok(out)
}

/// Store block `number` from its canonical bytes: the compact form in `blocks`, any certificate
/// not yet stored in `certs`.
pub fn put_block(
    blocks: &mut redb::Table<'_, (u64, u32), &'static [u8]>,
    certs: &mut redb::Table<'_, &'static [u8], &'static [u8]>,
    number: u64,
    canonical: &[u8],
) -> Result<(), redb::Error> {
    let (stored, certificates) = match compact_block(canonical) {
        Ok(compact) => compact,
        // Bytes that are not a block (a test writing garbage) are stored as they are.
        Err(_) => (canonical.to_vec(), Vec::new()),
    };
    for (hash, certificate) in certificates {
        if certs.get(hash.as_slice())?.is_none() {
            certs.insert(hash.as_slice(), certificate)?;
        }
    }
    put_stored_block(blocks, number, &stored)?;
    Ok(())
}

/// Store the stored form of block `number` in chunks ([`BLOCK_CHUNK`]), in place of any the
/// block had.
pub fn put_stored_block(
    blocks: &mut redb::Table<'_, (u64, u32), &'static [u8]>,
    number: u64,
    stored: &[u8],
) -> Result<(), redb::StorageError> {
    remove_block(blocks, number)?;
    if stored.is_empty() {
        blocks.insert((number, 0), &[][..])?;
    }
    for (index, chunk) in stored.chunks(BLOCK_CHUNK).enumerate() {
        let index = u32::try_from(index).expect("a block of fewer than 2^32 chunks");
        blocks.insert((number, index), chunk)?;
    }
    Ok(())
}

/// Remove every chunk of block `number` (a migration moving it, a test damaging the log).
pub fn remove_block(
    blocks: &mut redb::Table<'_, (u64, u32), &'static [u8]>,
    number: u64,
) -> Result<(), redb::StorageError> {
    blocks.retain_in(chunks_of(number), |_, _| false)
}

/// Every chunk of block `number`.
pub fn chunks_of(number: u64) -> std::ops::RangeInclusive<(u64, u32)> {
    (number, 0)..=(number, u32::MAX)
}

/// The stored form of block `number` (its chunks joined), if it exists.
pub fn stored_block<B>(blocks: &B, number: u64) -> Result<Option<Vec<u8>>, String>
where
    B: ReadableTable<(u64, u32), &'static [u8]>,
{
    let mut rows = StoredBlocks::new(blocks.range(chunks_of(number)).map_err(|e| e.to_string())?);
    rows.next()
        .transpose()
        .map(|block| block.map(|(_, stored)| stored))
        .map_err(String::from)
}

/// The canonical bytes of block `number`, if it exists, from any transaction.
pub fn read_block<B, C>(blocks: &B, certs: &C, number: u64) -> Result<Option<Vec<u8>>, String>
where
    B: ReadableTable<(u64, u32), &'static [u8]>,
    C: ReadableTable<&'static [u8], &'static [u8]>,
{
    match stored_block(blocks, number)? {
        None => Ok(None),
        Some(stored) => expand_block(certs, &stored).map(Some),
    }
}

/// The number of the last block in the log, if any.
pub fn last_block_number<B>(blocks: &B) -> Result<Option<u64>, String>
where
    B: ReadableTable<(u64, u32), &'static [u8]>,
{
    Ok(blocks
        .last()
        .map_err(|e| e.to_string())?
        .map(|(position, _)| position.value().0))
}

/// The last block of the log, as stored (its chunks joined), if any.
pub fn last_stored_block<B>(blocks: &B) -> Result<Option<(u64, Vec<u8>)>, String>
where
    B: ReadableTable<(u64, u32), &'static [u8]>,
{
    let Some(number) = last_block_number(blocks)? else {
        return Ok(None);
    };
    Ok(stored_block(blocks, number)?.map(|stored| (number, stored)))
}

/// Stored blocks in number order, each its chunks joined, from a range of the chunk table: what
/// reads the whole log (verification, event replay) iterates. A block whose chunks do not run
/// 0, 1, 2, … is an error naming it (a damaged log, never a shorter block).
pub struct StoredBlocks<'a> {
    rows: std::iter::Peekable<redb::Range<'a, (u64, u32), &'static [u8]>>,
}

impl<'a> StoredBlocks<'a> {
    pub fn new(rows: redb::Range<'a, (u64, u32), &'static [u8]>) -> Self {
        StoredBlocks {
            rows: rows.peekable(),
        }
    }

    /// The blocks numbered `from` on.
    pub fn from<B>(blocks: &'a B, from: u64) -> Result<Self, String>
    where
        B: ReadableTable<(u64, u32), &'static [u8]>,
    {
        Ok(StoredBlocks::new(
            blocks.range((from, 0)..).map_err(|e| e.to_string())?,
        ))
    }
}

/// Why a stored block could not be read whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlockReadError {
    /// The store failed (I/O).
    Store(String),
    /// The block's chunks are not 0, 1, 2, …: the log is damaged at this block.
    Damaged { block: u64, detail: String },
}

impl std::fmt::Display for BlockReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BlockReadError::Store(e) => write!(f, "{e}"),
            BlockReadError::Damaged { block, detail } => write!(f, "block {block}: {detail}"),
        }
    }
}

impl From<BlockReadError> for String {
    fn from(e: BlockReadError) -> String {
        e.to_string()
    }
}

impl Iterator for StoredBlocks<'_> {
    type Item = Result<(u64, Vec<u8>), BlockReadError>;

    fn next(&mut self) -> Option<Self::Item> {
        let store = |e: redb::StorageError| BlockReadError::Store(e.to_string());
        let first = self.rows.next()?;
        Some((|| {
            let (position, chunk) = first.map_err(store)?;
            let (number, index) = position.value();
            if index != 0 {
                return Err(BlockReadError::Damaged {
                    block: number,
                    detail: format!("its stored form starts at chunk {index}, not 0"),
                });
            }
            let mut stored = chunk.value().to_vec();
            let mut expected = 1u32;
            loop {
                match self.rows.peek() {
                    Some(Ok((next, _))) if next.value().0 == number => {}
                    Some(Err(_)) => {
                        let Some(Err(e)) = self.rows.next() else {
                            unreachable!("peeked an error")
                        };
                        return Err(store(e));
                    }
                    _ => break,
                }
                let (next, chunk) = self.rows.next().expect("peeked").map_err(store)?;
                let index = next.value().1;
                if index != expected {
                    return Err(BlockReadError::Damaged {
                        block: number,
                        detail: format!("chunk {expected} of its stored form is missing"),
                    });
                }
                stored.extend_from_slice(chunk.value());
                expected += 1;
            }
            Ok((number, stored))
        })())
    }
}

/// A versioned `get` on any state table (snapshot or the block being written).
pub fn get_versioned<T: ReadableTable<&'static [u8], &'static [u8]>>(
    table: &T,
    key: &str,
) -> Result<Option<VersionedValue>, StubError> {
    match table
        .get(state_key::pack(key).as_slice())
        .map_err(|e| stub_error("get", e))?
    {
        None => Ok(None),
        Some(guard) => decode_versioned(key, guard.value()).map(Some),
    }
}

/// Keys in `[start, end)` ascending (`end` empty = unbounded), at most `limit` of them, on any
/// state table. The scan stops at the limit, so a page costs what it returns.
pub fn range_versioned<T: ReadableTable<&'static [u8], &'static [u8]>>(
    table: &T,
    start: &str,
    end: &str,
    limit: usize,
) -> Result<Vec<(String, VersionedValue)>, StubError> {
    let mut out = Vec::new();
    for row in packed_range(table, start, end)?.take(limit) {
        let (key, value) = row.map_err(|e| stub_error("range", e))?;
        let key = unpack_key(key.value())?;
        let value = decode_versioned(&key, value.value())?;
        out.push((key, value));
    }
    Ok(out)
}

/// The stored rows of the keys in `[start, end)` (`end` empty = unbounded): the bounds packed
/// as the keys are ([`state_key`] keeps the order of the contract's ranges).
fn packed_range<'t, T: ReadableTable<&'static [u8], &'static [u8]>>(
    table: &'t T,
    start: &str,
    end: &str,
) -> Result<redb::Range<'t, &'static [u8], &'static [u8]>, StubError> {
    let start = state_key::pack(start);
    let rows = if end.is_empty() {
        table.range(start.as_slice()..)
    } else {
        let end = state_key::pack(end);
        if end <= start {
            // An empty range (redb refuses an inverted one).
            table.range(start.as_slice()..start.as_slice())
        } else {
            table.range(start.as_slice()..end.as_slice())
        }
    };
    rows.map_err(|e| stub_error("range", e))
}

/// A stored key unpacked ([`state_key::unpack`]); a damaged one is an error naming it.
pub fn unpack_key(stored: &[u8]) -> Result<String, StubError> {
    state_key::unpack(stored).map_err(|e| StubError(format!("embedded ledger store: {e}")))
}

/// Every committed change of `key`, oldest first, read from the transactions in the log that
/// made them (each block is read once however many of the key's changes it holds). A key the
/// history holds no entry for was written once and never changed (see [`record_write`]): its
/// one change is the state's version.
pub fn history_of<H, S, B, C>(
    history: &H,
    state: &S,
    blocks: &B,
    certs: &C,
    key: &str,
) -> Result<Vec<KeyModification>, StubError>
where
    H: ReadableTable<(KeyHash, u64, u32), &'static [u8]>,
    S: ReadableTable<&'static [u8], &'static [u8]>,
    B: ReadableTable<(u64, u32), &'static [u8]>,
    C: ReadableTable<&'static [u8], &'static [u8]>,
{
    let hash = key_hash(key);
    let mut positions = Vec::new();
    for row in history
        .range(entries_of(hash))
        .map_err(|e| stub_error("history", e))?
    {
        let (position, value) = row.map_err(|e| stub_error("history", e))?;
        let (_, number, index) = position.value();
        let stored = value.value();
        if stored.len() != HISTORY_ENTRY_LEN {
            return Err(stub_error(
                key,
                format!("history entry at block {number} transaction {index} is {} bytes, not {HISTORY_ENTRY_LEN}", stored.len()),
            ));
        }
        positions.push((number, index, Some(stored[0] == 1)));
    }
    if positions.is_empty() {
        // Written once (or never): the state's version is the one change.
        match get_versioned(state, key)? {
            Some(current) => positions.push((current.version.block, current.version.tx, None)),
            None => return Ok(Vec::new()),
        }
    }
    let mut out = Vec::new();
    let mut block: Option<(u64, Vec<u8>)> = None;
    for (number, index, entry_is_delete) in positions {
        if block.as_ref().is_none_or(|(n, _)| *n != number) {
            let bytes = read_block(blocks, certs, number)
                .map_err(|e| stub_error("history", e))?
                .ok_or_else(|| {
                    stub_error(
                        key,
                        format!("history names block {number}, which is not in the log"),
                    )
                })?;
            block = Some((number, bytes));
        }
        let bytes = &block.as_ref().expect("read above").1;
        let raw = RawBlock::decode(bytes).map_err(|e| stub_error(key, e))?;
        let tx = raw.transactions.get(index as usize).ok_or_else(|| {
            stub_error(
                key,
                format!(
                    "history names transaction {index} of block {number}, which has {}",
                    raw.transactions.len()
                ),
            )
        })?;
        let tx = Transaction::decode(tx).map_err(|e| stub_error(key, e))?;
        let written = match (tx.rwset.writes.get(key), entry_is_delete) {
            (Some(written), _) => written,
            // Another key with the same 128-bit hash (never seen; the entry is not this key's).
            (None, Some(_)) => continue,
            (None, None) => {
                return Err(stub_error(
                    key,
                    format!(
                        "the state says transaction {} (block {number}) wrote it, which it did not",
                        tx.proposal.tx_id
                    ),
                ))
            }
        };
        let is_delete = written.is_none();
        if entry_is_delete.is_some_and(|d| d != is_delete) {
            return Err(stub_error(key, format!("history entry at block {number} transaction {index} disagrees with the log on whether it was a delete")));
        }
        out.push(KeyModification {
            tx_id: tx.proposal.tx_id,
            timestamp: tx.proposal.timestamp,
            value: written.clone().unwrap_or_default(),
            is_delete,
        });
    }
    Ok(out)
}

/// Apply one valid write to the world state and the key history, in the block being written.
///
/// Most keys are written once and never changed (the contract's indexes and records: about
/// four of five writes), so the history holds no entry for a key until it changes: a key
/// without entries has exactly one change, the one at its state version ([`history_of`]).
/// The first change of such a key writes the entry of its first write (from the state's old
/// version and value) and its own; from then on every change adds its entry. A delete always
/// leaves entries (the state no longer says anything about the key). This halves the B-tree
/// inserts the single committer thread makes per transaction, and the history's size.
pub fn record_write(
    state: &mut redb::Table<'_, &'static [u8], &'static [u8]>,
    history: &mut redb::Table<'_, (KeyHash, u64, u32), &'static [u8]>,
    key: &str,
    version: Version,
    write: &PreparedWrite,
) -> Result<(), WriteError> {
    let old = match &write.encoded {
        Some(encoded) => state
            .insert(
                write.stored_key.as_slice(),
                with_version(version, encoded).as_slice(),
            )
            .map_err(|e| WriteError::Store("write state", e.into()))?
            .map(|old| old.value().to_vec()),
        None => state
            .remove(write.stored_key.as_slice())
            .map_err(|e| WriteError::Store("delete state", e.into()))?
            .map(|old| old.value().to_vec()),
    };
    let h = write.key_hash;
    let has_entries = history
        .range(entries_of(h))
        .map_err(|e| WriteError::Store("read history", e.into()))?
        .next()
        .is_some();
    if !has_entries {
        match old {
            // The first change of a key written once: its first write gets its entry now.
            Some(old) => {
                let old = decode_versioned(key, &old).map_err(WriteError::Corrupt)?;
                history
                    .insert(
                        (h, old.version.block, old.version.tx),
                        encode_modification(Some(&old.value)).as_slice(),
                    )
                    .map_err(|e| WriteError::Store("write history", e.into()))?;
            }
            // A new key: its one change is its state version, until it changes.
            None if write.encoded.is_some() => return Ok(()),
            // The delete of a key never written: recorded, as the log holds it.
            None => {}
        }
    }
    history
        .insert(
            (h, version.block, version.tx),
            write.history_entry.as_slice(),
        )
        .map_err(|e| WriteError::Store("write history", e.into()))?;
    Ok(())
}

/// Why [`record_write`] failed: the store (an I/O fault the committer recovers from) or a
/// stored value that does not decode.
#[derive(Debug)]
pub enum WriteError {
    Store(&'static str, redb::Error),
    Corrupt(StubError),
}

/// Where the bytes of one redb table go (see [`space_report`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableSpace {
    pub name: String,
    pub entries: u64,
    /// Keys and values as inserted.
    pub stored_bytes: u64,
    /// Branch-page keys and other B-tree metadata.
    pub metadata_bytes: u64,
    /// Unused space inside the table's pages.
    pub fragmented_bytes: u64,
}

impl TableSpace {
    /// The bytes the table occupies in the file.
    pub fn total(&self) -> u64 {
        self.stored_bytes + self.metadata_bytes + self.fragmented_bytes
    }
}

/// Where the store file's bytes go, table by table, for benchmarks and capacity planning.
/// Opens the store read-only, so the ledger must not be open.
pub fn space_report(path: &std::path::Path) -> Result<Vec<TableSpace>, String> {
    use redb::{ReadableDatabase, ReadableTableMetadata, TableHandle};
    let db = redb::ReadOnlyDatabase::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let txn = db.begin_read().map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for handle in txn.list_tables().map_err(|e| e.to_string())? {
        let name = handle.name().to_owned();
        let table = txn.open_untyped_table(handle).map_err(|e| e.to_string())?;
        let stats = table.stats().map_err(|e| e.to_string())?;
        out.push(TableSpace {
            name,
            entries: table.len().map_err(|e| e.to_string())?,
            stored_bytes: stats.stored_bytes(),
            metadata_bytes: stats.metadata_bytes(),
            fragmented_bytes: stats.fragmented_bytes(),
        });
    }
    Ok(out)
}

/// Bytes by what they are, summed over a store: the parts of the block log's transactions and the
/// world state by object type. For the scale benchmark and capacity planning (where to cut).
#[derive(Debug, Clone, Default)]
pub struct ContentReport {
    /// `(part, bytes)` of the canonical block log, in a fixed order.
    pub block_parts: Vec<(&'static str, u64)>,
    /// Bytes of the blocks as stored (compact form).
    pub blocks_stored: u64,
    /// `(object type, keys, key bytes, value bytes)` of the world state.
    pub state_types: Vec<(String, u64, u64, u64)>,
}

/// Read the whole store and say what its bytes are (see [`ContentReport`]). Read-only.
pub fn content_report(path: &std::path::Path) -> Result<ContentReport, String> {
    use redb::ReadableDatabase;
    let db = redb::ReadOnlyDatabase::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let txn = db.begin_read().map_err(|e| e.to_string())?;
    let blocks = txn.open_table(BLOCKS).map_err(|e| e.to_string())?;
    let certs = txn.open_table(CERTS).map_err(|e| e.to_string())?;
    const PARTS: [&str; 12] = [
        "header, node signature, framing",
        "proposal: certificate",
        "proposal: argument",
        "proposal: tx id, nonce, time, names",
        "creator signature",
        "reads",
        "range reads",
        "write keys",
        "write values",
        "event",
        "response",
        "tx framing",
    ];
    let mut sums = [0u64; 12];
    let mut stored = 0u64;
    for block in StoredBlocks::from(&blocks, 0)? {
        let (_, value) = block?;
        stored += value.len() as u64;
        let canonical = expand_block(&certs, &value)?;
        let raw = RawBlock::decode(&canonical).map_err(|e| e.to_string())?;
        let mut in_txs = 0u64;
        for tx_bytes in &raw.transactions {
            in_txs += tx_bytes.len() as u64;
            let Ok(tx) = Transaction::decode(tx_bytes) else {
                continue;
            };
            let p = &tx.proposal;
            sums[1] += p.creator.certificate_pem.len() as u64;
            sums[2] += p.argument.len() as u64;
            sums[3] += (tx.proposal_bytes.len()
                - p.creator.certificate_pem.len()
                - p.argument.len()) as u64;
            sums[4] += tx.creator_signature.len() as u64;
            let reads: u64 = tx
                .rwset
                .reads
                .iter()
                .map(|(k, v)| k.len() as u64 + if v.is_some() { 17 } else { 5 })
                .sum();
            sums[5] += reads;
            let ranges: u64 = tx
                .rwset
                .range_reads
                .iter()
                .map(|r| {
                    (r.start.len()
                        + r.end.len()
                        + r.last_key.as_ref().map_or(0, |k| k.len() + 4)
                        + 13) as u64
                        + r.seen.iter().map(|(k, _)| k.len() as u64 + 16).sum::<u64>()
                })
                .sum();
            sums[6] += ranges;
            let keys: u64 = tx.rwset.writes.keys().map(|k| k.len() as u64 + 5).sum();
            let values: u64 = tx
                .rwset
                .writes
                .values()
                .map(|v| v.as_ref().map_or(0, |v| v.len() as u64 + 4))
                .sum();
            sums[7] += keys;
            sums[8] += values;
            let event = tx
                .rwset
                .event
                .as_ref()
                .map_or(1, |e| (e.name.len() + e.payload.len() + 9) as u64);
            sums[9] += event;
            sums[10] += tx.response.len() as u64;
            sums[11] += tx_bytes.len() as u64
                - (tx.proposal_bytes.len() + tx.creator_signature.len() + tx.response.len()) as u64
                - reads
                - ranges
                - keys
                - values
                - event;
        }
        sums[0] += canonical.len() as u64 - in_txs;
    }
    super::dictionary::load(&txn)?;
    let state = txn.open_table(STATE).map_err(|e| e.to_string())?;
    let mut types: std::collections::BTreeMap<String, (u64, u64, u64)> = Default::default();
    for entry in state.iter().map_err(|e| e.to_string())? {
        let (stored_key, value) = entry.map_err(|e| e.to_string())?;
        let key = state_key::unpack(stored_key.value())?;
        let object_type = match key.strip_prefix('\u{0}') {
            Some(rest) => rest.split('\u{0}').next().unwrap_or_default(),
            None => key.split(['\u{0}', ':', '/']).next().unwrap_or_default(),
        };
        let slot = types.entry(object_type.to_owned()).or_default();
        slot.0 += 1;
        slot.1 += stored_key.value().len() as u64;
        slot.2 += value.value().len() as u64;
    }
    Ok(ContentReport {
        block_parts: PARTS.iter().copied().zip(sums).collect(),
        blocks_stored: stored,
        state_types: types
            .into_iter()
            .map(|(t, (n, k, v))| (t, n, k, v))
            .collect(),
    })
}

/// Bring the store to [`FORMAT_VERSION`] before anything reads it: a new store is stamped; a
/// store of formats 1 to 4 is migrated in place, a batch of rows per write transaction, so
/// memory stays bounded and an interrupted migration resumes where it stopped (each batch moves
/// rows from the old table to the new one in one transaction); a store of a newer format is
/// refused. Returns the format found.
///
/// * Formats 1 to 4 → 5 (blocks, transaction index): each block moves from `blocks` to
///   `block_chunks` ([`BLOCK_CHUNK`]), format 1's canonical blocks compacted on the way
///   ([`compact_block`]), other stored forms (format 2's compact, uncompressed blocks, formats 3
///   and 4's compressed ones) kept as they are, since readers take every stored form; `tx_ids`
///   becomes `tx_ids_packed`, keyed by each id's 32 bytes.
/// * Formats 1 and 2 → 5 (state, history): `state` becomes `world_state_packed` with packed
///   keys and encoded values ([`encode_versioned`]); `history`, keyed by the whole key and
///   (format 1) holding values, becomes `key_history`, keyed by the key's hash, holding
///   [`encode_modification`].
/// * Formats 3 and 4 → 5 (state): `world_state` becomes `world_state_packed`, each key packed
///   ([`state_key::pack`]), each version re-encoded as varints and each value otherwise kept as
///   it is (values compressed without a dictionary keep that encoding); the
///   `value_dictionaries` table (format 4) is added.
pub fn upgrade(db: &redb::Database) -> Result<u64, String> {
    let found = format_of(db)?;
    match found {
        None => {
            write_format(db)?;
            return Ok(FORMAT_VERSION);
        }
        Some(FORMAT_VERSION) => return Ok(FORMAT_VERSION),
        Some(1..=4) => {}
        Some(other) => return Err(unsupported_format(other)),
    }
    let from = found.expect("matched above");
    let started = std::time::Instant::now();
    tracing::info!(from, to = FORMAT_VERSION, "migrating the ledger store");
    move_blocks(db)?;
    move_tx_ids(db)?;
    // World state: keys packed, 10,000 per transaction. Values of formats 3 and 4 (also rows an
    // interrupted migration by an older tom already moved there) keep their encoding, format
    // 3's compressed without a dictionary included; those of formats 1 and 2 are encoded.
    for (table, format) in [(STATE_FORMAT_4, 4), (STATE_FORMAT_2, 2)] {
        move_rows(db, table, STATE, 10_000, |key, value, to| {
            let (version, rest) = split_fixed_version(format, key, value)?;
            let stored = if format >= 3 {
                with_version(version, rest)
            } else {
                encode_versioned(key, version, rest)
            };
            to.insert(state_key::pack(key).as_slice(), stored.as_slice())
                .map(drop)
                .map_err(|e| e.to_string())
        })?;
    }
    // History: keyed by the key's hash; a format-1 entry keeps only its delete flag and hash.
    move_rows(
        db,
        HISTORY_FORMAT_2,
        HISTORY,
        10_000,
        |(key, block, tx), value, to| {
            let entry =
                if value.len() == HISTORY_ENTRY_LEN {
                    let mut entry = [0u8; HISTORY_ENTRY_LEN];
                    entry.copy_from_slice(value);
                    entry
                } else {
                    let (is_delete, written) = v1_entry(value).ok_or_else(|| {
                format!("history entry {key:?} at block {block} transaction {tx} is undecodable")
            })?;
                    encode_modification((!is_delete).then_some(written))
                };
            to.insert((key_hash(key), block, tx), entry.as_slice())
                .map(drop)
                .map_err(|e| e.to_string())
        },
    )?;
    write_format(db)?;
    tracing::info!(
        from,
        to = FORMAT_VERSION,
        seconds = started.elapsed().as_secs_f64(),
        "ledger store migrated"
    );
    Ok(from)
}

/// A value of formats 1 to 4: `u64 block ‖ u32 tx ‖ rest` (from format 3 the rest starts with
/// the encoding byte, so it is at least 13 bytes).
fn split_fixed_version<'b>(
    format: u64,
    key: &str,
    bytes: &'b [u8],
) -> Result<(Version, &'b [u8]), String> {
    let least = if format >= 3 { 13 } else { 12 };
    if bytes.len() < least {
        return Err(format!(
            "format-{format} state value of {key:?} is {} bytes",
            bytes.len()
        ));
    }
    let version = Reader::new("state value", &bytes[..12])
        .version()
        .map_err(|e| e.to_string())?;
    Ok((version, &bytes[12..]))
}

/// Move every row of `old` into `new`, converted, `batch` rows per write transaction
/// ([`move_batches`]).
fn move_rows<OK, OV, NK, NV>(
    db: &redb::Database,
    old: TableDefinition<OK, OV>,
    new: TableDefinition<NK, NV>,
    batch: usize,
    convert: impl Fn(
        OK::SelfType<'_>,
        OV::SelfType<'_>,
        &mut redb::Table<'_, NK, NV>,
    ) -> Result<(), String>,
) -> Result<(), String>
where
    OK: redb::Key + 'static,
    OV: redb::Value + 'static,
    NK: redb::Key + 'static,
    NV: redb::Value + 'static,
{
    move_batches(db, old, batch, |wtx, rows| {
        let mut to = wtx.open_table(new).map_err(|e| e.to_string())?;
        for (key, value) in rows {
            convert(OK::from_bytes(key), OV::from_bytes(value), &mut to)?;
        }
        Ok(())
    })
}

/// Take every row out of `old`, `batch` rows per write transaction, and hand each batch (keys
/// and values as bytes) to `place` in the same transaction, so a batch is moved whole or not at
/// all and an interrupted move resumes where it stopped; then drop `old`. Nothing if `old` does
/// not exist. Every migration between storage formats is one of these.
fn move_batches<OK, OV>(
    db: &redb::Database,
    old: TableDefinition<OK, OV>,
    batch: usize,
    place: impl Fn(&redb::WriteTransaction, &[(Vec<u8>, Vec<u8>)]) -> Result<(), String>,
) -> Result<(), String>
where
    OK: redb::Key + 'static,
    OV: redb::Value + 'static,
{
    loop {
        let wtx = db.begin_write().map_err(|e| e.to_string())?;
        let rows = {
            let mut from = match wtx.open_table(old) {
                Ok(table) => table,
                Err(redb::TableError::TableDoesNotExist(_)) => return Ok(()),
                Err(e) => return Err(e.to_string()),
            };
            let mut rows = Vec::with_capacity(batch);
            while rows.len() < batch {
                let Some((key, value)) = from.pop_first().map_err(|e| e.to_string())? else {
                    break;
                };
                rows.push((
                    OK::as_bytes(&key.value()).as_ref().to_vec(),
                    OV::as_bytes(&value.value()).as_ref().to_vec(),
                ));
            }
            rows
        };
        if rows.is_empty() {
            wtx.delete_table(old).map_err(|e| e.to_string())?;
            wtx.commit().map_err(|e| e.to_string())?;
            return Ok(());
        }
        place(&wtx, &rows)?;
        wtx.commit().map_err(|e| e.to_string())?;
    }
}

/// Formats 1 to 4 → 5: each block moves from `blocks` (one row each) to `block_chunks`, 64 blocks
/// per write transaction; format 1's canonical blocks are compacted on the way ([`put_block`]),
/// stored forms are kept.
fn move_blocks(db: &redb::Database) -> Result<(), String> {
    move_batches(db, BLOCKS_FORMAT_4, 64, |wtx, rows| {
        let mut blocks = wtx.open_table(BLOCKS).map_err(|e| e.to_string())?;
        let mut certs = wtx.open_table(CERTS).map_err(|e| e.to_string())?;
        for (number, bytes) in rows {
            let number = <u64 as redb::Value>::from_bytes(number);
            if bytes.starts_with(COMPACT_TAG) || bytes.starts_with(COMPRESSED_TAG) {
                put_stored_block(&mut blocks, number, bytes).map_err(|e| e.to_string())
            } else {
                put_block(&mut blocks, &mut certs, number, bytes).map_err(|e| e.to_string())
            }
            .map_err(|e| format!("moving block {number}: {e}"))?;
        }
        Ok(())
    })
}

/// Formats 1 to 4 → 5: the transaction index keyed by each id's 32 bytes.
fn move_tx_ids(db: &redb::Database) -> Result<(), String> {
    move_rows(
        db,
        TX_IDS_FORMAT_4,
        TX_IDS,
        10_000,
        |tx_id, position, to| {
            let packed = packed_tx_id(tx_id).ok_or_else(|| {
            format!("the transaction index holds {tx_id:?}, which is not a transaction id (64 hex digits)")
        })?;
            to.insert(packed, position)
                .map(drop)
                .map_err(|e| e.to_string())
        },
    )
}

/// The message for a store this build cannot read.
pub fn unsupported_format(found: u64) -> String {
    format!(
        "the ledger store has storage format {found}, but this tom reads formats 1 to {FORMAT_VERSION} (format {found} was written by a newer tom): run that newer tom on this data directory, or restore a backup written by this version"
    )
}

/// The store's format: `None` for a new (empty) store, 1 for a store from before `meta`.
pub fn format_of(db: &impl redb::ReadableDatabase) -> Result<Option<u64>, String> {
    let txn = db.begin_read().map_err(|e| e.to_string())?;
    match txn.open_table(META) {
        Ok(meta) => Ok(meta
            .get(FORMAT_KEY)
            .map_err(|e| e.to_string())?
            .map(|v| v.value())),
        Err(redb::TableError::TableDoesNotExist(_)) => match txn.open_table(BLOCKS_FORMAT_4) {
            Ok(_) => Ok(Some(1)),
            Err(redb::TableError::TableDoesNotExist(_)) => Ok(None),
            Err(e) => Err(e.to_string()),
        },
        Err(e) => Err(e.to_string()),
    }
}

fn write_format(db: &redb::Database) -> Result<(), String> {
    let mut wtx = db.begin_write().map_err(|e| e.to_string())?;
    wtx.set_durability(redb::Durability::Immediate)
        .map_err(|e| e.to_string())?;
    {
        let mut meta = wtx.open_table(META).map_err(|e| e.to_string())?;
        meta.insert(FORMAT_KEY, FORMAT_VERSION)
            .map_err(|e| e.to_string())?;
        wtx.open_table(CERTS).map_err(|e| e.to_string())?;
        wtx.open_table(super::dictionary::DICTIONARIES)
            .map_err(|e| e.to_string())?;
    }
    wtx.commit().map_err(|e| e.to_string())
}

/// Committed state as of one read transaction: what simulations run against. Many may exist
/// at once, on any threads; each sees the ledger as of the last block committed before it began.
pub struct Snapshot {
    state: redb::ReadOnlyTable<&'static [u8], &'static [u8]>,
    history: redb::ReadOnlyTable<(KeyHash, u64, u32), &'static [u8]>,
    tx_ids: TxIndex,
    blocks: redb::ReadOnlyTable<(u64, u32), &'static [u8]>,
    certs: redb::ReadOnlyTable<&'static [u8], &'static [u8]>,
}

impl Snapshot {
    pub fn begin(db: &redb::Database) -> Result<Snapshot, StubError> {
        use redb::ReadableDatabase;
        let txn = db.begin_read().map_err(|e| stub_error("begin read", e))?;
        Snapshot::of(&txn)
    }

    /// The state as of `txn` (to read blocks consistently with it in the same transaction).
    pub fn of(txn: &redb::ReadTransaction) -> Result<Snapshot, StubError> {
        Ok(Snapshot {
            state: txn
                .open_table(STATE)
                .map_err(|e| stub_error("open state", e))?,
            history: txn
                .open_table(HISTORY)
                .map_err(|e| stub_error("open history", e))?,
            tx_ids: txn
                .open_table(TX_IDS)
                .map_err(|e| stub_error("open tx_ids", e))?,
            blocks: txn
                .open_table(BLOCKS)
                .map_err(|e| stub_error("open blocks", e))?,
            certs: txn
                .open_table(CERTS)
                .map_err(|e| stub_error("open certs", e))?,
        })
    }

    /// Where a transaction id was committed, if it was.
    pub fn tx_status(&self, tx_id: &str) -> Result<Option<(u64, u32, u8)>, StubError> {
        let Some(packed) = packed_tx_id(tx_id) else {
            return Ok(None);
        };
        Ok(self
            .tx_ids
            .get(packed)
            .map_err(|e| stub_error("tx_ids", e))?
            .map(|g| g.value()))
    }
}

impl CommittedState for Snapshot {
    fn get(&self, key: &str) -> Result<Option<VersionedValue>, StubError> {
        get_versioned(&self.state, key)
    }

    fn range(&self, start: &str, end: &str) -> Result<Vec<(String, VersionedValue)>, StubError> {
        range_versioned(&self.state, start, end, usize::MAX)
    }

    fn range_limited(
        &self,
        start: &str,
        end: &str,
        limit: usize,
    ) -> Result<Vec<(String, VersionedValue)>, StubError> {
        range_versioned(&self.state, start, end, limit)
    }

    fn history(&self, key: &str) -> Result<Vec<KeyModification>, StubError> {
        history_of(&self.history, &self.state, &self.blocks, &self.certs, key)
    }
}

/// The state as the committer validates against it: committed blocks plus the valid
/// transactions already applied in the block being cut, so a later transaction in the same
/// block that read what an earlier one wrote is invalidated, as on a Fabric peer.
pub struct BlockInProgress<'a, 't> {
    pub state: &'a redb::Table<'t, &'static [u8], &'static [u8]>,
}

impl CommittedState for BlockInProgress<'_, '_> {
    fn get(&self, key: &str) -> Result<Option<VersionedValue>, StubError> {
        get_versioned(self.state, key)
    }

    // Validation compares versions only: no value is decompressed for it.
    fn version(&self, key: &str) -> Result<Option<Version>, StubError> {
        match self
            .state
            .get(state_key::pack(key).as_slice())
            .map_err(|e| stub_error("get", e))?
        {
            None => Ok(None),
            Some(guard) => decode_version(key, guard.value()).map(Some),
        }
    }

    fn range_versions(&self, start: &str, end: &str) -> Result<Vec<(String, Version)>, StubError> {
        let mut out = Vec::new();
        for row in packed_range(self.state, start, end)? {
            let (key, value) = row.map_err(|e| stub_error("range", e))?;
            let key = unpack_key(key.value())?;
            let version = decode_version(&key, value.value())?;
            out.push((key, version));
        }
        Ok(out)
    }

    fn range(&self, start: &str, end: &str) -> Result<Vec<(String, VersionedValue)>, StubError> {
        range_versioned(self.state, start, end, usize::MAX)
    }

    fn range_limited(
        &self,
        start: &str,
        end: &str,
        limit: usize,
    ) -> Result<Vec<(String, VersionedValue)>, StubError> {
        range_versioned(self.state, start, end, limit)
    }

    fn history(&self, _key: &str) -> Result<Vec<KeyModification>, StubError> {
        // Validation never reads history (Fabric does not version history reads).
        Err(StubError("history is not part of MVCC validation".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_and_modifications_round_trip() {
        let v = Version { block: 7, tx: 3 };
        let bytes = encode_versioned("k", v, b"hello");
        assert_eq!(
            decode_versioned("k", &bytes).unwrap(),
            VersionedValue {
                value: b"hello".to_vec(),
                version: v
            }
        );
        assert!(decode_versioned("k", &bytes[..1]).is_err());
        assert!(decode_versioned("k", &bytes[..2]).is_err());
        // The version takes a byte per 7 bits of each number.
        assert_eq!(bytes.len(), 1 + 1 + 1 + 5);
        let late = Version {
            block: 300_000,
            tx: 130,
        };
        let bytes = encode_versioned("k", late, b"hello");
        assert_eq!(bytes.len(), 3 + 2 + 1 + 5);
        assert_eq!(decode_versioned("k", &bytes).unwrap().version, late);

        // A transaction id (an index entry's value) is kept as its 32 bytes.
        let tx_id = hex::encode(sha256(b"tx"));
        let bytes = encode_versioned("k", v, tx_id.as_bytes());
        assert_eq!(
            (bytes.len(), value_encoding(&bytes)),
            (3 + 32, Some(VALUE_HEX_64))
        );
        assert_eq!(
            decode_versioned("k", &bytes).unwrap().value,
            tx_id.as_bytes()
        );
        // Upper-case or shorter hex is not a transaction id: kept as it is.
        let upper = tx_id.to_uppercase();
        assert_eq!(
            value_encoding(&encode_versioned("k", v, upper.as_bytes())),
            Some(VALUE_AS_IS)
        );
        // An index entry whose value is its key's last attribute stores nothing more.
        let index_key = format!("\0tom.by-time\0{}\0{tx_id}\0", "01796053047149528857");
        let bytes = encode_versioned(&index_key, v, tx_id.as_bytes());
        assert_eq!(
            (bytes.len(), value_encoding(&bytes)),
            (3, Some(VALUE_LAST_ATTRIBUTE))
        );
        assert_eq!(
            decode_versioned(&index_key, &bytes).unwrap().value,
            tx_id.as_bytes()
        );
        // Not when the value only ends the last attribute, or the key is not composite.
        let partial = format!("\0tom.by-time\0x{tx_id}\0");
        assert_ne!(
            value_encoding(&encode_versioned(&partial, v, tx_id.as_bytes())),
            Some(VALUE_LAST_ATTRIBUTE)
        );
        assert_ne!(
            value_encoding(&encode_versioned(&tx_id, v, tx_id.as_bytes())),
            Some(VALUE_LAST_ATTRIBUTE)
        );
        // The same bytes under a key without that attribute are refused, not made up.
        let err = decode_versioned("plain", &bytes).unwrap_err().to_string();
        assert!(err.contains("last attribute"), "{err}");
        // A document is compressed, and reads back whole.
        let document = serde_json::to_vec(&serde_json::json!({
            "id": "reading-1", "kind": "vehicle-count", "generated_by": "tl-1",
            "derived_from": ["reading-0"], "location": "crossing 4, north approach",
            "recorded": { "tx_id": tx_id, "by": { "id": "Org1MSP/traffic-light-1" } },
        }))
        .unwrap();
        assert!(document.len() >= COMPRESS_FROM);
        let bytes = encode_versioned("k", v, &document);
        assert_eq!(value_encoding(&bytes), Some(VALUE_ZSTD));
        assert!(bytes.len() < 3 + document.len());
        assert_eq!(decode_versioned("k", &bytes).unwrap().value, document);
        // Damaged bytes are an error that names the key, never a wrong value.
        let mut damaged = bytes.clone();
        damaged.truncate(damaged.len() - 3);
        let err = decode_versioned("doc-key", &damaged)
            .unwrap_err()
            .to_string();
        assert!(err.contains("doc-key"), "{err}");
        let mut unknown = bytes.clone();
        unknown[2] = 9;
        let err = decode_versioned("doc-key", &unknown)
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown value encoding 9"), "{err}");

        assert_eq!(encode_modification(None)[0], 1);
        assert_eq!(encode_modification(Some(b"v"))[1..], sha256(b"v")[..16]);
        let v1 = encode_modification_v1("tx1", Timestamp::from_seconds(3), None);
        assert_eq!(v1_entry(&v1), Some((true, &b""[..])));
        let v1 = encode_modification_v1("tx1", Timestamp::from_seconds(3), Some(b"v"));
        assert_eq!(v1_entry(&v1), Some((false, &b"v"[..])));
    }

    #[test]
    fn compact_blocks_expand_to_their_canonical_bytes() {
        let creator = tom_contract::Creator {
            msp_id: "Org1MSP".into(),
            certificate_pem: b"-----BEGIN CERTIFICATE----- one".to_vec(),
        };
        let proposal = |n: u8, creator: &tom_contract::Creator| {
            codec::Proposal {
                tx_id: format!("tx{n}"),
                nonce: vec![n; 24],
                timestamp: Timestamp::from_seconds(5),
                creator: creator.clone(),
                function: "F".into(),
                argument: vec![n],
            }
            .encode()
        };
        let other = tom_contract::Creator {
            certificate_pem: b"-----BEGIN CERTIFICATE----- two, longer".to_vec(),
            ..creator.clone()
        };
        let rwset = tom_contract::simulation::ReadWriteSet::default();
        let txs: Vec<Vec<u8>> = [(1, &creator), (2, &other), (3, &creator)]
            .iter()
            .map(|(n, c)| {
                codec::encode_tx(
                    &proposal(*n, c),
                    b"sig",
                    &rwset,
                    b"r",
                    codec::ValidationCode::Valid,
                )
            })
            .collect();
        let canonical = RawBlock::encode(b"header", &txs, b"signature");
        let (stored, certificates) = compact_block(&canonical).unwrap();
        assert_eq!(certificates.len(), 3);
        // The certificates are cut out (each leaves a 36-byte reference: offset and hash) and
        // the rest is compressed.
        assert!(stored.starts_with(COMPRESSED_TAG));
        let mut r = Reader::new("stored block", &stored);
        let (refs, compressed) = parse_compact(&mut r, COMPRESSED_TAG).unwrap();
        assert_eq!(refs.len(), 3);
        let cut = 2 * creator.certificate_pem.len() + other.certificate_pem.len();
        assert_eq!(
            inflate("stored block", compressed).unwrap().len(),
            canonical.len() - cut
        );

        let dir = tempfile::tempdir().unwrap();
        let db = redb::Database::create(dir.path().join("t.redb")).unwrap();
        let wtx = db.begin_write().unwrap();
        {
            let mut blocks = wtx.open_table(BLOCKS).unwrap();
            let mut certs = wtx.open_table(CERTS).unwrap();
            put_block(&mut blocks, &mut certs, 1, &canonical).unwrap();
            // Two distinct certificates, each stored once.
            assert_eq!(redb::ReadableTableMetadata::len(&certs).unwrap(), 2);
            assert_eq!(read_block(&blocks, &certs, 1).unwrap().unwrap(), canonical);
            // A canonical (format 1) block reads as it is.
            put_stored_block(&mut blocks, 2, &canonical).unwrap();
            assert_eq!(read_block(&blocks, &certs, 2).unwrap().unwrap(), canonical);
            // Stored in chunks, which read back whole, in order, block by block.
            let big = canonical.repeat(5);
            put_stored_block(&mut blocks, 4, &big).unwrap();
            assert_eq!(
                blocks.range(chunks_of(4)).unwrap().count(),
                big.len().div_ceil(BLOCK_CHUNK)
            );
            assert!(big.len() > 2 * BLOCK_CHUNK);
            put_stored_block(&mut blocks, 5, b"short").unwrap();
            let all: Vec<(u64, Vec<u8>)> = StoredBlocks::from(&blocks, 4)
                .unwrap()
                .map(Result::unwrap)
                .collect();
            assert_eq!(all, vec![(4, big.clone()), (5, b"short".to_vec())]);
            // Replacing a block leaves none of its old chunks behind.
            put_stored_block(&mut blocks, 4, b"tiny").unwrap();
            assert_eq!(
                stored_block(&blocks, 4).unwrap().as_deref(),
                Some(&b"tiny"[..])
            );
            assert_eq!(last_block_number(&blocks).unwrap(), Some(5));
            // A missing chunk is a damaged block, named, never a shorter one.
            put_stored_block(&mut blocks, 4, &big).unwrap();
            blocks.remove((4, 1)).unwrap();
            let err = stored_block(&blocks, 4).unwrap_err();
            assert!(
                err.contains("block 4: chunk 1 of its stored form is missing"),
                "{err}"
            );
            let err = StoredBlocks::from(&blocks, 3)
                .unwrap()
                .next()
                .unwrap()
                .unwrap_err();
            assert!(
                matches!(err, BlockReadError::Damaged { block: 4, .. }),
                "{err}"
            );
            remove_block(&mut blocks, 4).unwrap();
            remove_block(&mut blocks, 5).unwrap();
            assert_eq!(last_block_number(&blocks).unwrap(), Some(2));
            // A certificate missing from `certs` is an error that names it.
            let hash = sha256(&creator.certificate_pem);
            certs.remove(hash.as_slice()).unwrap();
            let err = read_block(&blocks, &certs, 1).unwrap_err();
            assert!(err.contains(&hex::encode(hash)), "{err}");
        }
    }
}
