//! The one error type of the REST API and how it becomes an HTTP response.
//!
//! Every failure a caller can act on (bad JSON, unknown field, missing token, a transaction the
//! contract refused) is answered with its own status and a message naming the problem, as
//! `{"error": "...", "status": N, "code": "...", "retryable": bool}`. Failures that are not the
//! caller's business (a bug, corrupt local state) are logged with their detail and answered with
//! a bare 500, so internals never leak into responses. Ledger failures add `outcome`
//! (`not_recorded` or `unknown`) and, where a transaction is named, `tx_id`.
//!
//! The whole mapping, one row per typed source (an [`AppError`] variant, and within it the
//! [`LedgerError`] or [`ActionError`] variant it carries):
//!
//! | source | status | `code` | `retryable` | header | `outcome`, `tx_id` |
//! |---|---|---|---|---|---|
//! | `Client` (extractors, handlers, router fallbacks) | its own | by status: 400 `bad_request`, 401 `unauthorized`, 403 `forbidden`, 404 `not_found`, 405 `method_not_allowed`, 413 `payload_too_large`, 415 `unsupported_media_type`, other 4xx `invalid_request` | no | 401: `WWW-Authenticate: Bearer` | – |
//! | `Ledger(Rejected)`, 4xx: the contract refused ([`Refusal`]) | the contract's | by status as above; a 409 is `already_exists` (the id is taken: `ContractError::AlreadyExists`, or the `IdTaken` guard) or `guard_failed` (every other guard) | no | – | `not_recorded` |
//! | `Ledger(Rejected)`, any other status | 500 | `internal` | no | – | `not_recorded` |
//! | `Ledger(Conflict)`, invalidated at commit ([`ConflictKind::Mvcc`]) | 409 | `mvcc_conflict` | yes | `Retry-After: 1` | `not_recorded`, the invalidated `tx_id` |
//! | `Ledger(Conflict)`, a transaction id seen before ([`ConflictKind::DuplicateTxId`]) | 409 | `duplicate_transaction` | no | – | `not_recorded`, `tx_id` |
//! | `Ledger(Unavailable)` | 503 | `ledger_unavailable` | yes | `Retry-After: 5` | `not_recorded` |
//! | `Ledger(OutcomeUnknown)` | 503 | `outcome_unknown` | no | `Retry-After: 5` | `unknown`, the `tx_id` to ask about |
//! | `Ledger(Internal)`, `Internal` | 500 | `internal` | no | – | `not_recorded` (ledger only) |
//! | [`ActionError::Ledger`] | as its `LedgerError` | | | | |
//! | [`ActionError::Rejected`] (e.g. no orchestrator) | 400 | `bad_request` | no | – | – |
//! | [`ActionError::Orchestrator`] → `Orchestrator` | 502 | `orchestrator_failed` | no | – | – |
//! | the connection cap (`app.rs`, before any request is read) | 503 | `too_many_connections` | yes | `Retry-After: 1` | – |
//!
//! `retryable` says whether sending the same request again can succeed without anything else
//! changing. [`ErrorCode`] lists every code; the OpenAPI document's `Error` schema carries the
//! same list.
//!
//! A contract refusal reaches the gateway as `LedgerError::Rejected { status, message }` on
//! every back end: a Fabric peer returns only the chaincode's status and message, and the
//! embedded ledger answers the same way so both back ends answer alike. Which 409 it is
//! ([`Refusal`]) is therefore read back from the contract's own rendering of its typed error,
//! in [`Refusal::of`] only, and a test renders every `ContractError` variant through
//! `LedgerError::from` and checks that [`Refusal::of`] gives what [`Refusal::from`] gives for
//! the typed error, so a change in the contract's messages fails there rather than changing a
//! code. Conflicts likewise ([`ConflictKind::of`], checked against every ledger's duplicate).

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use tom_contract::guards::GuardFailure;
use tom_contract::ContractError;

