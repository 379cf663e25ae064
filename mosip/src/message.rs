//! MOSIP's ABIS API 0.9 messages (`docs/ABIS-APIs.md` of MOSIP's documentation) as MOSIP's own
//! code sends and reads them.
//!
//! Reading is lenient where MOSIP varies: scalars may come as strings or numbers, absent parts as
//! `null` or empty strings, the version as `version` (MOSIP 1.2) or `ver` (the spec), the URL as
//! `referenceURL` (Insert) or `referenceUrl` (Identify). Writing is strict where MOSIP is: every
//! answer field is a string, `returnValue` is "1" or "2", and failures carry `failureReason`.

use std::collections::BTreeMap;

use abis_proto::FailureReason;
use serde_json::{Map, Value};
use thiserror::Error;

/// An ABIS operation, named on the wire by its `id`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    Insert,
    Identify,
    Delete,
    Ping,
    PendingJobs,
    ReferenceCount,
}

impl Operation {
    pub const ALL: [Operation; 6] = [
        Operation::Insert,
        Operation::Identify,
        Operation::Delete,
        Operation::Ping,
        Operation::PendingJobs,
        Operation::ReferenceCount,
    ];

    /// The request's `id` (`mosip.abis.insert`, ...).
    pub fn id(self) -> &'static str {
        match self {
            Operation::Insert => "mosip.abis.insert",
            Operation::Identify => "mosip.abis.identify",
            Operation::Delete => "mosip.abis.delete",
            Operation::Ping => "mosip.abis.ping",
            Operation::PendingJobs => "mosip.abis.pendingJobs",
            Operation::ReferenceCount => "mosip.abis.referenceCount",
        }
    }

    /// The operation of an `id`, ignoring case and surrounding blanks.
    pub fn from_id(id: &str) -> Option<Operation> {
        let id = id.trim();
        Operation::ALL
            .into_iter()
            .find(|op| op.id().eq_ignore_ascii_case(id))
    }
}

/// Identify's flags: the two abis interprets, and the rest kept as sent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Flags {
    pub max_results: Option<u32>,
    /// `round(-10 * log10(FPIR))`: 30 = 1e-3, 40 = 1e-4.
    pub target_fpir: Option<u32>,
    pub other: BTreeMap<String, String>,
}

/// One ABIS request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub operation: Operation,
    pub request_id: String,
    pub version: Option<String>,
    pub request_time: Option<String>,
    pub reference_id: Option<String>,
    pub reference_url: Option<String>,
    /// Identify's explicit gallery (`None`: the whole gallery).
    pub gallery: Option<Vec<String>>,
    pub flags: Flags,
}

/// A request that cannot be served, with what its failure answer needs.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum RequestError {
    #[error("the message is not a JSON object: {0}")]
    NotJson(String),
    #[error("the request has no requestId")]
    MissingRequestId { id: Option<String> },
    #[error("unknown operation id {id:?}")]
    UnknownOperation {
        id: Option<String>,
        request_id: String,
    },
    #[error("{operation:?} without a referenceId")]
    MissingReferenceId {
        operation: Operation,
        request_id: String,
    },
    #[error("field {field} is invalid: {detail}")]
    InvalidField {
        id: Option<String>,
        request_id: String,
        field: &'static str,
        detail: String,
    },
}

impl RequestError {
    /// The MOSIP failure reason of the answer.
    pub fn failure_reason(&self) -> FailureReason {
        match self {
            RequestError::MissingReferenceId { .. } => FailureReason::MissingReferenceId,
            _ => FailureReason::InvalidRequest,
        }
    }

    /// The `requestId` to answer under (empty when the request had none).
    pub fn request_id(&self) -> &str {
        match self {
            RequestError::NotJson(_) | RequestError::MissingRequestId { .. } => "",
            RequestError::UnknownOperation { request_id, .. }
            | RequestError::MissingReferenceId { request_id, .. }
            | RequestError::InvalidField { request_id, .. } => request_id,
        }
    }

