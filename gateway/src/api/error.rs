//! The one error type of the REST API and how it becomes an HTTP response.
//!
//! Every failure a caller can act on (bad JSON, unknown field, missing token, a transaction the
//! contract refused) is answered with its own status and a message naming the problem, as
//! `{"error": "...", "status": N}`. Failures that are not the caller's business (a bug, corrupt
//! local state) are logged with their detail and answered with a bare 500, so internals never
//! leak into responses.

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
            AppError::Ledger(LedgerError::Unavailable(_)) => StatusCode::SERVICE_UNAVAILABLE,
            AppError::Ledger(LedgerError::Internal(_)) | AppError::Internal(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
            AppError::Orchestrator(_) => StatusCode::BAD_GATEWAY,
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
        let body = Json(serde_json::json!({ "error": message, "status": status.as_u16() }));
        if status == StatusCode::UNAUTHORIZED {
            (status, [(header::WWW_AUTHENTICATE, "Bearer")], body).into_response()
        } else {
            (status, body).into_response()
        }
    }
}
