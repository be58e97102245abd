//! The AdmissionReview on the wire: the request as credgate reads it and the
//! answer as it writes it.
//!
//! The envelope is decoded once, borrowing from the body: the object and the
//! old object stay raw JSON ([`RawValue`]: checked, not built) until the
//! handler for their kind reads them as the one type it needs, so no object
//! is decoded twice nor converted between types. The answer is written in one
//! pass from borrowed fields.

use kube::core::GroupVersionKind;
use kube::core::admission::Operation;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

const API_VERSION: &str = "admission.k8s.io/v1";
const KIND: &str = "AdmissionReview";

/// One AdmissionReview request. (No `Debug`: the raw objects may hold a
/// Secret's data.)
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Request<'a> {
    pub uid: String,
    pub kind: GroupVersionKind,
    /// Required, as the API defines it; credgate routes by `kind`.
    #[allow(dead_code)]
    resource: serde::de::IgnoredAny,
    #[serde(default)]
    pub sub_resource: Option<String>,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub namespace: Option<String>,
    pub operation: Operation,
    pub user_info: k8s_openapi::api::authentication::v1::UserInfo,
    #[serde(default)]
    pub dry_run: bool,
    #[serde(borrow, default)]
    pub object: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub old_object: Option<&'a RawValue>,
}

impl<'a> Request<'a> {
    /// The object (`old: false`) or old object read as `K` (which may borrow
    /// from the body); `None` when the request carries none. It must be a
    /// JSON object. The error names the kind of fault only: not a value, nor
    /// a position (which could hint at the length of a Secret's value).
    pub fn read<K: Deserialize<'a>>(&self, old: bool) -> Result<Option<K>, String> {
        let (which, raw) = if old {
            ("oldObject", self.old_object)
        } else {
            ("object", self.object)
        };
        let fault = |what: &str| {
            format!(
                "the {which} could not be read as {}: {what}",
                self.kind.kind
            )
        };
        raw.map(|raw| {
            if !is_object(raw.get().as_bytes()) {
                return Err(fault("it is not a JSON object"));
            }
            serde_json::from_str(raw.get()).map_err(|e| fault(json_error_category(&e)))
        })
        .transpose()
    }
}

#[derive(Deserialize)]
struct Review<'a> {
    #[serde(default, rename = "apiVersion")]
    api_version: String,
    #[serde(default)]
    kind: String,
    #[serde(borrow)]
    request: Option<Request<'a>>,
}

/// Why a body is not a request credgate can decide on.
pub enum Undecodable {
    /// No uid to answer to: HTTP 400.
    NoUid(String),
    /// A uid to deny.
    WithUid { uid: String, reason: String },
}

/// Whether `json` is an object (serde's derived structs take arrays too).
fn is_object(json: &[u8]) -> bool {
    json.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{')
}

/// Decodes the envelope of an AdmissionReview body.
pub fn decode(body: &[u8]) -> Result<Request<'_>, Undecodable> {
    match serde_json::from_slice::<Review<'_>>(body) {
        Ok(_) if !is_object(body) => Err(Undecodable::NoUid(
            "the AdmissionReview could not be decoded: it is not a JSON object".into(),
        )),
        Ok(review) => {
            let Some(request) = review.request else {
                return Err(Undecodable::NoUid(
                    "the AdmissionReview has no request".into(),
                ));
            };
            if request.uid.is_empty() {
                return Err(Undecodable::NoUid(
                    "the AdmissionReview has no request.uid".into(),
                ));
            }
            if review.api_version != API_VERSION || review.kind != KIND {
                return Err(Undecodable::WithUid {
                    uid: request.uid,
                    reason: format!(
                        "credgate answers {API_VERSION} {KIND} only, not {:?} {:?}; set admissionReviewVersions: [v1] in the webhook configuration",
                        review.api_version, review.kind
                    ),
                });
            }
            Ok(request)
        }
        Err(error) => {
            #[derive(Deserialize)]
            struct Probe {
                request: Option<ProbeRequest>,
            }
            #[derive(Deserialize)]
            struct ProbeRequest {
                uid: Option<serde_json::Value>,
            }
            let probe = serde_json::from_slice::<Probe>(body).ok();
            let problem = match &probe {
                // Well-formed JSON: whatever serde's category, a field is at fault.
                Some(_) => format!(
                    "a field is missing or has the wrong type at line {} column {}",
                    error.line(),
                    error.column()
                ),
                None => describe_json_error(&error),
            };
            let reason = format!("the AdmissionReview could not be decoded: {problem}");
            let uid = probe
                .and_then(|p| p.request?.uid)
                .and_then(|uid| uid.as_str().map(str::to_owned))
                .filter(|u| !u.is_empty());
            match uid {
                Some(uid) => Err(Undecodable::WithUid { uid, reason }),
                None => Err(Undecodable::NoUid(reason)),
            }
        }
    }
}

/// What kind of fault a JSON error is, in words.
fn json_error_category(error: &serde_json::Error) -> &'static str {
    match error.classify() {
        serde_json::error::Category::Io => "read error",
        serde_json::error::Category::Syntax => "malformed JSON",
        serde_json::error::Category::Eof => "truncated JSON",
        serde_json::error::Category::Data => "a field is missing or has the wrong type",
    }
}

