//! The canonical bytes of the embedded ledger: proposals, transactions and blocks.
//!
//! Everything that is hashed or signed is encoded here, and only here, so the node that writes
//! the block log and `tom verify` that re-reads it cannot disagree on a byte. The encoding is a
//! plain length-prefixed binary one (no serde, no maps), chosen because it is unambiguous and
//! trivially deterministic:
//!
//! * integers are big-endian and fixed width (`u8`, `u32`, `u64`, `i32`, `i64`);
//! * a byte string is its length as `u32` followed by the bytes; a text is the byte string of its
//!   UTF-8 (decoding rejects invalid UTF-8);
//! * an optional value is `u8` 0 (absent) or 1 followed by the value;
//! * a hash is 32 raw bytes (SHA-256);
//! * each structure starts with a 4-byte tag and a version byte, so bytes of one kind can never
//!   be mistaken for another.
//!
//! The structures, field by field:
//!
//! ```text
//! proposal  = "TOMP" 1  text tx_id  bytes nonce  i64 seconds  i32 nanos  text msp_id
//!             bytes certificate_pem  text function  bytes argument
//! tx        = "TOMT" 1  bytes proposal  bytes creator_signature  rwset  bytes response  u8 code
//! rwset     = u32 n (text key  opt version)*                         -- reads, ascending key
//!             u32 n (text start  text end  opt text last_key  u32 m (text key  version)*)*
//!             u32 n (text key  opt bytes value)*                     -- writes, ascending key
//!             opt (text event_name  bytes event_payload)
//! version   = u64 block  u32 tx
//! header    = "TOMH" 1  u64 number  hash previous_hash  hash data_hash  i64 seconds  i32 nanos
//!             u32 n  hash tx_hash*
//! block     = "TOMB" 1  bytes header  u32 n  bytes tx*  bytes node_signature
//! ```
//!
//! `tx_hash` is SHA-256 of a transaction's bytes, `data_hash` is SHA-256 of the concatenated
//! `tx_hash`es (listing them in the header is what lets `verify` name the tampered
//! transaction), `previous_hash` is SHA-256 of the previous block's header bytes (all zeros for
//! the genesis block 0), and `node_signature` is the node's ECDSA P-256/SHA-256 signature (DER)
//! over the header bytes. The creator signature is over the proposal bytes, exactly as stored.

use std::collections::BTreeMap;

use tom_contract::simulation::{ChaincodeEvent, RangeRead, ReadWriteSet, Version};
use tom_contract::{Creator, Timestamp};

/// A SHA-256 digest.
pub type Hash = [u8; 32];

/// SHA-256 of `bytes`.
pub fn sha256(bytes: &[u8]) -> Hash {
    let digest = ring::digest::digest(&ring::digest::SHA256, bytes);
    let mut hash = [0u8; 32];
    hash.copy_from_slice(digest.as_ref());
    hash
}

/// Why bytes could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what}: {detail} (at byte {offset})")]
pub struct DecodeError {
    pub what: &'static str,
    pub offset: usize,
    pub detail: String,
}

/// How a transaction in a block fared at validation, numbered as Fabric's `TxValidationCode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum ValidationCode {
    Valid = 0,
    MvccReadConflict = 11,
    PhantomReadConflict = 12,
}

impl ValidationCode {
    pub fn from_u8(code: u8) -> Option<Self> {
        match code {
            0 => Some(ValidationCode::Valid),
            11 => Some(ValidationCode::MvccReadConflict),
            12 => Some(ValidationCode::PhantomReadConflict),
            _ => None,
        }
    }

    pub fn is_valid(self) -> bool {
        self == ValidationCode::Valid
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ValidationCode::Valid => "VALID",
            ValidationCode::MvccReadConflict => "MVCC_READ_CONFLICT",
            ValidationCode::PhantomReadConflict => "PHANTOM_READ_CONFLICT",
        }
    }
}

// --- primitives ---------------------------------------------------------------------------------

/// Appends canonical primitives to a buffer.
#[derive(Default)]
pub struct Writer {
    pub buf: Vec<u8>,
}

impl Writer {
    pub fn with_capacity(capacity: usize) -> Self {
        Writer {
            buf: Vec::with_capacity(capacity),
        }
    }

    pub fn tag(&mut self, tag: &[u8; 4]) {
        self.buf.extend_from_slice(tag);
        self.buf.push(1);
    }

