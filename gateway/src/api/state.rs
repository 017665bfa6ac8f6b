//! What every handler reaches: [`AppState`] and the one way the API talks to the ledger and the
//! orchestrator ([`AppState::submit`], [`AppState::act`], [`AppState::evaluate`]), each counted
//! in the request metrics.
//!
//! It lives below the handlers, extractors and router: they depend on it, never the other way
//! round (it needs only the ledger port, the identities, the actions port, the metrics and the
//! error type). The state holds no mutable data of its own: the ledger is the only state,
//! identities are read-only once loaded, and the metrics have their own short lock.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tom_contract::transaction::Transaction;

use super::actions::{ActionError, ActionReport, ContainerActions, LedgerOnly};
use super::error::AppError;
use super::metrics::Metrics;
use crate::identities::{Identity, IdentityStore};
use crate::ledger::{Ledger, LedgerError, Submitted};

/// What every handler can reach. Cheap to clone (all `Arc`s).
#[derive(Clone)]
pub struct AppState {
    pub ledger: Arc<dyn Ledger>,
    pub identities: Arc<IdentityStore>,
    pub actions: Arc<dyn ContainerActions>,
    pub metrics: Arc<Metrics>,
    /// Flips to true when the server starts shutting down (ends event streams).
    shutdown: Arc<watch::Sender<bool>>,
}

impl AppState {
    /// A gateway without a container orchestrator ([`LedgerOnly`]).
    pub fn new(ledger: Arc<dyn Ledger>, identities: IdentityStore) -> AppState {
        AppState {
            ledger,
            identities: Arc::new(identities),
            actions: Arc::new(LedgerOnly),
            metrics: Arc::default(),
            shutdown: Arc::new(watch::channel(false).0),
        }
    }

    /// Use `actions` (e.g. the Swarm orchestrator) for devices, placements and removals.
    pub fn with_actions(mut self, actions: Arc<dyn ContainerActions>) -> AppState {
        self.actions = actions;
        self
    }

    /// Resolves streams that must end when the server shuts down.
    pub fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown.subscribe()
    }

    /// Tell every [`AppState::shutdown_signal`] that the server is shutting down.
    pub(crate) fn begin_shutdown(&self) {
        self.shutdown.send_replace(true);
    }

    /// Submit `request`, the request of transaction `T::NAME`, as the caller's identity: one
    /// transaction.
    pub async fn submit<T: Transaction>(
        &self,
        caller: &Identity,
        request: &T,
    ) -> Result<Committed, AppError> {
        let function = T::NAME;
        let argument = serde_json::to_vec(request)
            .map_err(|e| AppError::Internal(format!("cannot encode {function} request: {e}")))?;
        let started = Instant::now();
        let result = self
            .ledger
            .submit(&caller.signing, function, &argument)
            .await;
        self.metrics
            .submitted(function, started.elapsed(), result_label(&result));
        Committed::from_submitted(result?)
    }

    /// Run an orchestrator action, counted under its authorising transaction `T`.
    pub async fn act<T: Transaction>(
        &self,
        action: impl std::future::Future<Output = Result<ActionReport, ActionError>>,
    ) -> Result<Committed, AppError> {
        let function = T::NAME;
        let started = Instant::now();
        let result = action.await;
        let label = match &result {
            Ok(_) => "committed",
            Err(ActionError::Ledger(e)) => error_label(e),
            Err(ActionError::Rejected(_)) => "rejected",
            Err(ActionError::Orchestrator(_)) => "error",
        };
        self.metrics.submitted(function, started.elapsed(), label);
        Committed::from_report(result?)
    }

    /// Evaluate `request`, the request of query `T::NAME`, as the caller; the contract's JSON
    /// is passed through unchanged.
    pub async fn evaluate<T: Transaction>(
        &self,
        caller: &Identity,
        request: &T,
    ) -> Result<Response, AppError> {
        let function = T::NAME;
        let argument = serde_json::to_vec(request)
            .map_err(|e| AppError::Internal(format!("cannot encode {function} request: {e}")))?;
        let bytes = self
            .ledger
            .evaluate(&caller.signing, function, &argument)
            .await?;
        Ok((
            [(header::CONTENT_TYPE, "application/json")],
            Body::from(bytes),
        )
            .into_response())
    }
}

/// The answer to every successful write.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Committed {
    pub tx_id: String,
    /// `VALID`: the transaction is committed (durably, on the embedded ledger).
    pub status: String,
    pub block: u64,
    /// The ledger record the transaction wrote (the contract's response).
    pub record: serde_json::Value,
    /// With an orchestrator: the transaction that recorded how the action went.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<Box<Committed>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl Committed {
    fn from_submitted(s: Submitted) -> Result<Committed, AppError> {
        let record = serde_json::from_slice(&s.response).map_err(|e| {
            AppError::Internal(format!(
                "contract response of tx {} is not JSON: {e}",
                s.tx_id
            ))
        })?;
        Ok(Committed {
            tx_id: s.tx_id,
            status: "VALID".into(),
            block: s.block,
            record,
            outcome: None,
            detail: None,
        })
    }

    fn from_report(report: ActionReport) -> Result<Committed, AppError> {
        let mut committed = Committed::from_submitted(report.authorising)?;
        committed.outcome = report
            .outcome
            .map(Committed::from_submitted)
            .transpose()?
            .map(Box::new);
        committed.detail = report.detail;
        Ok(committed)
    }
}

/// The `result` label of a submission's metrics.
fn result_label(result: &Result<impl Sized, LedgerError>) -> &'static str {
    match result {
        Ok(_) => "committed",
        Err(e) => error_label(e),
    }
}

fn error_label(e: &LedgerError) -> &'static str {
    match e {
        LedgerError::Rejected { .. } => "rejected",
        LedgerError::Conflict { .. } => "conflict",
        LedgerError::Unavailable(_) => "unavailable",
        LedgerError::OutcomeUnknown { .. } => "outcome_unknown",
        LedgerError::Internal(_) => "error",
    }
}
