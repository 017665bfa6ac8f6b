//! The block journal (`blocks.journal`): what makes a block durable between two syncs of
//! the store, as a Fabric peer's block file does for its state database.
//!
//! # Why
//!
//! A durable redb commit writes back every page the block dirtied and fsyncs them. As the
//! ledger grows, a block's writes land in ever more distinct B-tree leaves, so that write-back
//! grows with the ledger while the committer waits for it, and ingest slowed down with the
//! ledger (measured at 300,000 records on 2 cores: the last tenth at 0.57 of the first's rate
//! with a durable commit per block, 0.85 without the fsync). Now each block is appended to this
//! journal, one sequential write and one `fdatasync` of a few tens of KB, and committed to the
//! store without an fsync; every [`super::EmbeddedOptions::store_sync_interval`] one block's
//! commit is durable (it makes every earlier one durable too) and the journal is emptied.
//!
//! # Invariants
//!
//! * A block is appended and synced here before its store commit, and before anyone is
//!   answered: an acknowledged block is in the journal or in a durable store commit.
//! * The journal holds blocks in order, and only blocks after the store's last
//!   sync matter: opening the ledger ([`super::EmbeddedLedger::open`], and the committer
//!   reopening the store after an I/O error) replays the ones past the store's tip, checking
//!   that each continues the hash chain and carries the node's signature, then empties the
//!   journal. A block already in the store is skipped, so replay can be repeated.
//! * Each frame is `u32 LE length ‖ block bytes ‖ SHA-256 of the block bytes`. A process killed
//!   mid-append leaves a torn last frame: it was never synced, so never acknowledged, and is
//!   cut off on open. A damaged frame that is not the last is refused by name, never skipped.
//! * Offline readers (`tom verify`, `tom compact`) read the store alone: they refuse while the
//!   journal holds blocks ([`pending`]) and say to start `tom serve` once, which replays them.

use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// The journal's file name in the data directory.
pub const JOURNAL_FILE: &str = "blocks.journal";

const LENGTH_BYTES: usize = 4;
const CHECKSUM_BYTES: usize = 32;

/// An open journal: the committer's, appended to under its single-writer discipline.
pub struct BlockJournal {
    file: File,
    path: PathBuf,
    /// Bytes of whole, synced frames; the next frame goes here.
    len: u64,
}

/// Why the journal cannot be read.
#[derive(Debug)]
pub enum JournalError {
    Io(io::Error),
    /// A frame that is not the last one is damaged: the journal was changed after it was written.
    Damaged {
        offset: u64,
        detail: String,
    },
}

impl std::fmt::Display for JournalError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            JournalError::Io(e) => write!(f, "{e}"),
            JournalError::Damaged { offset, detail } => {
                write!(f, "damaged frame at byte {offset}: {detail}")
            }
        }
    }
}

impl From<io::Error> for JournalError {
    fn from(e: io::Error) -> Self {
        JournalError::Io(e)
    }
}

/// The intact frames of `bytes` and where the last intact one ends.
fn frames(bytes: &[u8]) -> Result<(Vec<Vec<u8>>, u64), JournalError> {
    let mut blocks = Vec::new();
    let mut at = 0usize;
    while at < bytes.len() {
        let rest = &bytes[at..];
        let torn = |detail: &str| -> Result<(Vec<Vec<u8>>, u64), JournalError> {
            Err(JournalError::Damaged {
                offset: at as u64,
                detail: detail.to_owned(),
            })
        };
        if rest.len() < LENGTH_BYTES {
            break; // a torn length: the last append never completed
        }
        let length = u32::from_le_bytes(rest[..LENGTH_BYTES].try_into().expect("4 bytes")) as usize;
        let end = LENGTH_BYTES + length + CHECKSUM_BYTES;
        if rest.len() < end {
            break; // a torn frame
        }
        let body = &rest[LENGTH_BYTES..LENGTH_BYTES + length];
        let checksum = &rest[LENGTH_BYTES + length..end];
        if ring::digest::digest(&ring::digest::SHA256, body).as_ref() != checksum {
            if at + end == bytes.len() {
                break; // the last frame, partly written before a crash
            }
            return torn("its SHA-256 does not match its bytes, and frames follow it");
        }
        blocks.push(body.to_vec());
        at += end;
    }
    Ok((blocks, at as u64))
}

