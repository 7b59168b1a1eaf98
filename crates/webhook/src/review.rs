//! The wire format: `admission.k8s.io/v1` AdmissionReview, the request the API server sends
//! and the response it expects back (same `apiVersion` and `kind`, the request's `uid`).
//!
//! Only the fields the webhook reads are typed; everything else in the request is ignored.
//! A body that is not a v1 AdmissionReview with a request and a uid is a [`ReviewError`]
//! (answered with HTTP 400), never a panic.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The only AdmissionReview version served (the chart registers `admissionReviewVersions: [v1]`).
pub const API_VERSION: &str = "admission.k8s.io/v1";
/// The `kind` of the review, in and out.
pub const KIND: &str = "AdmissionReview";

/// Why a body is not a usable AdmissionReview.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReviewError {
    #[error("the body is not JSON: {0}")]
    NotJson(String),
    #[error("not an AdmissionReview: {0}")]
    Shape(String),
    #[error("apiVersion {found:?} is not served; send {API_VERSION}")]
    Version { found: String },
    #[error("kind {found:?} is not {KIND}")]
    Kind { found: String },
    #[error("the AdmissionReview has no request")]
    NoRequest,
    #[error("request.uid is missing or empty")]
    NoUid,
}

/// An incoming review, as far as the webhook reads it.
#[derive(Debug, Deserialize)]
struct IncomingReview {
    #[serde(rename = "apiVersion", default)]
    api_version: String,
    #[serde(default)]
    kind: String,
    request: Option<Request>,
}

/// `request` of an AdmissionReview.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Request {
    #[serde(default)]
    pub uid: String,
    /// The object's group, version and kind.
    #[serde(default)]
    pub kind: GroupVersionKind,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub namespace: String,
    /// `CREATE`, `UPDATE`, `DELETE` or `CONNECT`.
    #[serde(default)]
    pub operation: String,
    /// The object as it would be stored (CREATE, UPDATE).
    #[serde(default)]
    pub object: Option<Value>,
    /// The object as stored before the request (UPDATE, DELETE).
    #[serde(default)]
    pub old_object: Option<Value>,
    /// Whether the request is a `--dry-run=server` request (nothing is stored either way).
    #[serde(default)]
    pub dry_run: Option<bool>,
}

/// `request.kind`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
pub struct GroupVersionKind {
    #[serde(default)]
    pub group: String,
    #[serde(default)]
    pub version: String,
    #[serde(default)]
    pub kind: String,
}

/// The webhook's answer to one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    pub allowed: bool,
    /// On a denial: an HTTP-like code (422 invalid, 400 undecodable) and the message.
    pub denial: Option<Denial>,
    /// Shown by kubectl as `Warning: ...`; sent on allowed and denied answers alike.
    pub warnings: Vec<String>,
}

/// Why a request was denied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Denial {
    pub code: u16,
    /// `Invalid` or `BadRequest`, as Kubernetes' own status reasons.
    pub reason: &'static str,
    pub message: String,
}

#[derive(Serialize)]
struct OutgoingReview<'a> {
    #[serde(rename = "apiVersion")]
    api_version: &'static str,
    kind: &'static str,
    response: Response<'a>,
}

#[derive(Serialize)]
struct Response<'a> {
    uid: &'a str,
    allowed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<Status<'a>>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    warnings: &'a [String],
}

/// A `meta/v1` Status, as `response.status`.
#[derive(Serialize)]
struct Status<'a> {
    status: &'static str,
    code: u16,
    reason: &'static str,
    message: &'a str,
}

// === impl Request ===

impl Request {
    /// Parses a request body. Anything but a v1 AdmissionReview with a request and a uid is an
    /// error that names what is wrong.
    pub fn parse(body: &[u8]) -> Result<Request, ReviewError> {
        let value: Value =
            serde_json::from_slice(body).map_err(|e| ReviewError::NotJson(e.to_string()))?;
        let review: IncomingReview =
            serde_json::from_value(value).map_err(|e| ReviewError::Shape(e.to_string()))?;
        if review.api_version != API_VERSION {
            return Err(ReviewError::Version {
                found: review.api_version,
            });
        }
        if review.kind != KIND {
            return Err(ReviewError::Kind { found: review.kind });
        }
        let request = review.request.ok_or(ReviewError::NoRequest)?;
        if request.uid.is_empty() {
            return Err(ReviewError::NoUid);
        }
        Ok(request)
    }
}

