//! Compression dictionaries for world-state values, trained on the ledger's own values.
//!
//! # Why
//!
//! The contract's large values are small JSON documents of one schema: entities (~1.4 KB, with
//! their signed DSSE envelopes) and ledger records (~0.5 KB). zstd alone finds little to share
//! inside one such document (1,445 → 992 bytes for an entity, 538 → 374 for a record, in the
//! scale bench), while everything they have in common across documents (field names, the
//! envelope's framing, id and key prefixes, the organisation's names) is exactly what a
//! dictionary holds. With a 64 KiB dictionary trained on the ledger's first 4,096 such values,
//! an entity takes ~400 bytes and a record ~170 over the scale bench's million records (the
//! world state 1,285 instead of 1,774 stored bytes per record), and values compress in about
//! half the time.
//!
//! # How
//!
//! * The committer samples the values it writes that are worth compressing; once it has
//!   [`super::EmbeddedOptions::dictionary_samples`] of them it trains a dictionary on a thread of
//!   its own ([`Trainer`]), stores it in the block after training ends (table
//!   `value_dictionaries`, keyed by its id, and `meta["value_dictionary"]` naming the one in
//!   use), and only once that block is durable hands it to endorsers, who compress new values
//!   with it. A value therefore never names a dictionary the store does not hold.
//! * A dictionary's id is the first 8 bytes of its SHA-256: loading checks it, so a damaged
//!   dictionary is refused by name rather than inflating values into something else, and
//!   `tom verify` (which re-derives every value from the block log) would notice either way.
//! * Decoding looks the id up in a process-wide registry ([`lookup`]) that every open of a store
//!   fills from its table ([`load`]): readers stay plain functions of the stored bytes, and the
//!   same dictionary in two stores is one entry. Values written before a store had a dictionary
//!   keep their plain zstd encoding; a dictionary is never removed from a store.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use redb::{ReadableTable, TableDefinition};

/// Dictionary id → the dictionary's bytes (zstd's dictionary format).
pub const DICTIONARIES: TableDefinition<u64, &[u8]> = TableDefinition::new("value_dictionaries");
/// The `meta` key naming the dictionary new values are compressed with.
pub const CURRENT_KEY: &str = "value_dictionary";
/// The size of a trained dictionary: the scale bench's values gained nothing from a larger one
/// (16 KiB: entities 352 bytes, 64 KiB: 333, 112 KiB: 332).
const DICTIONARY_BYTES: usize = 64 << 10;
/// zstd's level for values compressed with a dictionary (higher levels gained under 1%).
const LEVEL: i32 = 3;
/// Values kept for training at most (each is at most a few KB; larger ones are not sampled).
const MAX_SAMPLE_BYTES: usize = 16 << 10;

/// A trained dictionary, prepared for compressing and for decompressing.
pub struct ValueDictionary {
    pub id: u64,
    bytes: Vec<u8>,
    encoder: zstd::dict::EncoderDictionary<'static>,
    decoder: zstd::dict::DecoderDictionary<'static>,
}

impl std::fmt::Debug for ValueDictionary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ValueDictionary({:016x}, {} bytes)",
            self.id,
            self.bytes.len()
        )
    }
}

/// The id of `bytes`: the first 8 bytes of their SHA-256, big-endian.
pub fn id_of(bytes: &[u8]) -> u64 {
    let digest = super::codec::sha256(bytes);
    u64::from_be_bytes(digest[..8].try_into().expect("8 of 32 bytes"))
}

impl ValueDictionary {
    fn new(bytes: Vec<u8>) -> ValueDictionary {
        ValueDictionary {
            id: id_of(&bytes),
            encoder: zstd::dict::EncoderDictionary::copy(&bytes, LEVEL),
            decoder: zstd::dict::DecoderDictionary::copy(&bytes),
            bytes,
        }
    }

    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// `value` compressed with this dictionary (a zstd frame that records its content size).
    pub fn compress(&self, value: &[u8]) -> Option<Vec<u8>> {
        COMPRESSION.with(|slot| {
            let mut slot = slot.borrow_mut();
            let cctx = slot.get_or_insert_with(zstd::zstd_safe::CCtx::create);
            let mut out = Vec::with_capacity(zstd::zstd_safe::compress_bound(value.len()));
            cctx.compress_using_cdict(&mut out, value, self.encoder.as_cdict())
                .ok()?;
            Some(out)
        })
    }