    pub fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }

    pub fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }

    pub fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }

    pub fn i32(&mut self, v: i32) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }

    pub fn i64(&mut self, v: i64) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }

    pub fn count(&mut self, n: usize) {
        // Nothing the ledger stores comes near 4 GiB; saturate rather than wrap if it ever did,
        // so the decoder fails loudly instead of misreading.
        self.u32(u32::try_from(n).unwrap_or(u32::MAX));
    }

    pub fn bytes(&mut self, v: &[u8]) {
        self.count(v.len());
        self.buf.extend_from_slice(v);
    }

    pub fn text(&mut self, v: &str) {
        self.bytes(v.as_bytes());
    }

    pub fn hash(&mut self, v: &Hash) {
        self.buf.extend_from_slice(v);
    }

    pub fn version(&mut self, v: Version) {
        self.u64(v.block);
        self.u32(v.tx);
    }

    pub fn opt_version(&mut self, v: Option<Version>) {
        match v {
            None => self.u8(0),
            Some(v) => {
                self.u8(1);
                self.version(v);
            }
        }
    }
}

/// Reads canonical primitives, failing with the offset and what was being read.
pub struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
    what: &'static str,
}

impl<'a> Reader<'a> {
    pub fn new(what: &'static str, bytes: &'a [u8]) -> Self {
        Reader {
            bytes,
            pos: 0,
            what,
        }
    }

    pub fn error(&self, detail: impl Into<String>) -> DecodeError {
        DecodeError {
            what: self.what,
            offset: self.pos,
            detail: detail.into(),
        }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|end| *end <= self.bytes.len());
        let Some(end) = end else {
            return Err(self.error(format!(
                "truncated: {n} more bytes needed, {} left",
                self.bytes.len() - self.pos
            )));
        };
        let slice = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(slice)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    pub fn tag(&mut self, tag: &[u8; 4]) -> Result<(), DecodeError> {
        let found = self.take(5)?;
        if &found[..4] != tag || found[4] != 1 {
            self.pos -= 5;
            return Err(self.error(format!(
                "expected tag {}/1, found {:?}",
                String::from_utf8_lossy(tag),
                String::from_utf8_lossy(found)
            )));
        }
        Ok(())
    }

    pub fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }

    pub fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    pub fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    pub fn i32(&mut self) -> Result<i32, DecodeError> {
        Ok(i32::from_be_bytes(self.array()?))
    }

    pub fn i64(&mut self) -> Result<i64, DecodeError> {
        Ok(i64::from_be_bytes(self.array()?))
    }

    /// A count of items that each take at least `min_item` bytes: bounded by what is left, so a
    /// corrupt count cannot make the decoder allocate wildly.
    pub fn count(&mut self, min_item: usize) -> Result<usize, DecodeError> {
        let n = self.u32()? as usize;
        if n.saturating_mul(min_item.max(1)) > self.bytes.len() - self.pos {
            return Err(self.error(format!(
                "count {n} exceeds the remaining {} bytes",
                self.bytes.len() - self.pos
            )));
        }
        Ok(n)
    }

    pub fn bytes(&mut self) -> Result<&'a [u8], DecodeError> {
        let n = self.u32()? as usize;
        self.take(n)
    }

    pub fn text(&mut self) -> Result<&'a str, DecodeError> {
        let bytes = self.bytes()?;
        std::str::from_utf8(bytes).map_err(|e| self.error(format!("text is not UTF-8: {e}")))
    }

    pub fn hash(&mut self) -> Result<Hash, DecodeError> {
        self.array()
    }

    pub fn flag(&mut self) -> Result<bool, DecodeError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            other => Err(self.error(format!("option flag must be 0 or 1, found {other}"))),
        }
    }

    pub fn version(&mut self) -> Result<Version, DecodeError> {
        Ok(Version {
            block: self.u64()?,
            tx: self.u32()?,
        })
    }

    pub fn opt_version(&mut self) -> Result<Option<Version>, DecodeError> {
        if self.flag()? {
            Ok(Some(self.version()?))
        } else {
            Ok(None)
        }
    }

    pub fn finish(self) -> Result<(), DecodeError> {
        if self.pos != self.bytes.len() {
            return Err(self.error(format!("{} trailing bytes", self.bytes.len() - self.pos)));
        }
        Ok(())
    }
}

// --- proposals ----------------------------------------------------------------------------------

/// What a creator signs: one contract call, bound to a transaction id and a timestamp.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proposal {
    /// Hex SHA-256 of `nonce ‖ msp_id ‖ certificate_pem` (Fabric's derivation).
    pub tx_id: String,
    pub nonce: Vec<u8>,
    pub timestamp: Timestamp,
    pub creator: Creator,
    pub function: String,
    pub argument: Vec<u8>,
}

