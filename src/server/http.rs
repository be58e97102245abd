//! The webhook's HTTP layer: routes, limits and status codes around [`Admission`].

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::admission::{Admission, Decision, Endpoint};
use crate::server::metrics::Metrics;

/// Limits applied to each webhook request.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Largest accepted body; larger gets 413.
    pub max_body_bytes: usize,
    /// Longest time to receive a whole body; slower gets 408.
    pub body_timeout: Duration,
}

/// What the webhook handler needs.
pub struct Webhook {
    pub admission: Admission,
    pub metrics: Arc<Metrics>,
    pub limits: Limits,
}

/// Serves `POST /validate` and `POST /mutate`.
pub async fn handle(
    webhook: Arc<Webhook>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let _in_flight = webhook.metrics.in_flight();
    let response = match route(&webhook, req).await {
        Ok(response) => response,
        Err((status, message)) => {
            webhook.metrics.http_error(status.as_u16());
            text(status, message)
        }
    };
    Ok(response)
}

type Failure = (StatusCode, String);

async fn route(
    webhook: &Webhook,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Failure> {
    let endpoint = match req.uri().path() {
        "/validate" => Endpoint::Validate,
        "/mutate" => Endpoint::Mutate,
        other => {
            return Err((
                StatusCode::NOT_FOUND,
                format!("no such path {other:?}: use POST /validate or POST /mutate"),
            ));
        }
    };
    if req.method() != Method::POST {
        return Err((
            StatusCode::METHOD_NOT_ALLOWED,
            format!("{} takes POST, not {}", req.uri().path(), req.method()),
        ));
    }
    if let Some(content_type) = req.headers().get(header::CONTENT_TYPE)
        && !content_type
            .to_str()
            .is_ok_and(|v| v.starts_with("application/json"))
    {
        return Err((
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "send the AdmissionReview as Content-Type: application/json".into(),
        ));
    }
    let limit = webhook.limits.max_body_bytes;
    let too_large = || {
        (
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body exceeds the limit of {limit} bytes"),
        )
    };
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit as u64) {
        return Err(too_large());
    }
    let body = Limited::new(req.into_body(), limit);
    let body = match tokio::time::timeout(webhook.limits.body_timeout, body.collect()).await {
        Err(_) => {
            return Err((
                StatusCode::REQUEST_TIMEOUT,
                "the request body did not arrive in time".into(),
            ));
        }
        Ok(Err(error)) if error.downcast_ref::<LengthLimitError>().is_some() => {
            return Err(too_large());
        }
        Ok(Err(error)) => {
            return Err((
                StatusCode::BAD_REQUEST,
                format!("the request body could not be read: {error}"),
            ));
        }
        Ok(Ok(collected)) => collected.to_bytes(),
    };
    let started = Instant::now();
    let outcome = webhook.admission.review(endpoint, &body).await;
    webhook
        .metrics
        .admission(endpoint, &outcome.kind, outcome.decision, started.elapsed());
    if outcome.decision == Decision::BadRequest {
        return Err((
            StatusCode::BAD_REQUEST,
            String::from_utf8_lossy(&outcome.body).into_owned(),
        ));
    }
    Ok(Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(outcome.body)))
        .unwrap_or_default())
}

/// A plain-text answer.
pub fn text(status: StatusCode, message: impl Into<String>) -> Response<Full<Bytes>> {
    let mut body = message.into();
    body.push('\n');
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    if status == StatusCode::METHOD_NOT_ALLOWED {
        response
            .headers_mut()
            .insert(header::ALLOW, header::HeaderValue::from_static("POST"));
    }
    response
}
