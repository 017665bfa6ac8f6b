//! Route handlers. Each write handler decodes the contract's own request type (unknown fields
//! rejected), submits exactly one transaction as the caller (or hands the action to the
//! [`ContainerActions`](super::actions::ContainerActions) seam) and answers with the
//! transaction id, its commit status and block, and the contract's record.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use tom_contract::requests::{self, Direction};

use super::error::AppError;
use super::extract::{ApiJson, ApiPath, ApiQuery, Caller, Checked};
use super::state::{AppState, Committed};

type Created = Result<(StatusCode, Json<Committed>), AppError>;

fn created(c: Committed) -> (StatusCode, Json<Committed>) {
    (StatusCode::CREATED, Json(c))
}

pub async fn register_org(
    State(s): State<AppState>,
    Caller(c): Caller,
    ApiJson(req): ApiJson<requests::RegisterOrg>,
) -> Created {
    s.submit(&c, &req).await.map(created)
}

pub async fn get_org(
    State(s): State<AppState>,
    Caller(c): Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, AppError> {
    s.evaluate(&c, &requests::GetOrg(requests::ById { id }))
        .await
}

/// `POST /v1/devices`: the contract's `IdentifyDevice` plus the gateway-only `node_id`.
pub async fn identify_device(
    State(s): State<AppState>,
    Caller(c): Caller,
    ApiJson(mut body): ApiJson<serde_json::Map<String, serde_json::Value>>,
) -> Created {
    let node_id = match body.remove("node_id") {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(node)) => Some(node),
        Some(other) => {
            return Err(AppError::bad_request(format!(
                "node_id must be a string, got {other}"
            )))
        }
    };
    let req: requests::IdentifyDevice = serde_json::from_value(serde_json::Value::Object(body))
        .map_err(|e| {
            AppError::bad_request(format!(
                "Failed to deserialize the JSON body into the target type: {e}"
            ))
        })?;
    req.check().map_err(AppError::bad_request)?;
    if let Some(node) = &node_id {
        tom_contract::ids::check_text("node_id", node, tom_contract::ids::MAX_ID_LEN)
            .map_err(AppError::bad_request)?;
    }
    let (ledger, actions) = (s.ledger.clone(), s.actions.clone());
    s.act::<requests::IdentifyDevice>(actions.identify_device(
        &ledger,
        &c.signing,
        &req,
        node_id.as_deref(),
    ))
    .await
    .map(created)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReasonQuery {
    #[serde(default)]
    reason: Option<String>,
}

pub async fn terminate_device(
    State(s): State<AppState>,
    Caller(c): Caller,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<ReasonQuery>,
) -> Result<Json<Committed>, AppError> {
    let req = requests::TerminateEntity {
        id,
        reason: q.reason,
    };
    let (ledger, actions) = (s.ledger.clone(), s.actions.clone());
    s.act::<requests::TerminateDevice>(actions.terminate_device(&ledger, &c.signing, &req))
        .await
        .map(Json)
}

/// `GET /v1/swarm/unauthorised`: services on the swarm no TOM gateway authorised.
pub async fn unauthorised_services(
    State(s): State<AppState>,
    Caller(_c): Caller,
) -> Result<Json<serde_json::Value>, AppError> {
    s.actions
        .unauthorised_services()
        .await
        .map(Json)
        .map_err(AppError::from)
}

pub async fn identify_container(
    State(s): State<AppState>,
    Caller(c): Caller,
    ApiJson(req): ApiJson<requests::IdentifyContainer>,
) -> Created {
    s.submit(&c, &req).await.map(created)
}

pub async fn terminate_container(
    State(s): State<AppState>,
    Caller(c): Caller,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<ReasonQuery>,
) -> Result<Json<Committed>, AppError> {
    let req = requests::TerminateEntity {
        id,
        reason: q.reason,
    };
    let (ledger, actions) = (s.ledger.clone(), s.actions.clone());
    s.act::<requests::TerminateContainer>(actions.terminate(&ledger, &c.signing, &req))
        .await
        .map(Json)
}

pub async fn place_container(
    State(s): State<AppState>,
    Caller(c): Caller,
    ApiJson(req): ApiJson<requests::PlaceContainer>,
) -> Created {
    let (ledger, actions) = (s.ledger.clone(), s.actions.clone());
    s.act::<requests::PlaceContainer>(actions.place(&ledger, &c.signing, &req))
        .await
        .map(created)
}

pub async fn record_outcome(
    State(s): State<AppState>,
    Caller(c): Caller,
    ApiJson(req): ApiJson<requests::RecordOutcome>,
) -> Created {
    s.submit(&c, &req).await.map(created)
}

pub async fn record_drift(
    State(s): State<AppState>,
    Caller(c): Caller,
    ApiJson(req): ApiJson<requests::RecordDrift>,
) -> Created {
    s.submit(&c, &req).await.map(created)
}

pub async fn define_contract(
    State(s): State<AppState>,
    Caller(c): Caller,
    ApiJson(req): ApiJson<requests::DefineContract>,
) -> Created {
    s.submit(&c, &req).await.map(created)
}

pub async fn evaluate_contract(
    State(s): State<AppState>,
    Caller(c): Caller,
    ApiPath(contract_id): ApiPath<String>,
) -> Created {
    s.submit(&c, &requests::EvaluateContract { contract_id })
        .await
        .map(created)
}

pub async fn record_data(
    State(s): State<AppState>,
    Caller(c): Caller,
    ApiJson(req): ApiJson<requests::RecordData>,
) -> Created {
    s.submit(&c, &req).await.map(created)
}

pub async fn exec_contract(
    State(s): State<AppState>,
    Caller(c): Caller,
    ApiJson(req): ApiJson<requests::ExecContract>,
) -> Created {
    s.submit(&c, &req).await.map(created)
}

pub async fn get_entity(
    State(s): State<AppState>,
    Caller(c): Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, AppError> {
    s.evaluate(&c, &requests::GetEntity(requests::ById { id }))
        .await
}

pub async fn get_history(
    State(s): State<AppState>,
    Caller(c): Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, AppError> {
    s.evaluate(&c, &requests::GetHistory(requests::ById { id }))
        .await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LineageParams {
    #[serde(default)]
    direction: Direction,
    #[serde(default)]
    depth: Option<u32>,
    #[serde(default)]
    limit: Option<u32>,
    #[serde(default)]
    fan_out: Option<u32>,
    #[serde(default)]
    bookmark: Option<String>,
}

impl LineageParams {
    fn query(self, id: String) -> requests::LineageQuery {
        requests::LineageQuery {
            id,
            direction: self.direction,
            depth: self.depth,
            limit: self.limit,
            fan_out: self.fan_out,
            bookmark: self.bookmark.filter(|b| !b.is_empty()),
        }
    }
}

pub async fn get_lineage(
    State(s): State<AppState>,
    Caller(c): Caller,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<LineageParams>,
) -> Result<Response, AppError> {
    s.evaluate(&c, &requests::GetLineage(q.query(id))).await
}

pub async fn export_prov(
    State(s): State<AppState>,
    Caller(c): Caller,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<LineageParams>,
) -> Result<Response, AppError> {
    s.evaluate(&c, &requests::ExportProv(q.query(id))).await
}

pub async fn query_records(
    State(s): State<AppState>,
    Caller(c): Caller,
    ApiQuery(q): ApiQuery<requests::RecordsQuery>,
) -> Result<Response, AppError> {
    s.evaluate(&c, &q).await
}

pub async fn list_devices(
    State(s): State<AppState>,
    Caller(c): Caller,
    ApiQuery(q): ApiQuery<requests::DevicesQuery>,
) -> Result<Response, AppError> {
    s.evaluate(&c, &q).await
}

pub async fn list_containers(
    State(s): State<AppState>,
    Caller(c): Caller,
    ApiQuery(q): ApiQuery<requests::ContainersQuery>,
) -> Result<Response, AppError> {
    s.evaluate(&c, &q).await
}

pub async fn list_contracts(
    State(s): State<AppState>,
    Caller(c): Caller,
    ApiQuery(q): ApiQuery<requests::ContractsQuery>,
) -> Result<Response, AppError> {
    s.evaluate(&c, &q).await
}

pub async fn get_record(
    State(s): State<AppState>,
    Caller(c): Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, AppError> {
    s.evaluate(&c, &requests::GetRecord(requests::ById { id }))
        .await
}

/// Liveness: the process answers. Unauthenticated, so it names no paths and no back end.
pub async fn health() -> Json<serde_json::Value> {
    Json(serde_json::json!({
        "status": "ok",
        "version": env!("CARGO_PKG_VERSION"),
    }))
}

/// Readiness: whether the ledger can take transactions now (embedded: the commit thread is
/// alive and its storage writable), 200 if so, else 503 saying why. No paths.
pub async fn ready(State(s): State<AppState>) -> Response {
    let ledger = s.ledger.readiness();
    let status = if ledger.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = Json(serde_json::json!({
        "status": if ledger.ready { "ready" } else { "not ready" },
        "ledger": { "ready": ledger.ready, "detail": ledger.detail },
        "orchestrator": s.actions.describe(),
    }));
    (status, body).into_response()
}

pub async fn metrics(State(s): State<AppState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        s.metrics.render() + &s.ledger.metrics(),
    )
}

pub async fn openapi() -> Json<serde_json::Value> {
    Json(super::openapi::document())
}

/// Anything not in [`super::ROUTES`].
pub async fn no_route(method: axum::http::Method, uri: axum::http::Uri) -> AppError {
    AppError::not_found(format!(
        "no route for {method} {}; see /openapi.json for the API",
        uri.path()
    ))
}

pub async fn wrong_method(method: axum::http::Method, uri: axum::http::Uri) -> AppError {
    AppError::Client {
        status: StatusCode::METHOD_NOT_ALLOWED,
        message: format!("{} does not accept {method}; see /openapi.json", uri.path()),
    }
}
