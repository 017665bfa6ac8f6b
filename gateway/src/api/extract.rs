//! Request extractors whose failures are [`AppError`]s: the caller's identity from its bearer
//! token, and JSON bodies, query strings and paths whose rejections name what is wrong (instead
//! of axum's plain-text defaults), so every 4xx has the same JSON shape.

use std::sync::Arc;

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use serde::de::DeserializeOwned;

use super::error::AppError;
use crate::app::AppState;
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
            .ok_or_else(|| AppError::unauthorized("unknown API token"))
    }
}

/// A JSON body; malformed JSON, unknown fields, a wrong content type or an oversized body
/// become 400/415/413 with axum's description of the problem.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = AppError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(value)) => Ok(ApiJson(value)),
            Err(rejection) => {
                let status = rejection.status();
                let message = if status == StatusCode::PAYLOAD_TOO_LARGE {
                    format!(
                        "request body is larger than the limit of {} bytes",
                        super::BODY_LIMIT
                    )
                } else {
                    rejection.body_text()
                };
                // Unprocessable (valid JSON, wrong shape) is reported as 400 like other bad input.
                let status = if status == StatusCode::UNPROCESSABLE_ENTITY {
                    StatusCode::BAD_REQUEST
                } else {
                    status
                };
                Err(AppError::Client { status, message })
            }
        }
    }
}

/// A query string.
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| ApiQuery(q.0))
            .map_err(|rejection| AppError::bad_request(rejection.body_text()))
    }
}

/// A path parameter.
pub struct ApiPath<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for ApiPath<T> {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| ApiPath(p.0))
            .map_err(|rejection| AppError::bad_request(rejection.body_text()))
    }
}