impl Proposal {
    /// The transaction id the nonce and creator imply.
    pub fn derived_tx_id(&self) -> String {
        let mut bytes = Vec::with_capacity(
            self.nonce.len() + self.creator.msp_id.len() + self.creator.certificate_pem.len(),
        );
        bytes.extend_from_slice(&self.nonce);
        bytes.extend_from_slice(self.creator.msp_id.as_bytes());
        bytes.extend_from_slice(&self.creator.certificate_pem);
        hex::encode(sha256(&bytes))
    }

    /// The canonical bytes the creator signs.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(
            64 + self.tx_id.len() + self.creator.certificate_pem.len() + self.argument.len(),
        );
        w.tag(b"TOMP");
        w.text(&self.tx_id);
        w.bytes(&self.nonce);
        w.i64(self.timestamp.seconds);
        w.i32(self.timestamp.nanos);
        w.text(&self.creator.msp_id);
        w.bytes(&self.creator.certificate_pem);
        w.text(&self.function);
        w.bytes(&self.argument);
        w.buf
    }

    pub fn decode(bytes: &[u8]) -> Result<Proposal, DecodeError> {
        let mut r = Reader::new("proposal", bytes);
        r.tag(b"TOMP")?;
        let tx_id = r.text()?.to_owned();
        let nonce = r.bytes()?.to_vec();
        let timestamp = Timestamp {
            seconds: r.i64()?,
            nanos: r.i32()?,
        };
        let msp_id = r.text()?.to_owned();
        let certificate_pem = r.bytes()?.to_vec();
        let function = r.text()?.to_owned();
        let argument = r.bytes()?.to_vec();
        r.finish()?;
        Ok(Proposal {
            tx_id,
            nonce,
            timestamp,
            creator: Creator {
                msp_id,
                certificate_pem,
            },
            function,
            argument,
        })
    }
}

// --- transactions -------------------------------------------------------------------------------

/// Encode one transaction as it is stored in a block.
pub fn encode_tx(
    proposal: &[u8],
    signature: &[u8],
    rwset: &ReadWriteSet,
    response: &[u8],
    code: ValidationCode,
) -> Vec<u8> {
    let mut w = Writer::with_capacity(
        proposal.len() + signature.len() + response.len() + 256 * (1 + rwset.writes.len()),
    );
    w.tag(b"TOMT");
    w.bytes(proposal);
    w.bytes(signature);
    encode_rwset(&mut w, rwset);
    w.bytes(response);
    w.u8(code as u8);
    w.buf
}

fn encode_rwset(w: &mut Writer, rwset: &ReadWriteSet) {
    w.count(rwset.reads.len());
    for (key, version) in &rwset.reads {
        w.text(key);
        w.opt_version(*version);
    }
    w.count(rwset.range_reads.len());
    for range in &rwset.range_reads {
        w.text(&range.start);
        w.text(&range.end);
        match &range.last_key {
            None => w.u8(0),
            Some(last) => {
                w.u8(1);
                w.text(last);
            }
        }
        w.count(range.seen.len());
        for (key, version) in &range.seen {
            w.text(key);
            w.version(*version);
        }
    }
    w.count(rwset.writes.len());
    for (key, value) in &rwset.writes {
        w.text(key);
        match value {
            None => w.u8(0),
            Some(value) => {
                w.u8(1);
                w.bytes(value);
            }
        }
    }
    match &rwset.event {
        None => w.u8(0),
        Some(event) => {
            w.u8(1);
            w.text(&event.name);
            w.bytes(&event.payload);
        }
    }
}

fn decode_rwset(r: &mut Reader<'_>) -> Result<ReadWriteSet, DecodeError> {
    let mut reads = BTreeMap::new();
    for _ in 0..r.count(5)? {
        let key = r.text()?.to_owned();
        let version = r.opt_version()?;
        reads.insert(key, version);
    }
    let mut range_reads = Vec::new();
    for _ in 0..r.count(13)? {
        let start = r.text()?.to_owned();
        let end = r.text()?.to_owned();
        let last_key = if r.flag()? {
            Some(r.text()?.to_owned())
        } else {
            None
        };
        let mut seen = Vec::new();
        for _ in 0..r.count(16)? {
            let key = r.text()?.to_owned();
            seen.push((key, r.version()?));
        }
        range_reads.push(RangeRead {
            start,
            end,
            last_key,
            seen,
        });
    }
    let mut writes = BTreeMap::new();
    for _ in 0..r.count(5)? {
        let key = r.text()?.to_owned();
        let value = if r.flag()? {
            Some(r.bytes()?.to_vec())
        } else {
            None
        };
        writes.insert(key, value);
    }
    let event = if r.flag()? {
        let name = r.text()?.to_owned();
        Some(ChaincodeEvent {
            name,
            payload: r.bytes()?.to_vec(),
        })
    } else {
        None
    };
    Ok(ReadWriteSet {
        reads,
        range_reads,
        writes,
        event,
    })
}