    /// Inflate a frame [`ValueDictionary::compress`] made, of at most `limit` bytes.
    pub fn decompress(&self, frame: &[u8], limit: u64) -> Result<Vec<u8>, String> {
        let size = zstd::zstd_safe::get_frame_content_size(frame)
            .ok()
            .flatten()
            .ok_or("the compressed part has no readable size")?;
        if size > limit {
            return Err(format!(
                "the compressed part claims {size} bytes, more than the {limit} a value may hold"
            ));
        }
        DECOMPRESSION.with(|slot| {
            let mut slot = slot.borrow_mut();
            let dctx = slot.get_or_insert_with(zstd::zstd_safe::DCtx::create);
            let mut out = Vec::with_capacity(size as usize);
            dctx.decompress_using_ddict(&mut out, frame, self.decoder.as_ddict())
                .map_err(|code| {
                    format!(
                        "the compressed part does not inflate with dictionary {:016x}: {}",
                        self.id,
                        zstd::zstd_safe::get_error_name(code)
                    )
                })?;
            if out.len() as u64 != size {
                return Err(format!(
                    "the compressed part inflates to {} bytes, not the {size} it claims",
                    out.len()
                ));
            }
            Ok(out)
        })
    }
}

thread_local! {
    /// One context each per thread, reused: making one costs more than a small value.
    static COMPRESSION: std::cell::RefCell<Option<zstd::zstd_safe::CCtx<'static>>> =
        const { std::cell::RefCell::new(None) };
    static DECOMPRESSION: std::cell::RefCell<Option<zstd::zstd_safe::DCtx<'static>>> =
        const { std::cell::RefCell::new(None) };
}

/// Every dictionary any store opened in this process holds, by id.
static REGISTRY: RwLock<BTreeMap<u64, Arc<ValueDictionary>>> = RwLock::new(BTreeMap::new());

/// The dictionary `id`, if a store holding it was opened.
pub fn lookup(id: u64) -> Option<Arc<ValueDictionary>> {
    REGISTRY
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .get(&id)
        .cloned()
}

/// Register `bytes` (a dictionary read from or about to be written to a store).
fn register(bytes: Vec<u8>) -> Arc<ValueDictionary> {
    let id = id_of(&bytes);
    if let Some(known) = lookup(id) {
        return known;
    }
    let dictionary = Arc::new(ValueDictionary::new(bytes));
    REGISTRY
        .write()
        .unwrap_or_else(PoisonError::into_inner)
        .entry(id)
        .or_insert(dictionary)
        .clone()
}

/// Register every dictionary of the store `txn` reads, checking each against its id, and return
/// the one new values are compressed with, if the store has one.
pub fn load(txn: &redb::ReadTransaction) -> Result<Option<Arc<ValueDictionary>>, String> {
    let table = match txn.open_table(DICTIONARIES) {
        Ok(table) => table,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
        Err(e) => return Err(format!("value dictionaries: {e}")),
    };
    for entry in table
        .iter()
        .map_err(|e| format!("value dictionaries: {e}"))?
    {
        let (id, bytes) = entry.map_err(|e| format!("value dictionaries: {e}"))?;
        let (id, bytes) = (id.value(), bytes.value());
        if id_of(bytes) != id {
            return Err(format!(
                "value dictionary {id:016x} is damaged: its {} bytes hash to {:016x}; the values compressed with it cannot be read (run tom verify)",
                bytes.len(),
                id_of(bytes)
            ));
        }
        register(bytes.to_vec());
    }
    let current = match txn.open_table(super::store::META) {
        Ok(meta) => meta
            .get(CURRENT_KEY)
            .map_err(|e| format!("meta: {e}"))?
            .map(|v| v.value()),
        Err(redb::TableError::TableDoesNotExist(_)) => None,
        Err(e) => return Err(format!("meta: {e}")),
    };
    match current {
        None => Ok(None),
        Some(id) => lookup(id).map(Some).ok_or_else(|| {
            format!("meta names value dictionary {id:016x}, which the store does not hold")
        }),
    }
}