impl BlockJournal {
    /// Open (or create) the journal in `data_dir`, returning the blocks it holds; a torn last
    /// frame is cut off.
    pub fn open(data_dir: &Path) -> Result<(BlockJournal, Vec<Vec<u8>>), JournalError> {
        let path = data_dir.join(JOURNAL_FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        let (blocks, len) = frames(&bytes)?;
        if len != bytes.len() as u64 {
            tracing::warn!(journal = %path.display(), cut = bytes.len() as u64 - len, "block journal: a torn last frame (never acknowledged) is cut off");
            file.set_len(len)?;
            file.sync_data()?;
        }
        Ok((BlockJournal { file, path, len }, blocks))
    }

    /// Append one block and sync it. On failure the journal is cut back to what it held before,
    /// so a later append never follows a partial frame.
    pub fn append(&mut self, block: &[u8]) -> io::Result<()> {
        let length = u32::try_from(block.len())
            .map_err(|_| io::Error::other(format!("a block of {} bytes", block.len())))?;
        let mut frame = Vec::with_capacity(LENGTH_BYTES + block.len() + CHECKSUM_BYTES);
        frame.extend_from_slice(&length.to_le_bytes());
        frame.extend_from_slice(block);
        frame.extend_from_slice(ring::digest::digest(&ring::digest::SHA256, block).as_ref());
        let written = self
            .file
            .write_all_at(&frame, self.len)
            .and_then(|()| self.file.sync_data());
        match written {
            Ok(()) => {
                self.len += frame.len() as u64;
                Ok(())
            }
            Err(e) => {
                if let Err(cut) = self.file.set_len(self.len) {
                    tracing::warn!(journal = %self.path.display(), error = %cut, "block journal: cannot cut a failed append back (cut off as torn on the next open)");
                }
                Err(e)
            }
        }
    }

    /// Forget every block: called once they are all in a durable store commit. Not synced: if
    /// the emptying is lost, replay skips blocks the store has.
    pub fn clear(&mut self) -> io::Result<()> {
        self.file.set_len(0)?;
        self.len = 0;
        Ok(())
    }

    /// Bytes of blocks held.
    pub fn bytes(&self) -> u64 {
        self.len
    }
}

/// How many blocks the journal in `data_dir` holds (0 without a journal): for offline readers,
/// which must not read a store whose newest acknowledged blocks are only here.
pub fn pending(data_dir: &Path) -> Result<usize, JournalError> {
    let path = data_dir.join(JOURNAL_FILE);
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e.into()),
    };
    Ok(frames(&bytes)?.0.len())
}

/// For offline readers (`tom verify`, `tom compact`): `Err` with what to do while the journal in
/// `data_dir` holds blocks (or cannot be read); `then` is what to run once they are replayed.
pub fn check_replayed(data_dir: &Path, then: &str) -> Result<(), String> {
    match pending(data_dir) {
        Ok(0) => Ok(()),
        Ok(blocks) => Err(format!(
            "{blocks} acknowledged block(s) are in the block journal ({JOURNAL_FILE}), not yet in \
             the store (the node stopped without a clean shutdown, e.g. killed or on a full \
             disk): start `tom serve` on this data directory once (it replays them into the \
             store and checks the log), stop it, then {then}"
        )),
        Err(e) => Err(format!(
            "the block journal ({JOURNAL_FILE}) is unreadable: {e}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_come_back_in_order_and_a_torn_tail_is_cut_off() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (mut journal, blocks) = BlockJournal::open(dir.path()).unwrap();
            assert!(blocks.is_empty());
            journal.append(b"block one").unwrap();
            journal.append(b"block two").unwrap();
        }
        let path = dir.path().join(JOURNAL_FILE);
        let whole = std::fs::metadata(&path).unwrap().len();
        // A crash mid-append: half a frame after the synced ones.
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.extend_from_slice(&100u32.to_le_bytes());
        bytes.extend_from_slice(b"partial");
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(pending(dir.path()).unwrap(), 2);
        let (mut journal, blocks) = BlockJournal::open(dir.path()).unwrap();
        assert_eq!(blocks, vec![b"block one".to_vec(), b"block two".to_vec()]);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), whole);
        journal.append(b"block three").unwrap();
        journal.clear().unwrap();
        assert_eq!(pending(dir.path()).unwrap(), 0);
    }

    #[test]
    fn a_damaged_frame_before_others_is_refused_by_offset() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (mut journal, _) = BlockJournal::open(dir.path()).unwrap();
            journal.append(b"block one").unwrap();
            journal.append(b"block two").unwrap();
        }
        let path = dir.path().join(JOURNAL_FILE);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[LENGTH_BYTES] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        let message = match BlockJournal::open(dir.path()) {
            Err(e) => e.to_string(),
            Ok(_) => panic!("a damaged first frame was accepted"),
        };
        assert!(message.contains("damaged frame at byte 0"), "{message}");
        // A damaged last frame is a torn append: cut off, the first block kept.
        let (_, blocks) = {
            bytes[LENGTH_BYTES] ^= 1;
            let last = bytes.len() - 1;
            bytes[last] ^= 1;
            std::fs::write(&path, &bytes).unwrap();
            BlockJournal::open(dir.path()).unwrap()
        };
        assert_eq!(blocks, vec![b"block one".to_vec()]);
    }
}