/// A transaction as stored in a block, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transaction {
    /// The proposal bytes exactly as signed.
    pub proposal_bytes: Vec<u8>,
    pub proposal: Proposal,
    pub creator_signature: Vec<u8>,
    pub rwset: ReadWriteSet,
    pub response: Vec<u8>,
    pub code: ValidationCode,
}

impl Transaction {
    /// The transaction id from the proposal at the start of a transaction's bytes, even when the
    /// rest does not decode (so a damaged transaction can still be named).
    pub fn peek_tx_id(bytes: &[u8]) -> Option<String> {
        let mut r = Reader::new("transaction", bytes);
        r.tag(b"TOMT").ok()?;
        Proposal::decode(r.bytes().ok()?).ok().map(|p| p.tx_id)
    }

    pub fn decode(bytes: &[u8]) -> Result<Transaction, DecodeError> {
        let mut r = Reader::new("transaction", bytes);
        r.tag(b"TOMT")?;
        let proposal_bytes = r.bytes()?.to_vec();
        let proposal = Proposal::decode(&proposal_bytes)?;
        let creator_signature = r.bytes()?.to_vec();
        let rwset = decode_rwset(&mut r)?;
        let response = r.bytes()?.to_vec();
        let code = r.u8()?;
        let code = ValidationCode::from_u8(code)
            .ok_or_else(|| r.error(format!("unknown validation code {code}")))?;
        r.finish()?;
        Ok(Transaction {
            proposal_bytes,
            proposal,
            creator_signature,
            rwset,
            response,
            code,
        })
    }
}

// --- blocks -------------------------------------------------------------------------------------

/// A block header: what the node signs and the next block hashes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockHeader {
    pub number: u64,
    pub previous_hash: Hash,
    pub data_hash: Hash,
    /// When the node cut the block (informational; transactions carry their own timestamps).
    pub timestamp: Timestamp,
    pub tx_hashes: Vec<Hash>,
}

impl BlockHeader {
    /// SHA-256 of the concatenated transaction hashes.
    pub fn data_hash_of(tx_hashes: &[Hash]) -> Hash {
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        for h in tx_hashes {
            ctx.update(h);
        }
        let mut hash = [0u8; 32];
        hash.copy_from_slice(ctx.finish().as_ref());
        hash
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(96 + 32 * self.tx_hashes.len());
        w.tag(b"TOMH");
        w.u64(self.number);
        w.hash(&self.previous_hash);
        w.hash(&self.data_hash);
        w.i64(self.timestamp.seconds);
        w.i32(self.timestamp.nanos);
        w.count(self.tx_hashes.len());
        for h in &self.tx_hashes {
            w.hash(h);
        }
        w.buf
    }

    pub fn decode(bytes: &[u8]) -> Result<BlockHeader, DecodeError> {
        let mut r = Reader::new("block header", bytes);
        r.tag(b"TOMH")?;
        let number = r.u64()?;
        let previous_hash = r.hash()?;
        let data_hash = r.hash()?;
        let timestamp = Timestamp {
            seconds: r.i64()?,
            nanos: r.i32()?,
        };
        let n = r.count(32)?;
        let mut tx_hashes = Vec::with_capacity(n);
        for _ in 0..n {
            tx_hashes.push(r.hash()?);
        }
        r.finish()?;
        Ok(BlockHeader {
            number,
            previous_hash,
            data_hash,
            timestamp,
            tx_hashes,
        })
    }
}

/// A stored block split into its parts, each part's bytes exactly as hashed or signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawBlock<'a> {
    pub header_bytes: &'a [u8],
    pub transactions: Vec<&'a [u8]>,
    pub signature: &'a [u8],
}

impl<'a> RawBlock<'a> {
    pub fn encode(header_bytes: &[u8], transactions: &[Vec<u8>], signature: &[u8]) -> Vec<u8> {
        let size = 16
            + header_bytes.len()
            + signature.len()
            + transactions.iter().map(|t| t.len() + 4).sum::<usize>();
        let mut w = Writer::with_capacity(size);
        w.tag(b"TOMB");
        w.bytes(header_bytes);
        w.count(transactions.len());
        for tx in transactions {
            w.bytes(tx);
        }
        w.bytes(signature);
        w.buf
    }

