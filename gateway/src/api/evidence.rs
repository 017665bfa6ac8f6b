//! `GET /v1/evidence/{id}`: an evidence bundle for an entity's lineage ([`crate::evidence`]).

use axum::body::Body;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use tom_contract::requests::{Direction, LineageQuery};

use super::error::AppError;
use super::extract::{ApiPath, ApiQuery, Caller};
use super::state::AppState;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvidenceParams {
    #[serde(default)]
    direction: Direction,
    #[serde(default)]
    depth: Option<u32>,
}

pub async fn get_evidence(
    State(s): State<AppState>,
    Caller(c): Caller,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<EvidenceParams>,
) -> Result<Response, AppError> {
    let query = LineageQuery {
        id,
        direction: q.direction,
        depth: q.depth,
        // Evidence covers as much as one answer may hold; a wider lineage is marked truncated.
        limit: Some(tom_contract::queries::MAX_LINEAGE_NODES as u32),
        fan_out: Some(tom_contract::queries::MAX_FAN_OUT),
        bookmark: None,
    };
    let bundle = s.ledger.evidence(&c.signing, &query).await?;
    let bytes = serde_json::to_vec(&bundle)
        .map_err(|e| AppError::Internal(format!("cannot encode the evidence bundle: {e}")))?;
    // A safe file name: the id's letters, digits and '-', '_', '.' only.
    let name: String = query
        .id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    Ok((
        [
            (header::CONTENT_TYPE, "application/json".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}.evidence.json\""),
            ),
        ],
        Body::from(bytes),
    )
        .into_response())
}