    /// The failure answer MOSIP should get, echoing whatever `id` the request had.
    pub fn answer(&self) -> Response {
        let id = match self {
            RequestError::NotJson(_) => String::new(),
            RequestError::MissingRequestId { id }
            | RequestError::UnknownOperation { id, .. }
            | RequestError::InvalidField { id, .. } => id.clone().unwrap_or_default(),
            RequestError::MissingReferenceId { operation, .. } => operation.id().to_string(),
        };
        Response::failed(id, self.request_id(), self.failure_reason())
    }
}

/// Longest accepted request; MOSIP's are under a kilobyte (biometrics travel by URL).
pub const MAX_REQUEST_BYTES: usize = 1 << 20;
/// Most referenceIds accepted in an Identify gallery.
pub const MAX_GALLERY: usize = 100_000;

impl Request {
    /// A request as MOSIP 1.2 sends it (version 1.1), with no reference, gallery or flags yet.
    pub fn new(operation: Operation, request_id: String, request_time: String) -> Request {
        Request {
            operation,
            request_id,
            version: Some("1.1".into()),
            request_time: Some(request_time),
            reference_id: None,
            reference_url: None,
            gallery: None,
            flags: Flags::default(),
        }
    }

    /// Reads one request from a message body.
    pub fn parse(body: &[u8]) -> Result<Request, RequestError> {
        if body.len() > MAX_REQUEST_BYTES {
            return Err(RequestError::NotJson(format!(
                "{} bytes, more than {MAX_REQUEST_BYTES}",
                body.len()
            )));
        }
        let value: Value =
            serde_json::from_slice(body).map_err(|e| RequestError::NotJson(e.to_string()))?;
        let Value::Object(map) = value else {
            return Err(RequestError::NotJson("not an object".into()));
        };
        let id = scalar(&map, "id").ok().flatten();
        let request_id = match scalar(&map, "requestId") {
            Ok(Some(r)) => r,
            _ => return Err(RequestError::MissingRequestId { id }),
        };
        let Some(operation) = id.as_deref().and_then(Operation::from_id) else {
            return Err(RequestError::UnknownOperation { id, request_id });
        };
        let field = |name, r| checked(operation, &request_id, name, r);
        let request = Request {
            operation,
            version: field("version", first_scalar(&map, &["version", "ver"]))?,
            request_time: field("requesttime", scalar(&map, "requesttime"))?,
            reference_id: field("referenceId", scalar(&map, "referenceId"))?,
            reference_url: field(
                "referenceURL",
                first_scalar(&map, &["referenceURL", "referenceUrl"]),
            )?,
            gallery: checked(
                operation,
                &request_id,
                "gallery",
                gallery(map.get("gallery")),
            )?,
            flags: checked(operation, &request_id, "flags", flags(map.get("flags")))?,
            request_id: request_id.clone(),
        };
        request.check_required()?;
        Ok(request)
    }

    /// The parts each operation cannot do without.
    fn check_required(&self) -> Result<(), RequestError> {
        let missing_ref = || RequestError::MissingReferenceId {
            operation: self.operation,
            request_id: self.request_id.clone(),
        };
        match self.operation {
            Operation::Insert | Operation::Delete if self.reference_id.is_none() => {
                Err(missing_ref())
            }
            Operation::Insert if self.reference_url.is_none() => Err(RequestError::InvalidField {
                id: Some(self.operation.id().to_string()),
                request_id: self.request_id.clone(),
                field: "referenceURL",
                detail: "missing".into(),
            }),
            Operation::Identify if self.reference_id.is_none() && self.reference_url.is_none() => {
                Err(missing_ref())
            }
            _ => Ok(()),
        }
    }