    pub fn decode(bytes: &'a [u8]) -> Result<RawBlock<'a>, DecodeError> {
        let mut r = Reader::new("block", bytes);
        r.tag(b"TOMB")?;
        let header_bytes = r.bytes()?;
        let n = r.count(4)?;
        let mut transactions = Vec::with_capacity(n);
        for _ in 0..n {
            transactions.push(r.bytes()?);
        }
        let signature = r.bytes()?;
        r.finish()?;
        Ok(RawBlock {
            header_bytes,
            transactions,
            signature,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rwset() -> ReadWriteSet {
        let mut rw = ReadWriteSet::default();
        rw.reads
            .insert("a".into(), Some(Version { block: 3, tx: 1 }));
        rw.reads.insert("b".into(), None);
        rw.range_reads.push(RangeRead {
            start: "\u{0}x\u{0}".into(),
            end: "\u{0}x\u{0}\u{10FFFF}".into(),
            last_key: Some("k".into()),
            seen: vec![("\u{0}x\u{0}1\u{0}".into(), Version { block: 1, tx: 0 })],
        });
        rw.writes.insert("a".into(), Some(b"{\"v\":1}".to_vec()));
        rw.writes.insert("c".into(), None);
        rw.event = Some(ChaincodeEvent {
            name: "ORG".into(),
            payload: b"{}".to_vec(),
        });
        rw
    }

    fn proposal() -> Proposal {
        let creator = Creator {
            msp_id: "Org1MSP".into(),
            certificate_pem: b"-----BEGIN CERTIFICATE-----".to_vec(),
        };
        let mut p = Proposal {
            tx_id: String::new(),
            nonce: vec![7; 24],
            timestamp: Timestamp {
                seconds: 1_780_000_000,
                nanos: 5,
            },
            creator,
            function: "RegisterOrg".into(),
            argument: b"{}".to_vec(),
        };
        p.tx_id = p.derived_tx_id();
        p
    }

    #[test]
    fn transactions_round_trip() {
        let p = proposal();
        let bytes = encode_tx(
            &p.encode(),
            b"sig",
            &rwset(),
            b"resp",
            ValidationCode::MvccReadConflict,
        );
        let tx = Transaction::decode(&bytes).unwrap();
        assert_eq!(tx.proposal, p);
        assert_eq!(tx.rwset, rwset());
        assert_eq!(tx.code, ValidationCode::MvccReadConflict);
        assert_eq!(tx.response, b"resp");
    }

    #[test]
    fn tx_id_matches_the_memory_ledgers_derivation() {
        let identity = tom_fixtures::identity("org1", "orchestrator");
        let creator = Creator {
            msp_id: identity.msp_id.into(),
            certificate_pem: identity.cert_pem.as_bytes().to_vec(),
        };
        let (tx_id, nonce) = crate::ledger::memory::new_tx_id(&creator);
        let p = Proposal {
            tx_id: tx_id.clone(),
            nonce: nonce.to_vec(),
            timestamp: Timestamp::default(),
            creator,
            function: String::new(),
            argument: vec![],
        };
        assert_eq!(p.derived_tx_id(), tx_id);
    }

    #[test]
    fn blocks_round_trip_and_reject_garbage() {
        let header = BlockHeader {
            number: 9,
            previous_hash: [1; 32],
            data_hash: BlockHeader::data_hash_of(&[[2; 32]]),
            timestamp: Timestamp::from_seconds(4),
            tx_hashes: vec![[2; 32]],
        };
        let header_bytes = header.encode();
        assert_eq!(BlockHeader::decode(&header_bytes).unwrap(), header);
        let block = RawBlock::encode(&header_bytes, &[b"tx".to_vec()], b"signature");
        let raw = RawBlock::decode(&block).unwrap();
        assert_eq!(raw.header_bytes, header_bytes.as_slice());
        assert_eq!(raw.transactions, vec![b"tx".as_slice()]);
        // Truncation, a wrong tag and trailing bytes are all errors, never panics.
        assert!(RawBlock::decode(&block[..block.len() - 1]).is_err());
        assert!(RawBlock::decode(&header_bytes).is_err());
        let mut longer = block.clone();
        longer.push(0);
        assert!(RawBlock::decode(&longer)
            .unwrap_err()
            .detail
            .contains("trailing"));
        // A huge count cannot make the decoder allocate.
        let mut w = Writer::default();
        w.tag(b"TOMH");
        w.u64(0);
        w.hash(&[0; 32]);
        w.hash(&[0; 32]);
        w.i64(0);
        w.i32(0);
        w.u32(u32::MAX);
        assert!(BlockHeader::decode(&w.buf)
            .unwrap_err()
            .detail
            .contains("exceeds"));
    }
}