use super::actions::ActionError;
use crate::ledger::LedgerError;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The request itself is wrong (malformed, unauthenticated, too large...).
    #[error("{message}")]
    Client { status: StatusCode, message: String },
    /// The ledger refused or failed the transaction.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// The container orchestrator failed after (or before) the ledger authorised an action.
    #[error("orchestrator: {0}")]
    Orchestrator(String),
    /// A failure inside the gateway; logged, never shown.
    #[error("internal error: {0}")]
    Internal(String),
}

impl AppError {
    pub fn bad_request(message: impl Into<String>) -> Self {
        AppError::Client {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
        }
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        AppError::Client {
            status: StatusCode::UNAUTHORIZED,
            message: message.into(),
        }
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        AppError::Client {
            status: StatusCode::NOT_FOUND,
            message: message.into(),
        }
    }

    /// The HTTP status this error is answered with.
    pub fn status(&self) -> StatusCode {
        match self {
            AppError::Client { status, .. } => *status,
            AppError::Ledger(LedgerError::Rejected { status, .. }) => {
                match StatusCode::from_u16(*status) {
                    Ok(s) if s.is_client_error() => s,
                    _ => StatusCode::INTERNAL_SERVER_ERROR,
                }
            }
            AppError::Ledger(LedgerError::Conflict { .. }) => StatusCode::CONFLICT,
            AppError::Ledger(LedgerError::Unavailable(_) | LedgerError::OutcomeUnknown { .. }) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            AppError::Ledger(LedgerError::Internal(_)) | AppError::Internal(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
            AppError::Orchestrator(_) => StatusCode::BAD_GATEWAY,
        }
    }
}

/// The machine-readable `code` of an error body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    BadRequest,
    Unauthorized,
    Forbidden,
    NotFound,
    MethodNotAllowed,
    PayloadTooLarge,
    UnsupportedMediaType,
    /// Any other 4xx the request itself caused.
    InvalidRequest,
    /// 409: the contract's guards refused the transition (never passes as is).
    GuardFailed,
    /// 409: the id is taken.
    AlreadyExists,
    /// 409: the transaction was invalidated at commit by a concurrent one (retry passes).
    MvccConflict,
    /// 409: this exact transaction (id) was submitted before.
    DuplicateTransaction,
    /// 503: the ledger cannot take transactions now (storage full, shutting down, unreachable).
    LedgerUnavailable,
    /// 503: the transaction was submitted but its commit was not seen; the body's `tx_id` says
    /// which transaction to ask about (`GET /v1/transactions/{tx_id}`) before sending it again.
    OutcomeUnknown,
    /// 503 before any request was read: every connection is busy (the connection cap).
    TooManyConnections,
    /// 502: the container orchestrator failed.
    OrchestratorFailed,
    /// 500.
    Internal,
}

