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