/// [`load`] from a fresh read transaction of `db` (when a store is opened or reopened).
pub fn load_from(db: &redb::Database) -> Result<Option<Arc<ValueDictionary>>, String> {
    use redb::ReadableDatabase;
    let txn = db.begin_read().map_err(|e| e.to_string())?;
    load(&txn)
}

/// Write `dictionary` into the block being committed and make it the one in use.
pub fn store(
    wtx: &redb::WriteTransaction,
    dictionary: &ValueDictionary,
) -> Result<(), redb::Error> {
    wtx.open_table(DICTIONARIES)?
        .insert(dictionary.id, dictionary.bytes())?;
    wtx.open_table(super::store::META)?
        .insert(CURRENT_KEY, dictionary.id)?;
    Ok(())
}

/// The committer's side: samples values as they are committed, trains a dictionary once on a
/// thread of its own when there are enough, and hands it over when training ends.
pub struct Trainer {
    wanted: usize,
    samples: Vec<Vec<u8>>,
    training: Option<std::sync::mpsc::Receiver<Option<Vec<u8>>>>,
    /// Trained, not yet durable in the store.
    pending: Option<Arc<ValueDictionary>>,
    done: bool,
}

impl Trainer {
    /// `wanted` samples before training; 0 never trains. `in_use`: the store has a dictionary.
    pub fn new(wanted: usize, in_use: bool) -> Trainer {
        Trainer {
            wanted,
            samples: Vec::new(),
            training: None,
            pending: None,
            done: in_use || wanted == 0,
        }
    }

    /// Offer a value written by a valid transaction (called for every write while sampling).
    pub fn offer(&mut self, value: &[u8]) {
        if self.done || self.training.is_some() || self.samples.len() >= self.wanted {
            return;
        }
        if value.len() >= super::store::COMPRESS_FROM && value.len() <= MAX_SAMPLE_BYTES {
            self.samples.push(value.to_vec());
        }
    }

    pub fn sampling(&self) -> bool {
        !self.done && self.training.is_none()
    }

    /// Start training if there are enough samples; return a trained dictionary to store with the
    /// next block, if one is ready.
    pub fn ready(&mut self) -> Option<Arc<ValueDictionary>> {
        if self.done {
            return None;
        }
        if self.training.is_none() && self.pending.is_none() && self.samples.len() >= self.wanted {
            let samples = std::mem::take(&mut self.samples);
            let (done, result) = std::sync::mpsc::channel();
            let spawned = std::thread::Builder::new()
                .name("tom-ledger-dictionary".into())
                .spawn(move || {
                    let started = std::time::Instant::now();
                    let trained = zstd::dict::from_samples(&samples, DICTIONARY_BYTES);
                    match &trained {
                        Ok(bytes) => tracing::info!(samples = samples.len(), bytes = bytes.len(), ms = started.elapsed().as_millis() as u64, "embedded ledger: value dictionary trained"),
                        Err(e) => tracing::warn!(error = %e, "embedded ledger: cannot train a value dictionary; values stay compressed without one"),
                    }
                    let _ = done.send(trained.ok());
                });
            match spawned {
                Ok(_) => self.training = Some(result),
                Err(e) => {
                    tracing::warn!(error = %e, "embedded ledger: cannot start dictionary training");
                    self.done = true;
                }
            }
        }
        if let Some(training) = &self.training {
            match training.try_recv() {
                Ok(Some(bytes)) => {
                    self.training = None;
                    self.pending = Some(register(bytes));
                }
                Ok(None) | Err(std::sync::mpsc::TryRecvError::Disconnected) => {
                    self.training = None;
                    self.done = true;
                }
                Err(std::sync::mpsc::TryRecvError::Empty) => {}
            }
        }
        self.pending.clone()
    }

    /// The block holding the pending dictionary is durable: it is the store's from now on.
    pub fn stored(&mut self) -> Option<Arc<ValueDictionary>> {
        let stored = self.pending.take();
        if stored.is_some() {
            self.done = true;
        }
        stored
    }
}

/// The dictionary endorsers compress new values with, shared by the committer and the ledger.
#[derive(Default)]
pub struct InUse(Mutex<Option<Arc<ValueDictionary>>>);

impl InUse {
    pub fn get(&self) -> Option<Arc<ValueDictionary>> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub fn set(&self, dictionary: Option<Arc<ValueDictionary>>) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = dictionary;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::embedded::store::{decode_versioned, encode_value, with_version};
    use redb::ReadableDatabase;
    use tom_contract::simulation::Version;

