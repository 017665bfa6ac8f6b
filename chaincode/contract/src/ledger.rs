//! The ledger-stub trait: everything the contract may ask of the ledger it runs on.
//!
//! It is modelled on Fabric's `ChaincodeStubInterface` so that the same contract code runs on a
//! Fabric peer (through the chaincode-as-a-service adapter in `tom-chaincode`), in the gateway's
//! embedded ledger, and in tests. Implementations must keep Fabric's semantics:
//!
//! * reads see only state committed before the transaction began: a transaction never reads its
//!   own writes (a `get_state` after a `put_state` of the same key returns the committed value);
//! * range and partial-composite-key queries return keys in ascending byte order;
//! * history is one entry per committed transaction that wrote or deleted the key, oldest first;
//! * at most one chaincode event per transaction (a later `set_event` replaces an earlier one);
//! * a conflicting concurrent write (MVCC) fails the transaction at commit, not here.
//!
//! The trait is synchronous and infallible in shape only where Fabric is: every ledger call can
//! fail (a peer may go away), so each returns a [`LedgerError`] the contract passes on.

use std::fmt;

/// An error from the ledger underneath the contract (not a rejected transaction).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("ledger error: {0}")]
pub struct LedgerError(pub String);

/// A key and its committed value, as returned by range queries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: Vec<u8>,
}

/// One committed change of a key, as returned by [`LedgerStub::get_history_for_key`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyModification {
    pub tx_id: String,
    pub timestamp: Timestamp,
    /// The value written; empty when `is_delete`.
    pub value: Vec<u8>,
    pub is_delete: bool,
}

/// A transaction timestamp as Fabric carries it in the channel header: seconds and nanoseconds
/// since the Unix epoch. The contract's only notion of time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp {
    pub seconds: i64,
    pub nanos: i32,
}

impl Timestamp {
    pub const fn from_seconds(seconds: i64) -> Self {
        Timestamp { seconds, nanos: 0 }
    }

    /// Nanoseconds since the epoch, saturating (used for sortable index keys).
    pub fn as_nanos(&self) -> i128 {
        i128::from(self.seconds) * 1_000_000_000 + i128::from(self.nanos)
    }

    /// A fixed-width decimal rendering that sorts like the timestamp itself, for index keys.
    /// Timestamps before the epoch clamp to zero (Fabric never issues them).
    pub fn sortable(&self) -> String {
        format!("{:020}", self.as_nanos().max(0))
    }

    /// RFC 3339 in UTC with nanosecond precision, computed without any clock or time zone data.
    pub fn to_rfc3339(&self) -> String {
        crate::time::format_rfc3339(*self)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

/// The identity that signed the transaction proposal, as Fabric's `SerializedIdentity` carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Creator {
    pub msp_id: String,
    /// The X.509 certificate, PEM encoded (Fabric's `id_bytes`).
    pub certificate_pem: Vec<u8>,
}

/// The ledger as seen from inside one transaction.
pub trait LedgerStub {
    /// The transaction id (hex sha256 of nonce + creator, as Fabric derives it).
    fn tx_id(&self) -> &str;
    /// The timestamp from the transaction's channel header.
    fn tx_timestamp(&self) -> Timestamp;
    /// The identity that signed the proposal.
    fn creator(&self) -> &Creator;
    /// The channel the transaction runs on (Fabric), or the embedded ledger's name. Signed
    /// claims name it, so a claim made for one ledger cannot be replayed on another.
    fn channel_id(&self) -> &str;

    /// The committed value of `key`, if any.
    fn get_state(&self, key: &str) -> Result<Option<Vec<u8>>, LedgerError>;
    /// Write `value` to `key` in this transaction's write set.
    fn put_state(&mut self, key: &str, value: Vec<u8>) -> Result<(), LedgerError>;
    /// Delete `key` in this transaction's write set.
    fn delete_state(&mut self, key: &str) -> Result<(), LedgerError>;

