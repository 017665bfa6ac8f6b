//! The submit transactions: the paper's state machine (Table II) plus organisation
//! registration, placement, processing contracts and the orchestrator's outcome reports.
//!
//! Each function authenticates the creator, validates its argument, evaluates the transition's
//! guards against committed state, and only then writes: the entity, its indexes, and exactly one
//! ledger record (which also emits the chaincode event). A refused transition writes nothing.
//!
//! The transactions are grouped as the paper groups its operations (Sections IV-B and V-A), one
//! module each, so a reader holds one group against the paper at a time:
//!
//! | module            | transactions                                   | paper                                  |
//! |-------------------|------------------------------------------------|----------------------------------------|
//! | [`organisations`] | RegisterOrg                                    | the permissioned members (IV-A)        |
//! | [`identity`]      | Identify/Terminate Device/Container            | IDENTIFY; PROV-ID-create/delete (V-A)  |
//! | [`placement`]     | PlaceContainer, RecordOutcome, RecordDrift     | PLACE; ORCHESTRATE(deployed, location) |
//! | [`provenance`]    | DefineContract, EvaluateContract, RecordData, ExecContract | EXEC; PROV-DATA, PROV-ORCH, the contract and its credential (IV-C) |
//!
//! This module keeps the argument checks every group shares.

use base64::Engine;

use crate::error::ContractError;
use crate::identity::Certificate;

mod identity;
mod organisations;
mod placement;
mod provenance;

pub(super) const MAX_TEXT_LEN: usize = crate::ids::MAX_TEXT;

/// Ids are used inside composite keys, URLs and PROV qualified names: the grammar of
/// [`crate::ids::ID`].
pub(crate) fn check_id(function: &'static str, field: &str, id: &str) -> Result<(), ContractError> {
    crate::ids::ID
        .check(field, id)
        .map_err(|e| ContractError::bad(function, e))
}

/// Free text: [`crate::ids::check_text`] with the default bound.
pub(super) fn check_text(
    function: &'static str,
    field: &str,
    text: &str,
) -> Result<(), ContractError> {
    crate::ids::check_text(field, text, MAX_TEXT_LEN).map_err(|e| ContractError::bad(function, e))
}

pub(super) fn check_sha256(
    function: &'static str,
    field: &str,
    value: &str,
) -> Result<(), ContractError> {
    let ok = value.strip_prefix("sha256:").is_some_and(|hex| {
        hex.len() == 64
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    });
    if ok {
        Ok(())
    } else {
        Err(ContractError::bad(
            function,
            format!("{field} {value:?} is not of the form sha256:<64 lowercase hex digits>"),
        ))
    }
}

pub(super) fn decode_signature(
    function: &'static str,
    field: &str,
    text: &str,
) -> Result<Vec<u8>, ContractError> {
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|e| ContractError::bad(function, format!("{field} is not base64: {e}")))
}

pub(super) fn parse_certificate(
    function: &'static str,
    field: &str,
    pem: &str,
) -> Result<Certificate, ContractError> {
    Certificate::from_pem(pem).map_err(|e| ContractError::bad(function, format!("{field}: {e}")))
}