    fn document(i: usize) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "type": "data", "id": format!("reading-{i}"), "kind": "vehicle-count",
            "generated_by": format!("tl-{}", i % 7), "derived_from": [format!("reading-{}", i / 2)],
            "hash": format!("sha256:{:064x}", i * 7919),
            "recorded": { "tx_id": format!("{:064x}", i * 104_729), "by": { "id": "Org1MSP/traffic-light-1", "msp_id": "Org1MSP" } },
        }))
        .unwrap()
    }

    /// Train through the committer's path: sample, train on the side, hand over.
    fn trained(samples: usize) -> Arc<ValueDictionary> {
        let mut trainer = Trainer::new(samples, false);
        for i in 0..samples * 2 {
            trainer.offer(&document(i));
        }
        let started = std::time::Instant::now();
        loop {
            if let Some(d) = trainer.ready() {
                assert_eq!(trainer.stored().map(|s| s.id), Some(d.id));
                assert!(!trainer.sampling(), "one dictionary per store");
                return d;
            }
            assert!(started.elapsed().as_secs() < 60, "training never finished");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }

    #[test]
    fn values_compressed_with_a_dictionary_read_back_and_are_smaller() {
        let dictionary = trained(400);
        let v = Version { block: 9, tx: 1 };
        let value = document(100_001);
        let plain = encode_value("\0tom.entity\0reading\0", &value, None);
        let with = encode_value("\0tom.entity\0reading\0", &value, Some(&dictionary));
        assert_eq!(with[0], 4, "encoded with the dictionary");
        assert_eq!(with[1..9], dictionary.id.to_be_bytes());
        assert!(
            with.len() * 2 < plain.len(),
            "{} vs {} bytes",
            with.len(),
            plain.len()
        );
        let stored = with_version(v, &with);
        let read = decode_versioned("\0tom.entity\0reading\0", &stored).unwrap();
        assert_eq!((read.value, read.version), (value, v));

        // A dictionary this process never loaded is named, not guessed at.
        let mut unknown = stored.clone();
        let at = stored.len() - with.len() + 1;
        unknown[at..at + 8].copy_from_slice(&0x0123_4567_89ab_cdefu64.to_be_bytes());
        let err = decode_versioned("k", &unknown).unwrap_err().to_string();
        assert!(err.contains("dictionary 0123456789abcdef"), "{err}");
        // A damaged frame is an error naming the key, never other bytes.
        let mut damaged = stored.clone();
        let at = damaged.len() - 4;
        damaged[at] ^= 0xff;
        damaged.truncate(damaged.len() - 1);
        let err = decode_versioned("doc-key", &damaged)
            .unwrap_err()
            .to_string();
        assert!(err.contains("doc-key"), "{err}");
    }

    #[test]
    fn a_store_dictionary_is_loaded_by_id_and_a_damaged_one_refused() {
        let dictionary = trained(300);
        let dir = tempfile::tempdir().unwrap();
        let db = redb::Database::create(dir.path().join("t.redb")).unwrap();
        let wtx = db.begin_write().unwrap();
        store(&wtx, &dictionary).unwrap();
        wtx.commit().unwrap();
        let loaded = load(&db.begin_read().unwrap()).unwrap().unwrap();
        assert_eq!(loaded.id, dictionary.id);
        assert_eq!(loaded.bytes(), dictionary.bytes());

        let wtx = db.begin_write().unwrap();
        {
            let mut table = wtx.open_table(DICTIONARIES).unwrap();
            let mut bytes = dictionary.bytes().to_vec();
            bytes[100] ^= 1;
            table.insert(dictionary.id, bytes.as_slice()).unwrap();
        }
        wtx.commit().unwrap();
        let err = load(&db.begin_read().unwrap()).unwrap_err();
        assert!(
            err.contains(&format!(
                "value dictionary {:016x} is damaged",
                dictionary.id
            )),
            "{err}"
        );
    }

    #[test]
    fn no_samples_wanted_means_no_dictionary() {
        let mut trainer = Trainer::new(0, false);
        trainer.offer(&document(1));
        assert!(!trainer.sampling());
        assert!(trainer.ready().is_none());
    }
}