impl ErrorCode {
    /// Every code, as the OpenAPI document lists them.
    pub const ALL: &'static [ErrorCode] = &[
        ErrorCode::BadRequest,
        ErrorCode::Unauthorized,
        ErrorCode::Forbidden,
        ErrorCode::NotFound,
        ErrorCode::MethodNotAllowed,
        ErrorCode::PayloadTooLarge,
        ErrorCode::UnsupportedMediaType,
        ErrorCode::InvalidRequest,
        ErrorCode::GuardFailed,
        ErrorCode::AlreadyExists,
        ErrorCode::MvccConflict,
        ErrorCode::DuplicateTransaction,
        ErrorCode::LedgerUnavailable,
        ErrorCode::OutcomeUnknown,
        ErrorCode::TooManyConnections,
        ErrorCode::OrchestratorFailed,
        ErrorCode::Internal,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::NotFound => "not_found",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::UnsupportedMediaType => "unsupported_media_type",
            ErrorCode::InvalidRequest => "invalid_request",
            ErrorCode::GuardFailed => "guard_failed",
            ErrorCode::AlreadyExists => "already_exists",
            ErrorCode::MvccConflict => "mvcc_conflict",
            ErrorCode::DuplicateTransaction => "duplicate_transaction",
            ErrorCode::LedgerUnavailable => "ledger_unavailable",
            ErrorCode::OutcomeUnknown => "outcome_unknown",
            ErrorCode::TooManyConnections => "too_many_connections",
            ErrorCode::OrchestratorFailed => "orchestrator_failed",
            ErrorCode::Internal => "internal",
        }
    }

    /// Whether the same request, sent again unchanged, can succeed.
    pub fn retryable(self) -> bool {
        matches!(
            self,
            ErrorCode::MvccConflict | ErrorCode::LedgerUnavailable | ErrorCode::TooManyConnections
        )
    }

    fn from_status(status: StatusCode) -> ErrorCode {
        match status {
            StatusCode::BAD_REQUEST => ErrorCode::BadRequest,
            StatusCode::UNAUTHORIZED => ErrorCode::Unauthorized,
            StatusCode::FORBIDDEN => ErrorCode::Forbidden,
            StatusCode::NOT_FOUND => ErrorCode::NotFound,
            StatusCode::METHOD_NOT_ALLOWED => ErrorCode::MethodNotAllowed,
            StatusCode::PAYLOAD_TOO_LARGE => ErrorCode::PayloadTooLarge,
            StatusCode::UNSUPPORTED_MEDIA_TYPE => ErrorCode::UnsupportedMediaType,
            StatusCode::CONFLICT => ErrorCode::GuardFailed,
            StatusCode::SERVICE_UNAVAILABLE => ErrorCode::LedgerUnavailable,
            StatusCode::BAD_GATEWAY => ErrorCode::OrchestratorFailed,
            s if s.is_client_error() => ErrorCode::InvalidRequest,
            _ => ErrorCode::Internal,
        }
    }
}

/// Seconds a client should wait before retrying an MVCC conflict (`Retry-After`): the
/// conflicting block is committed by then.
pub const CONFLICT_RETRY_AFTER_SECS: u32 = 1;
/// Seconds before retrying when the ledger is unavailable (e.g. its storage is full).
pub const UNAVAILABLE_RETRY_AFTER_SECS: u32 = 5;

/// What a contract refusal is, as far as its answer depends on it: the typed
/// [`ContractError`] on the contract's side, read back from the `(status, message)` pair a
/// ledger carries it in ([`Refusal::of`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// 400: the function is unknown or its argument malformed or out of bounds.
    BadArgument,
    /// 403: the caller may not call it, or a proof does not hold.
    Denied,
    /// 404: something the request names does not exist.
    NotFound,
    /// 409: the id is taken (`AlreadyExists`, or the `IdTaken` guard).
    AlreadyExists,
    /// 409: a guard of the state machine refused the transition.
    GuardFailed,
    /// 500: the contract's ledger or state failed, not the caller.
    Failure,
}

impl From<&ContractError> for Refusal {
    fn from(e: &ContractError) -> Self {
        match e {
            ContractError::UnknownFunction(_) | ContractError::BadArgument { .. } => {
                Refusal::BadArgument
            }
            ContractError::Unauthorized { .. } | ContractError::InvalidProof { .. } => {
                Refusal::Denied
            }
            ContractError::NotFound { .. } => Refusal::NotFound,
            ContractError::AlreadyExists { .. } => Refusal::AlreadyExists,
            ContractError::GuardFailed { failures, .. }
                if failures
                    .iter()
                    .any(|f| matches!(f, GuardFailure::IdTaken { .. })) =>
            {
                Refusal::AlreadyExists
            }
            ContractError::GuardFailed { .. } => Refusal::GuardFailed,
            ContractError::Ledger(_) | ContractError::CorruptState { .. } => Refusal::Failure,
        }
    }
}

