//! Request extractors whose failures are [`AppError`]s: the caller's identity from its bearer
//! token, and JSON bodies, query strings and paths whose rejections name what is wrong (instead
//! of axum's plain-text defaults), so every 4xx has the same JSON shape.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, MatchedPath, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use serde::de::DeserializeOwned;
use tom_contract::requests;

use super::error::AppError;
use super::state::AppState;
use crate::identities::Identity;

/// The authenticated caller: the identity its `Authorization: Bearer <token>` selects.
pub struct Caller(pub Arc<Identity>);

impl FromRequestParts<AppState> for Caller {
    type Rejection = AppError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let Some(value) = parts.headers.get(header::AUTHORIZATION) else {
            return Err(AppError::unauthorized(
                "missing Authorization header: send `Authorization: Bearer <API token>`",
            ));
        };
        let text = value
            .to_str()
            .map_err(|_| AppError::unauthorized("Authorization header is not ASCII text"))?;
        let Some(token) = text
            .strip_prefix("Bearer ")
            .map(str::trim)
            .filter(|t| !t.is_empty())
        else {
            return Err(AppError::unauthorized(
                "Authorization header must be `Bearer <API token>`",
            ));
        };
        state
            .identities
            .authenticate(token)
            .map(Caller)
            .ok_or_else(|| {
                AppError::unauthorized(
                    "unknown API token: no identity of this gateway has it (any more). Tokens \
                     from `tom identity add|issue|rotate` or `tom demo install` on this \
                     gateway's data directory work at once, without a restart; check that the \
                     token is the whole line of its token file, that it was added to the data \
                     directory this gateway serves, and that it was not revoked or past a \
                     rotation's overlap",
                )
            })
    }
}

/// A request type the gateway checks before any ledger call: the contract's own bounds
/// (`tom_contract::bounds`), so an out-of-bounds body never reaches the ledger.
pub trait Checked {
    fn check(&self) -> Result<(), String>;
}

macro_rules! checked_by_contract {
    ($($t:ty),* $(,)?) => {$(
        impl Checked for $t {
            fn check(&self) -> Result<(), String> {
                tom_contract::bounds::Bounded::check_bounds(self)
            }
        }
    )*};
}

checked_by_contract!(
    requests::RegisterOrg,
    requests::IdentifyDevice,
    requests::IdentifyContainer,
    requests::PlaceContainer,
    requests::RecordOutcome,
    requests::RecordDrift,
    requests::DefineContract,
    requests::RecordData,
    requests::ExecContract,
    requests::RecordsQuery,
);

/// A body the handler takes apart itself (and checks once it has built the request).
impl Checked for serde_json::Map<String, serde_json::Value> {
    fn check(&self) -> Result<(), String> {
        Ok(())
    }
}

fn is_json(content_type: Option<&HeaderValue>) -> bool {
    let Some(mime) = content_type
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|m| m.trim().to_ascii_lowercase())
    else {
        return false;
    };
    mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json"))
}

/// A JSON body: `Content-Type: application/json` (else 415), at most [`super::BODY_LIMIT`]
/// bytes (else 413), no object repeating a key, unknown fields refused, every field within the
/// contract's bounds (else 400 naming the field and its rule).
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned + Checked, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = AppError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !is_json(req.headers().get(header::CONTENT_TYPE)) {
            return Err(AppError::Client {
                status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
                message: "expected a request body with `Content-Type: application/json`".into(),
            });
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            let status = rejection.status();
            let message = if status == StatusCode::PAYLOAD_TOO_LARGE {
                format!(
                    "request body is larger than the limit of {} bytes",
                    super::BODY_LIMIT
                )
            } else {
                rejection.body_text()
            };
            AppError::Client { status, message }
        })?;
        let bad = |e: String| AppError::bad_request(format!("invalid JSON body: {e}"));
        tom_contract::bounds::check_unique_keys(&bytes).map_err(bad)?;
        let value: T = serde_json::from_slice(&bytes).map_err(|e| bad(e.to_string()))?;
        value.check().map_err(AppError::bad_request)?;
        Ok(ApiJson(value))
    }
}

/// The route this request matched, for its parameter rules.
fn matched_route(parts: &Parts) -> Option<&'static super::Route> {
    let matched = parts.extensions.get::<MatchedPath>()?;
    super::route(parts.method.as_str(), matched.as_str())
}

fn check_param(
    route: &super::Route,
    in_path: bool,
    name: &str,
    value: &str,
) -> Result<(), AppError> {
    match route
        .params
        .iter()
        .find(|p| p.in_path == in_path && p.name == name)
    {
        Some(param) => param.check(value).map_err(AppError::bad_request),
        None if in_path => Ok(()),
        None => Err(AppError::bad_request(format!(
            "unknown field `{}` in the query string; see /openapi.json",
            name.chars().take(40).collect::<String>().escape_debug()
        ))),
    }
}

/// A query string whose every parameter is checked against its route's rule (see
/// [`super::Rule`]) before the handler runs; unknown or repeated parameters are refused.
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let pairs = axum::extract::Query::<Vec<(String, String)>>::try_from_uri(&parts.uri)
            .map_err(|rejection| AppError::bad_request(rejection.body_text()))?
            .0;
        if let Some(route) = matched_route(parts) {
            let mut seen = std::collections::BTreeSet::new();
            for (name, value) in &pairs {
                if !seen.insert(name.as_str()) {
                    return Err(AppError::bad_request(format!(
                        "query parameter {} is repeated",
                        tom_contract::ids::shown(name)
                    )));
                }
                check_param(route, false, name, value)?;
            }
        }
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| ApiQuery(q.0))
            .map_err(|rejection| AppError::bad_request(rejection.body_text()))
    }
}

/// A path parameter, checked against its route's grammar before the handler runs.
pub struct ApiPath<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for ApiPath<T> {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let raw = axum::extract::Path::<Vec<(String, String)>>::from_request_parts(parts, state)
            .await
            .map_err(|rejection| AppError::bad_request(rejection.body_text()))?
            .0;
        if let Some(route) = matched_route(parts) {
            for (name, value) in &raw {
                check_param(route, true, name, value)?;
            }
        }
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| ApiPath(p.0))
            .map_err(|rejection| AppError::bad_request(rejection.body_text()))
    }
}