    /// The request as MOSIP's registration processor writes it (`version`, Insert's
    /// `referenceURL`, Identify's `referenceUrl`, string flags, `null` for absent parts).
    pub fn to_json(&self) -> String {
        let mut m = Map::new();
        m.insert("id".into(), self.operation.id().into());
        m.insert("version".into(), opt(&self.version));
        m.insert("requestId".into(), self.request_id.clone().into());
        m.insert("requesttime".into(), opt(&self.request_time));
        if !matches!(
            self.operation,
            Operation::Ping | Operation::PendingJobs | Operation::ReferenceCount
        ) {
            m.insert("referenceId".into(), opt(&self.reference_id));
        }
        match self.operation {
            Operation::Insert => {
                m.insert("referenceURL".into(), opt(&self.reference_url));
            }
            Operation::Identify => {
                m.insert("referenceUrl".into(), opt(&self.reference_url));
                m.insert("gallery".into(), gallery_json(&self.gallery));
                m.insert("flags".into(), flags_json(&self.flags));
            }
            _ => {}
        }
        Value::Object(m).to_string()
    }
}

/// A field's value, or the error naming it.
fn checked<T>(
    operation: Operation,
    request_id: &str,
    field: &'static str,
    value: Result<T, String>,
) -> Result<T, RequestError> {
    value.map_err(|detail| RequestError::InvalidField {
        id: Some(operation.id().to_string()),
        request_id: request_id.to_string(),
        field,
        detail,
    })
}

fn opt(v: &Option<String>) -> Value {
    v.clone().map(Value::String).unwrap_or(Value::Null)
}

/// A scalar field as text: strings trimmed, numbers and booleans printed; `null`, absent and
/// empty are `None`; objects and arrays are an error.
fn scalar(map: &Map<String, Value>, key: &str) -> Result<Option<String>, String> {
    scalar_value(map.get(key))
}

fn scalar_value(v: Option<&Value>) -> Result<Option<String>, String> {
    let text = match v {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(s)) => s.trim().to_string(),
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::Bool(b)) => b.to_string(),
        Some(_) => return Err("expected a string".into()),
    };
    Ok((!text.is_empty()).then_some(text))
}

/// The first of `keys` that holds a value.
fn first_scalar(map: &Map<String, Value>, keys: &[&str]) -> Result<Option<String>, String> {
    for key in keys {
        if let Some(v) = scalar(map, key)? {
            return Ok(Some(v));
        }
    }
    Ok(None)
}

/// `{"referenceIds": [{"referenceId": "..."}]}`; `null` or no list means the whole gallery.
fn gallery(v: Option<&Value>) -> Result<Option<Vec<String>>, String> {
    let list = match v {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Object(g)) => match g.get("referenceIds") {
            None | Some(Value::Null) => return Ok(None),
            Some(Value::Array(list)) => list,
            Some(_) => return Err("referenceIds is not a list".into()),
        },
        Some(_) => return Err("not an object".into()),
    };
    if list.len() > MAX_GALLERY {
        return Err(format!("more than {MAX_GALLERY} referenceIds"));
    }
    let mut ids = Vec::with_capacity(list.len());
    for entry in list {
        let id = match entry {
            Value::Object(e) => scalar(e, "referenceId")?,
            other => scalar_value(Some(other))?,
        };
        ids.extend(id);
    }
    Ok(Some(ids))
}

/// Identify's flags, numbers as strings or numbers.
fn flags(v: Option<&Value>) -> Result<Flags, String> {
    let map = match v {
        None | Some(Value::Null) => return Ok(Flags::default()),
        Some(Value::Object(m)) => m,
        Some(_) => return Err("not an object".into()),
    };
    let mut flags = Flags::default();
    for (key, value) in map {
        let Some(text) = scalar_value(Some(value))? else {
            continue;
        };
        let number = || {
            text.parse::<f64>()
                .ok()
                .filter(|n| n.is_finite() && *n >= 0.0 && *n <= f64::from(u32::MAX))
                .map(|n| n.round() as u32)
                .ok_or_else(|| format!("{key} is not a non-negative number: {text:?}"))
        };
        match key.as_str() {
            "maxResults" => flags.max_results = Some(number()?),
            "targetFPIR" => flags.target_fpir = Some(number()?),
            _ => {
                flags.other.insert(key.clone(), text);
            }
        }
    }
    Ok(flags)
}