impl Refusal {
    /// The refusal a ledger reports as `Rejected { status, message }`, or `None` for a status
    /// the contract never returns (answered by its status alone). Only a 409 needs the
    /// message: the contract renders both `AlreadyExists` and the `IdTaken` guard as
    /// "... already exists (...)", and no other refusal says so.
    pub fn of(status: u16, message: &str) -> Option<Refusal> {
        match status {
            400 => Some(Refusal::BadArgument),
            403 => Some(Refusal::Denied),
            404 => Some(Refusal::NotFound),
            409 if message.contains(" already exists (") => Some(Refusal::AlreadyExists),
            409 => Some(Refusal::GuardFailed),
            500..=599 => Some(Refusal::Failure),
            _ => None,
        }
    }

    pub fn code(self) -> ErrorCode {
        match self {
            Refusal::BadArgument => ErrorCode::BadRequest,
            Refusal::Denied => ErrorCode::Forbidden,
            Refusal::NotFound => ErrorCode::NotFound,
            Refusal::AlreadyExists => ErrorCode::AlreadyExists,
            Refusal::GuardFailed => ErrorCode::GuardFailed,
            Refusal::Failure => ErrorCode::Internal,
        }
    }
}

/// Why a transaction was invalidated at commit ([`LedgerError::Conflict`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConflictKind {
    /// A concurrent transaction changed what this one read (MVCC, phantom read): sending it
    /// again passes.
    Mvcc,
    /// This transaction id was committed or submitted before: sending it again never passes.
    DuplicateTxId,
}

/// Fabric's validation code for a duplicate transaction id, as the Fabric client reports it.
const FABRIC_DUPLICATE_TXID: &str = "DUPLICATE_TXID";
/// How the embedded and in-memory ledgers begin a duplicate's reason.
const DUPLICATE_TX_ID: &str = "duplicate transaction id";

impl ConflictKind {
    /// The kind of a conflict from its reason: Fabric's validation code name, or the embedded
    /// and in-memory ledgers' reason.
    pub fn of(reason: &str) -> ConflictKind {
        if reason == FABRIC_DUPLICATE_TXID || reason.starts_with(DUPLICATE_TX_ID) {
            ConflictKind::DuplicateTxId
        } else {
            ConflictKind::Mvcc
        }
    }
}

impl AppError {
    /// The machine-readable code of this error's body (the table in the module doc).
    pub fn code(&self) -> ErrorCode {
        match self {
            AppError::Client { status, .. } => ErrorCode::from_status(*status),
            AppError::Ledger(LedgerError::Rejected { status, message }) => {
                Refusal::of(*status, message)
                    .map_or_else(|| ErrorCode::from_status(self.status()), Refusal::code)
            }
            AppError::Ledger(LedgerError::Conflict { reason, .. }) => {
                match ConflictKind::of(reason) {
                    ConflictKind::Mvcc => ErrorCode::MvccConflict,
                    ConflictKind::DuplicateTxId => ErrorCode::DuplicateTransaction,
                }
            }
            AppError::Ledger(LedgerError::Unavailable(_)) => ErrorCode::LedgerUnavailable,
            AppError::Ledger(LedgerError::OutcomeUnknown { .. }) => ErrorCode::OutcomeUnknown,
            AppError::Ledger(LedgerError::Internal(_)) | AppError::Internal(_) => {
                ErrorCode::Internal
            }
            AppError::Orchestrator(_) => ErrorCode::OrchestratorFailed,
        }
    }
}

impl AppError {
    /// For a ledger failure: whether its outcome is known (`"not_recorded"`: nothing took
    /// effect, and for a conflict the invalidated transaction's id) or `"unknown"` (submitted,
    /// commit not seen) with the transaction id to ask about. `None` for other errors.
    pub fn outcome(&self) -> Option<(&'static str, Option<&str>)> {
        match self {
            AppError::Ledger(LedgerError::OutcomeUnknown { tx_id, .. }) => {
                Some(("unknown", Some(tx_id)))
            }
            AppError::Ledger(LedgerError::Conflict { tx_id, .. }) => {
                Some(("not_recorded", Some(tx_id)))
            }
            AppError::Ledger(_) => Some(("not_recorded", None)),
            _ => None,
        }
    }
}

