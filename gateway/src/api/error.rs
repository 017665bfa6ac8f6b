//! The one error type of the REST API and how it becomes an HTTP response.
//!
//! Every failure a caller can act on (bad JSON, unknown field, missing token, a transaction the
//! contract refused) is answered with its own status and a message naming the problem, as
//! `{"error": "...", "status": N, "code": "...", "retryable": bool}`. Failures that are not the
//! caller's business (a bug, corrupt local state) are logged with their detail and answered with
//! a bare 500, so internals never leak into responses.
//!
//! `code` tells apart answers that share a status: a 409 is `mvcc_conflict` (another
//! transaction changed what this one read; retrying will pass, and `Retry-After` says when),
//! `guard_failed` (the state machine refused the transition; retrying the same request never
//! passes), `already_exists` or `duplicate_transaction`. `retryable` says whether sending the
//! same request again can succeed without anything else changing. [`ErrorCode`] lists them all;
//! the OpenAPI document's `Error` schema carries the same list.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

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

impl AppError {
    /// The machine-readable code of this error's body.
    pub fn code(&self) -> ErrorCode {
        match self {
            AppError::Ledger(LedgerError::OutcomeUnknown { .. }) => ErrorCode::OutcomeUnknown,
            AppError::Ledger(LedgerError::Conflict { reason, .. }) => {
                if reason.contains("duplicate transaction id") || reason.contains("DUPLICATE_TXID")
                {
                    ErrorCode::DuplicateTransaction
                } else {
                    ErrorCode::MvccConflict
                }
            }
            AppError::Ledger(LedgerError::Rejected { message, .. })
                if self.status() == StatusCode::CONFLICT && message.contains(" already exists") =>
            {
                ErrorCode::AlreadyExists
            }
            _ => ErrorCode::from_status(self.status()),
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