    /// Committed keys in `[start, end)`, ascending. An empty `end` means "to the end".
    fn get_state_by_range(&self, start: &str, end: &str) -> Result<Vec<KeyValue>, LedgerError>;

    /// Like [`LedgerStub::get_state_by_range`], at most `page_size` results starting after
    /// `bookmark` (empty for the first page). Returns the page and the bookmark of the next page
    /// (empty when there is none). Fabric allows this in read-only transactions only.
    fn get_state_by_range_with_pagination(
        &self,
        start: &str,
        end: &str,
        page_size: u32,
        bookmark: &str,
    ) -> Result<(Vec<KeyValue>, String), LedgerError>;

    /// Committed keys under a partial composite key, ascending.
    fn get_state_by_partial_composite_key(
        &self,
        object_type: &str,
        attributes: &[&str],
    ) -> Result<Vec<KeyValue>, LedgerError> {
        let prefix = create_composite_key(object_type, attributes)?;
        let end = format!("{prefix}{MAX_UNICODE_RUNE}");
        self.get_state_by_range(&prefix, &end)
    }

    /// Every committed change of `key`, oldest first.
    fn get_history_for_key(&self, key: &str) -> Result<Vec<KeyModification>, LedgerError>;

    /// Set this transaction's chaincode event (at most one per transaction; the last call wins).
    fn set_event(&mut self, name: &str, payload: Vec<u8>) -> Result<(), LedgerError>;
}

/// Fabric's composite-key namespace marker.
pub const COMPOSITE_KEY_NAMESPACE: char = '\u{0}';
/// Fabric's upper bound for partial-composite-key range ends.
pub const MAX_UNICODE_RUNE: char = '\u{10FFFF}';

/// Build a composite key exactly as Fabric's shim does: `\0type\0attr1\0attr2\0…`.
/// Neither the type nor any attribute may contain `\0` or `U+10FFFF`.
pub fn create_composite_key(object_type: &str, attributes: &[&str]) -> Result<String, LedgerError> {
    let mut key = String::with_capacity(
        2 + object_type.len() + attributes.iter().map(|a| a.len() + 1).sum::<usize>(),
    );
    key.push(COMPOSITE_KEY_NAMESPACE);
    for part in std::iter::once(&object_type).chain(attributes.iter()) {
        if part.contains(COMPOSITE_KEY_NAMESPACE) || part.contains(MAX_UNICODE_RUNE) {
            return Err(LedgerError(format!(
                "composite key part {part:?} contains a reserved character"
            )));
        }
        key.push_str(part);
        key.push(COMPOSITE_KEY_NAMESPACE);
    }
    Ok(key)
}

/// Split a composite key into its type and attributes (the inverse of [`create_composite_key`]).
pub fn split_composite_key(key: &str) -> Option<(&str, Vec<&str>)> {
    let body = key.strip_prefix(COMPOSITE_KEY_NAMESPACE)?;
    let body = body.strip_suffix(COMPOSITE_KEY_NAMESPACE)?;
    let mut parts = body.split(COMPOSITE_KEY_NAMESPACE);
    let object_type = parts.next()?;
    Some((object_type, parts.collect()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn composite_keys_round_trip_and_sort_by_attribute() {
        let a = create_composite_key("tom.entity", &["d1"]).unwrap();
        assert_eq!(a, "\u{0}tom.entity\u{0}d1\u{0}");
        assert_eq!(split_composite_key(&a), Some(("tom.entity", vec!["d1"])));
        let b = create_composite_key("tom.entity", &["d2"]).unwrap();
        assert!(a < b);
        assert!(create_composite_key("x", &["a\u{0}b"]).is_err());
    }

    #[test]
    fn sortable_timestamps_sort_like_timestamps() {
        let early = Timestamp {
            seconds: 9,
            nanos: 999_999_999,
        };
        let late = Timestamp::from_seconds(10);
        assert!(early.sortable() < late.sortable());
        assert_eq!(late.sortable().len(), 20);
    }
}