// === impl Verdict ===

impl Verdict {
    /// Allowed, with these warnings.
    pub fn allow(warnings: Vec<String>) -> Self {
        Self {
            allowed: true,
            denial: None,
            warnings,
        }
    }

    /// Denied as invalid (422), with the message users see.
    pub fn invalid(message: impl Into<String>, warnings: Vec<String>) -> Self {
        Self::deny(422, "Invalid", message, warnings)
    }

    /// Denied as undecodable (400).
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::deny(400, "BadRequest", message, Vec::new())
    }

    fn deny(
        code: u16,
        reason: &'static str,
        message: impl Into<String>,
        warnings: Vec<String>,
    ) -> Self {
        Self {
            allowed: false,
            denial: Some(Denial {
                code,
                reason,
                message: message.into(),
            }),
            warnings,
        }
    }

    /// The AdmissionReview answering the request with this `uid`.
    pub fn to_review(&self, uid: &str) -> Value {
        let review = OutgoingReview {
            api_version: API_VERSION,
            kind: KIND,
            response: Response {
                uid,
                allowed: self.allowed,
                status: self.denial.as_ref().map(|d| Status {
                    status: "Failure",
                    code: d.code,
                    reason: d.reason,
                    message: &d.message,
                }),
                warnings: &self.warnings,
            },
        };
        serde_json::to_value(review).unwrap_or(Value::Null)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn body(v: Value) -> Vec<u8> {
        serde_json::to_vec(&v).expect("serializes")
    }

    #[test]
    fn parses_a_v1_review() {
        let r = Request::parse(&body(json!({
            "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": {
                "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
                "kind": {"group": "portolan.dev", "version": "v1alpha1", "kind": "TrafficRoute"},
                "resource": {"group": "portolan.dev", "version": "v1alpha1", "resource": "trafficroutes"},
                "name": "reviews", "namespace": "shop", "operation": "CREATE",
                "userInfo": {"username": "admin"},
                "object": {"apiVersion": "portolan.dev/v1alpha1", "kind": "TrafficRoute"},
                "oldObject": null, "dryRun": false, "options": {}
            }
        })))
        .expect("parses");
        assert_eq!(r.uid, "705ab4f5-6393-11e8-b7cc-42010a800002");
        assert_eq!(r.kind.kind, "TrafficRoute");
        assert_eq!(r.operation, "CREATE");
        assert_eq!(r.namespace, "shop");
        assert!(r.object.is_some());
    }

    #[test]
    fn malformed_reviews_are_named() {
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (b"{not json".to_vec(), "the body is not JSON"),
            (body(json!([1, 2])), "not an AdmissionReview"),
            (
                body(
                    json!({"apiVersion": "admission.k8s.io/v1beta1", "kind": "AdmissionReview", "request": {"uid": "u"}}),
                ),
                "apiVersion \"admission.k8s.io/v1beta1\" is not served",
            ),
            (
                body(json!({"apiVersion": "admission.k8s.io/v1", "kind": "Pod"})),
                "kind \"Pod\" is not AdmissionReview",
            ),
            (
                body(json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"})),
                "has no request",
            ),
            (
                body(
                    json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {"uid": ""}}),
                ),
                "request.uid is missing",
            ),
            (
                body(
                    json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {"uid": 7}}),
                ),
                "not an AdmissionReview",
            ),
        ];
        for (b, want) in cases {
            let err = Request::parse(&b).expect_err("malformed");
            assert!(err.to_string().contains(want), "{err} (want {want:?})");
        }
    }

    #[test]
    fn a_denial_carries_uid_status_and_warnings() {
        let v = Verdict::invalid(
            "TrafficRoute default/r: spec.hosts: required",
            vec!["w".into()],
        );
        assert_eq!(
            v.to_review("abc"),
            json!({
                "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                "response": {
                    "uid": "abc", "allowed": false,
                    "status": {"status": "Failure", "code": 422, "reason": "Invalid",
                               "message": "TrafficRoute default/r: spec.hosts: required"},
                    "warnings": ["w"]
                }
            })
        );
        let ok = Verdict::allow(Vec::new()).to_review("abc");
        assert_eq!(ok["response"], json!({"uid": "abc", "allowed": true}));
    }
}