fn gallery_json(g: &Option<Vec<String>>) -> Value {
    match g {
        None => Value::Null,
        Some(ids) => {
            let list: Vec<Value> = ids
                .iter()
                .map(|id| serde_json::json!({ "referenceId": id }))
                .collect();
            serde_json::json!({ "referenceIds": list })
        }
    }
}

fn flags_json(f: &Flags) -> Value {
    let mut m = Map::new();
    if let Some(n) = f.max_results {
        m.insert("maxResults".into(), n.to_string().into());
    }
    if let Some(n) = f.target_fpir {
        m.insert("targetFPIR".into(), n.to_string().into());
    }
    for (k, v) in &f.other {
        m.insert(k.clone(), v.clone().into());
    }
    Value::Object(m)
}

/// Key-value analytics of a candidate or of one modality (values are strings on the wire).
pub type Analytics = BTreeMap<String, String>;

/// One modality's part of a candidate (`biometricType` FIR, FID or IIR).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModalityAnalytics {
    pub biometric_type: String,
    pub analytics: Analytics,
}

/// One Identify candidate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub reference_id: String,
    pub analytics: Analytics,
    pub modalities: Vec<ModalityAnalytics>,
}

/// What a successful answer carries besides its success.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Insert, Delete, Ping.
    Done,
    /// PendingJobs' `jobscount`.
    JobsCount(u64),
    /// ReferenceCount's `count`.
    Count(u64),
    /// Identify's `candidateList`, best first.
    Candidates(Vec<Candidate>),
}

/// Success with its answer, or failure with its reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Success(Answer),
    Failure(FailureReason),
}

/// One ABIS answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The request's `id`, echoed.
    pub id: String,
    pub request_id: String,
    pub response_time: String,
    pub outcome: Outcome,
}

/// An answer that cannot be read (used by the side that plays MOSIP).
#[derive(Debug, Error, PartialEq, Eq)]
#[error("invalid ABIS response: {0}")]
pub struct ResponseError(String);

impl Response {
    pub fn success(id: impl Into<String>, request_id: impl Into<String>, answer: Answer) -> Self {
        Response {
            id: id.into(),
            request_id: request_id.into(),
            response_time: String::new(),
            outcome: Outcome::Success(answer),
        }
    }

    pub fn failed(
        id: impl Into<String>,
        request_id: impl Into<String>,
        reason: FailureReason,
    ) -> Self {
        Response {
            id: id.into(),
            request_id: request_id.into(),
            response_time: String::new(),
            outcome: Outcome::Failure(reason),
        }
    }

    /// The answer stamped with its `responsetime` (the caller's clock, as
    /// `2020-03-29T07:01:24.692Z`); unstamped answers carry an empty one.
    pub fn at(mut self, response_time: impl Into<String>) -> Response {
        self.response_time = response_time.into();
        self
    }

    /// The answer as MOSIP reads it: every field a string.
    pub fn to_json(&self) -> String {
        let mut m = Map::new();
        m.insert("id".into(), self.id.clone().into());
        m.insert("requestId".into(), self.request_id.clone().into());
        m.insert("responsetime".into(), self.response_time.clone().into());
        match &self.outcome {
            Outcome::Failure(reason) => {
                m.insert("returnValue".into(), "2".into());
                m.insert("failureReason".into(), reason.code().to_string().into());
            }
            Outcome::Success(answer) => {
                m.insert("returnValue".into(), "1".into());
                write_answer(&mut m, answer);
            }
        }
        Value::Object(m).to_string()
    }