/// Per variant: the ledger's failures stay typed, the rest become what the table says.
impl From<ActionError> for AppError {
    fn from(e: ActionError) -> Self {
        match e {
            ActionError::Ledger(e) => AppError::Ledger(e),
            ActionError::Rejected(message) => AppError::bad_request(message),
            ActionError::Orchestrator(message) => AppError::Orchestrator(message),
        }
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let status = self.status();
        let message = if status == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::error!(error = %self, "request failed");
            "internal error (the gateway log has the details)".to_owned()
        } else {
            if status.is_server_error() {
                tracing::warn!(error = %self, "request failed");
            }
            self.to_string()
        };
        let code = self.code();
        let mut body = serde_json::json!({
            "error": message,
            "status": status.as_u16(),
            "code": code.as_str(),
            "retryable": code.retryable(),
        });
        if let Some((outcome, tx_id)) = self.outcome() {
            body["outcome"] = outcome.into();
            if let Some(tx_id) = tx_id {
                body["tx_id"] = tx_id.into();
            }
        }
        let body = Json(body);
        match code {
            ErrorCode::Unauthorized => {
                (status, [(header::WWW_AUTHENTICATE, "Bearer")], body).into_response()
            }
            ErrorCode::MvccConflict => (
                status,
                [(header::RETRY_AFTER, CONFLICT_RETRY_AFTER_SECS.to_string())],
                body,
            )
                .into_response(),
            ErrorCode::LedgerUnavailable | ErrorCode::OutcomeUnknown => (
                status,
                [(
                    header::RETRY_AFTER,
                    UNAVAILABLE_RETRY_AFTER_SECS.to_string(),
                )],
                body,
            )
                .into_response(),
            _ => (status, body).into_response(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn answer(error: LedgerError) -> (StatusCode, Option<String>, serde_json::Value) {
        let response = AppError::Ledger(error).into_response();
        let status = response.status();
        let retry_after = response
            .headers()
            .get(header::RETRY_AFTER)
            .map(|v| v.to_str().unwrap().to_owned());
        let body = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap();
        (status, retry_after, serde_json::from_slice(&body).unwrap())
    }

    /// Every kind of contract refusal, rendered as a ledger carries it (`LedgerError::from`, as
    /// both back ends do), is read back as the refusal its typed error is.
    #[test]
    fn refusals_read_back_from_a_ledger_are_what_the_contract_typed() {
        let s = |t: &str| t.to_owned();
        let guard = |failures| ContractError::GuardFailed {
            transition: "IdentifyDevice",
            failures,
        };
        let cases = [
            ContractError::UnknownFunction(s("Nope")),
            ContractError::BadArgument {
                function: "PlaceContainer",
                detail: s("missing field `device_id`"),
            },
            ContractError::Unauthorized {
                function: "PlaceContainer",
                reason: s("role device may not"),
            },
            ContractError::InvalidProof {
                function: "IdentifyDevice",
                detail: s("signature does not verify"),
            },
            ContractError::NotFound {
                kind: "device",
                id: s("d1"),
            },
            ContractError::AlreadyExists {
                kind: "contract",
                id: s("c1"),
                detail: s("active"),
            },
            guard(vec![GuardFailure::IdTaken {
                id: s("d1"),
                holder: s("a device"),
            }]),
            guard(vec![
                GuardFailure::DataNotLeft { id: s("x1") },
                GuardFailure::IdTaken {
                    id: s("d1"),
                    holder: s("a container"),
                },
            ]),
            guard(vec![GuardFailure::NotPlaced { container: s("c1") }]),
            guard(vec![GuardFailure::ContainersPlaced {
                device: s("d1"),
                containers: vec![s("c1")],
            }]),
            guard(vec![GuardFailure::Precondition {
                condition: "deadline passed",
                detail: s("the deadline is in an hour"),
            }]),
            ContractError::CorruptState {
                key: s("k"),
                detail: s("not JSON"),
            },
        ];
        for error in cases {
            let typed = Refusal::from(&error);
            let read_back = match LedgerError::from(error.clone()) {
                LedgerError::Rejected { status, message } => Refusal::of(status, &message),
                LedgerError::Internal(_) => Some(Refusal::Failure),
                other => panic!("{error}: a contract error became {other:?}"),
            };
            assert_eq!(read_back, Some(typed), "{error}");
            assert_eq!(
                AppError::from(LedgerError::from(error.clone())).code(),
                typed.code(),
                "{error}"
            );
        }
    }

    #[test]
    fn a_duplicate_transaction_id_is_told_from_an_mvcc_conflict_on_every_ledger() {
        for (reason, kind) in [
            ("DUPLICATE_TXID", ConflictKind::DuplicateTxId),
            ("duplicate transaction id", ConflictKind::DuplicateTxId),
            (
                "duplicate transaction id: already committed in block 3 at index 0",
                ConflictKind::DuplicateTxId,
            ),
            ("MVCC_READ_CONFLICT", ConflictKind::Mvcc),
            ("PHANTOM_READ_CONFLICT", ConflictKind::Mvcc),
            (
                "invalidated in block 4: mvcc read conflict on key tom.entity d1",
                ConflictKind::Mvcc,
            ),
        ] {
            assert_eq!(ConflictKind::of(reason), kind, "{reason}");
            let code = AppError::from(LedgerError::Conflict {
                tx_id: "t1".into(),
                reason: reason.into(),
            })
            .code();
            let expected = match kind {
                ConflictKind::Mvcc => ErrorCode::MvccConflict,
                ConflictKind::DuplicateTxId => ErrorCode::DuplicateTransaction,
            };
            assert_eq!(code, expected, "{reason}");
        }
    }

    #[tokio::test]
    async fn ledger_failures_say_what_the_caller_can_do_and_whether_anything_was_recorded() {
        let (status, retry, body) = answer(LedgerError::OutcomeUnknown {
            tx_id: "abc123".into(),
            reason: "no commit status within 30s".into(),
        })
        .await;
        assert_eq!(
            (status, retry.as_deref()),
            (StatusCode::SERVICE_UNAVAILABLE, Some("5"))
        );
        assert_eq!(body["code"], "outcome_unknown");
        assert_eq!(body["retryable"], false);
        assert_eq!(body["outcome"], "unknown");
        assert_eq!(body["tx_id"], "abc123");
        assert!(body["error"].as_str().unwrap().contains("abc123"), "{body}");

        let (status, retry, body) = answer(LedgerError::Unavailable("peer down".into())).await;
        assert_eq!(
            (status, retry.as_deref()),
            (StatusCode::SERVICE_UNAVAILABLE, Some("5"))
        );
        assert_eq!(
            (&body["code"], &body["retryable"], &body["outcome"]),
            (
                &"ledger_unavailable".into(),
                &true.into(),
                &"not_recorded".into()
            )
        );
        assert!(body.get("tx_id").is_none());

        let (status, retry, body) = answer(LedgerError::Rejected {
            status: 403,
            message: "the channel's policies refuse the creator".into(),
        })
        .await;
        assert_eq!((status, retry), (StatusCode::FORBIDDEN, None));
        assert_eq!(
            (&body["code"], &body["outcome"]),
            (&"forbidden".into(), &"not_recorded".into())
        );

        let (status, _, body) = answer(LedgerError::Conflict {
            tx_id: "t9".into(),
            reason: "MVCC_READ_CONFLICT".into(),
        })
        .await;
        assert_eq!(status, StatusCode::CONFLICT);
        assert_eq!(
            (&body["code"], &body["tx_id"]),
            (&"mvcc_conflict".into(), &"t9".into())
        );

        let (status, _, body) = answer(LedgerError::Internal("bug".into())).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(
            body["error"],
            "internal error (the gateway log has the details)"
        );
    }
}
