//! The world-state key layout: the one place that decides where everything is stored.
//!
//! All keys are Fabric composite keys (`\0type\0attr…\0`), so partial-key queries find
//! everything of one type. Index keys carry a sortable timestamp so that time-window queries are
//! range scans over the index, never full scans.

use crate::ledger::{create_composite_key, LedgerError, Timestamp, MAX_UNICODE_RUNE};

pub const ORG: &str = "tom.org";
pub const ENTITY: &str = "tom.entity";
pub const CONTRACT: &str = "tom.contract";
pub const CREDENTIAL: &str = "tom.credential";
pub const RECORD: &str = "tom.record";
pub const NONCE: &str = "tom.nonce";
/// certificate SHA-256 → the one entity (device or container) that certificate identifies.
pub const IDENTITY_BINDING: &str = "tom.identity-binding";
/// device → containers placed on it.
pub const PLACED_ON: &str = "tom.placed-on";
/// data → executions that used it, by contract.
pub const USED: &str = "tom.used";
/// input data → data derived from it.
pub const DERIVED: &str = "tom.derived";
/// activity (device or container) → data it generated.
pub const GENERATED: &str = "tom.generated";
/// activity → contracts it is the contractor of.
pub const CONTRACT_BY_CONTRACTOR: &str = "tom.contract-by-contractor";
/// time → record.
pub const BY_TIME: &str = "tom.by-time";
/// agent → time → record.
pub const BY_AGENT: &str = "tom.by-agent";
/// entity → time → record.
pub const BY_ENTITY: &str = "tom.by-entity";
/// Inventory: `state/org/device`, one entry per state the device is in now: `any`, its
/// lifecycle (`joined`/`left`) and, while joined, its availability (`available`/`unavailable`).
/// Maintained by `Ctx::put_entity`.
pub const DEVICE_BY_STATE: &str = "tom.device-by-state";
/// Inventory: `state/org/container`, `state` in `any` and `joined`/`left`
/// (containers by device use [`PLACED_ON`]). Maintained by `Ctx::put_entity`.
pub const CONTAINER_BY_STATE: &str = "tom.container-by-state";
/// Inventory: `any/contract`, `fulfilled/contract`, `violated/contract` (settled) and
/// `active/deadline/contract`: an active contract is keyed by its deadline, so "active now" and
/// "expired, not yet settled" (effectively violated) are two range scans split at the query's
/// transaction time. Maintained by `Ctx::put_contract`.
pub const CONTRACT_BY_STATE: &str = "tom.contract-by-state";

pub fn key(object_type: &str, attributes: &[&str]) -> Result<String, LedgerError> {
    create_composite_key(object_type, attributes)
}

/// Every key under a partial composite key: `[prefix, prefix + U+10FFFF)`.
pub fn prefix_range(
    object_type: &str,
    attributes: &[&str],
) -> Result<(String, String), LedgerError> {
    let start = create_composite_key(object_type, attributes)?;
    let end = format!("{start}{MAX_UNICODE_RUNE}");
    Ok((start, end))
}

/// Index keys `object_type/attrs…/time/…` whose time is in `[from, to)`.
pub fn time_range(
    object_type: &str,
    attributes: &[&str],
    from: Timestamp,
    to: Timestamp,
) -> Result<(String, String), LedgerError> {
    let mut lower: Vec<&str> = attributes.to_vec();
    let from = from.sortable();
    lower.push(&from);
    let start = create_composite_key(object_type, &lower)?;
    let mut upper: Vec<&str> = attributes.to_vec();
    let to = to.sortable();
    upper.push(&to);
    let end = create_composite_key(object_type, &upper)?;
    Ok((start, end))
}

/// A bookmark as clients see it: the unpadded base64url of the next key, so it survives URLs
/// and command lines (raw keys hold `\0`). Empty stays empty.
pub fn encode_bookmark(key: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(key.as_bytes())
}

/// The key a bookmark from [`encode_bookmark`] names; `None` if it is not one.
pub fn decode_bookmark(bookmark: &str) -> Option<String> {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(bookmark.as_bytes())
        .ok()?;
    String::from_utf8(bytes).ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn bookmarks_are_url_safe_and_round_trip() {
        let key = super::key(super::BY_TIME, &["00000000000000000001", "tx"]).unwrap();
        let b = super::encode_bookmark(&key);
        assert!(b
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'));
        assert_eq!(super::decode_bookmark(&b).as_deref(), Some(key.as_str()));
        assert_eq!(super::decode_bookmark("not a bookmark!"), None);
    }
}