/// A JSON error without the input it quotes: category and position only.
pub fn describe_json_error(error: &serde_json::Error) -> String {
    let what = json_error_category(error);
    if error.line() == 0 {
        what.to_owned()
    } else {
        format!("{what} at line {} column {}", error.line(), error.column())
    }
}

/// The answer to one request; [`encode`] writes it as the API defines
/// `AdmissionResponse`, with the patch as base64 (the API's `[]byte`).
#[derive(Debug)]
pub struct Answer {
    pub uid: String,
    pub allowed: bool,
    pub status: Status,
    /// The JSON patch (RFC 6902), of type `JSONPatch`.
    pub patch: Option<Vec<u8>>,
    pub warnings: Vec<String>,
}

/// The `status` of an answer, as `metav1.Status`.
#[derive(Debug, Default, Serialize)]
pub struct Status {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<&'static str>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
}

impl Answer {
    /// Allowed, nothing to change.
    pub fn allow(uid: String) -> Self {
        Answer {
            uid,
            allowed: true,
            status: Status::default(),
            patch: None,
            warnings: Vec::new(),
        }
    }

    /// Refused with `message`, for the person reading kubectl's output.
    pub fn deny(mut self, message: String) -> Self {
        self.allowed = false;
        self.status.message = message;
        self
    }

    /// A request that cannot be decided on (as kube-rs's `invalid`).
    pub fn invalid(uid: String, reason: String) -> Self {
        let mut answer = Answer::allow(uid).deny(reason);
        answer.status.status = Some("Failure");
        answer.status.reason = Some("InvalidRequest");
        answer
    }

    /// Adds `patch`, RFC 6902 JSON; an empty one is no patch.
    pub fn set_patch(&mut self, patch: Vec<u8>) {
        self.patch = Some(patch).filter(|p| !p.is_empty());
    }
}

/// The response body for `answer`, written straight into one buffer. Strings
/// that may need escaping go through serde; the patch is base64-encoded in
/// place (its alphabet needs no escaping).
pub fn encode(answer: &Answer) -> Vec<u8> {
    let size = 160
        + answer.uid.len()
        + answer.status.message.len()
        + answer.patch.as_ref().map_or(0, |p| p.len().div_ceil(3) * 4)
        + answer.warnings.iter().map(|w| w.len() + 4).sum::<usize>();
    let mut body = Vec::with_capacity(size);
    if write_answer(&mut body, answer).is_err() {
        // Serialising strings cannot fail; keep a valid answer anyway.
        return br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":"","allowed":false}}"#.to_vec();
    }
    body
}

fn write_answer(body: &mut Vec<u8>, answer: &Answer) -> Result<(), serde_json::Error> {
    for part in [r#"{"apiVersion":""#, API_VERSION, r#"","kind":""#, KIND] {
        body.extend_from_slice(part.as_bytes());
    }
    body.extend_from_slice(br#"","response":{"uid":"#);
    crate::model::json::write_str(body, &answer.uid)?;
    body.extend_from_slice(if answer.allowed {
        br#","allowed":true,"status":"#
    } else {
        br#","allowed":false,"status":"#
    });
    serde_json::to_writer(&mut *body, &answer.status)?;
    if let Some(patch) = &answer.patch {
        body.extend_from_slice(br#","patchType":"JSONPatch","patch":""#);
        // SIMD where the CPU has it: the patch is most of the answer.
        base64_simd::STANDARD.encode_append(patch, body);
        body.push(b'"');
    }
    if !answer.warnings.is_empty() {
        body.extend_from_slice(br#","warnings":"#);
        serde_json::to_writer(&mut *body, &answer.warnings)?;
    }
    body.extend_from_slice(b"}}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;

    /// The answer is one JSON document with every member the API reads, the
    /// patch as base64 of its JSON, and strings escaped.
    #[test]
    fn answers_are_written_whole() {
        let patch = br#"[{"op":"add","path":"/spec/x","value":"\"q\""}]"#.to_vec();
        let mut answer = Answer::allow("u-\"1\"".into());
        answer.warnings = vec!["container \"a\" sets X itself".into()];
        answer.set_patch(patch.clone());
        let got: serde_json::Value = serde_json::from_slice(&encode(&answer)).unwrap();
        assert_eq!(got["apiVersion"], API_VERSION);
        assert_eq!(got["kind"], KIND);
        let response = &got["response"];
        assert_eq!(response["uid"], "u-\"1\"");
        assert_eq!(response["allowed"], true);
        assert_eq!(response["status"], serde_json::json!({}));
        assert_eq!(response["patchType"], "JSONPatch");
        let sent = base64::engine::general_purpose::STANDARD
            .decode(response["patch"].as_str().unwrap())
            .unwrap();
        assert_eq!(sent, patch);
        assert_eq!(response["warnings"][0], "container \"a\" sets X itself");
        let denied: serde_json::Value =
            serde_json::from_slice(&encode(&Answer::invalid("u".into(), "no \"kind\"".into())))
                .unwrap();
        assert_eq!(
            denied["response"],
            serde_json::json!({"uid": "u", "allowed": false,
                "status": {"status": "Failure", "message": "no \"kind\"", "reason": "InvalidRequest"}})
        );
    }
}
