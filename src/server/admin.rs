//! The plain-HTTP admin port: `/livez`, `/readyz`, `/metrics`.

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use std::convert::Infallible;
use std::sync::Arc;

use super::http::text;
use crate::server::metrics::Metrics;
use crate::state::health::Health;

/// What the admin handler reads.
pub struct Admin {
    pub health: Arc<Health>,
    pub metrics: Arc<Metrics>,
}

pub async fn handle(
    admin: Arc<Admin>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "the admin port takes GET");
        response
            .headers_mut()
            .insert(header::ALLOW, header::HeaderValue::from_static("GET, HEAD"));
        return Ok(response);
    }
    Ok(match req.uri().path() {
        "/livez" => text(StatusCode::OK, "ok"),
        "/readyz" => match admin.health.not_ready_reason() {
            None => text(StatusCode::OK, "ok"),
            Some(reason) => text(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("not ready: {reason}"),
            ),
        },
        "/metrics" => {
            let mut response = Response::new(Full::new(Bytes::from(admin.metrics.encode())));
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static(
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                ),
            );
            response
        }
        other => text(
            StatusCode::NOT_FOUND,
            format!("no such path {other:?}: use /livez, /readyz or /metrics"),
        ),
    })
}