    /// Reads an answer (numbers or strings), the way a MOSIP-side test checks them.
    pub fn parse(body: &[u8]) -> Result<Response, ResponseError> {
        let bad = |what: &str| ResponseError(what.to_string());
        let value: Value = serde_json::from_slice(body).map_err(|e| bad(&e.to_string()))?;
        let map = value.as_object().ok_or_else(|| bad("not an object"))?;
        let text = |key: &str| scalar(map, key).map_err(|e| bad(&format!("{key}: {e}")));
        let outcome = match text("returnValue")?.as_deref() {
            Some("1") => Outcome::Success(read_answer(map)?),
            Some("2") => {
                let code = text("failureReason")?
                    .and_then(|c| c.parse().ok())
                    .and_then(FailureReason::from_code)
                    .ok_or_else(|| bad("failureReason"))?;
                Outcome::Failure(code)
            }
            other => return Err(bad(&format!("returnValue {other:?}"))),
        };
        Ok(Response {
            id: text("id")?.unwrap_or_default(),
            request_id: text("requestId")?.unwrap_or_default(),
            response_time: text("responsetime")?.unwrap_or_default(),
            outcome,
        })
    }
}

fn write_answer(m: &mut Map<String, Value>, answer: &Answer) {
    match answer {
        Answer::Done => {}
        Answer::JobsCount(n) => {
            m.insert("jobscount".into(), n.to_string().into());
        }
        Answer::Count(n) => {
            m.insert("count".into(), n.to_string().into());
        }
        Answer::Candidates(list) => {
            let candidates: Vec<Value> = list
                .iter()
                .map(|c| {
                    let modalities: Vec<Value> = c
                        .modalities
                        .iter()
                        .map(|md| {
                            serde_json::json!({
                                "biometricType": md.biometric_type,
                                "analytics": md.analytics,
                            })
                        })
                        .collect();
                    serde_json::json!({
                        "referenceId": c.reference_id,
                        "analytics": c.analytics,
                        "modalities": modalities,
                    })
                })
                .collect();
            m.insert(
                "candidateList".into(),
                serde_json::json!({ "count": list.len().to_string(), "candidates": candidates }),
            );
        }
    }
}

fn read_answer(map: &Map<String, Value>) -> Result<Answer, ResponseError> {
    let count = |key: &str| -> Result<Option<u64>, ResponseError> {
        match scalar(map, key) {
            Ok(Some(t)) => t
                .parse()
                .map(Some)
                .map_err(|_| ResponseError(format!("{key} {t:?}"))),
            Ok(None) => Ok(None),
            Err(e) => Err(ResponseError(format!("{key}: {e}"))),
        }
    };
    if let Some(n) = count("jobscount")? {
        return Ok(Answer::JobsCount(n));
    }
    if let Some(n) = count("count")? {
        return Ok(Answer::Count(n));
    }
    match map.get("candidateList") {
        None | Some(Value::Null) => Ok(Answer::Done),
        Some(list) => read_candidates(list).map(Answer::Candidates),
    }
}

fn read_candidates(list: &Value) -> Result<Vec<Candidate>, ResponseError> {
    let bad = |what: &str| ResponseError(format!("candidateList: {what}"));
    let items = match list.get("candidates") {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(a)) => a,
        Some(_) => return Err(bad("candidates is not a list")),
    };
    items
        .iter()
        .map(|c| {
            let obj = c.as_object().ok_or_else(|| bad("candidate"))?;
            let modalities = match obj.get("modalities") {
                Some(Value::Array(ms)) => ms
                    .iter()
                    .map(|md| ModalityAnalytics {
                        biometric_type: md["biometricType"].as_str().unwrap_or("").to_string(),
                        analytics: read_analytics(&md["analytics"]),
                    })
                    .collect(),
                _ => Vec::new(),
            };
            Ok(Candidate {
                reference_id: scalar(obj, "referenceId")
                    .ok()
                    .flatten()
                    .ok_or_else(|| bad("referenceId"))?,
                analytics: read_analytics(&obj["analytics"]),
                modalities,
            })
        })
        .collect()
}

fn read_analytics(v: &Value) -> Analytics {
    v.as_object()
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), scalar_value(Some(v)).ok()??)))
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests;
