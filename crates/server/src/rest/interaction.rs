//! Routing and parsing: a request (or a Bundle entry) becomes an [`Interaction`], with its
//! body parsed and validated and its search parsed, before any database work starts.

use fhir::search::{ParseOptions, Registry, SearchLimits, SearchRequest, Summary, parse_search};
use fhir::{IssueType, validate_resource};
use serde_json::Value;
use store::HistoryScope;

use super::ops::{self, Input as OperationInput, Level, Operation};
use super::{ContentType, FhirRequest, Method};
use crate::error::ApiError;

/// `_summary`/`_elements` on a read.
#[derive(Debug, Clone)]
pub struct View {
    pub summary: Summary,
    pub elements: Option<Vec<String>>,
}

/// One FHIR interaction, ready to execute.
#[derive(Debug, Clone)]
pub enum Interaction {
    Capabilities,
    Read {
        rt: String,
        id: String,
        if_none_match: Option<i64>,
        view: View,
    },
    VRead {
        rt: String,
        id: String,
        version: i64,
        view: View,
    },
    Create {
        rt: String,
        resource: Value,
        if_none_exist: Option<SearchRequest>,
    },
    Update {
        rt: String,
        id: String,
        resource: Value,
        if_match: Option<i64>,
    },
    ConditionalUpdate {
        rt: String,
        search: SearchRequest,
        resource: Value,
        if_match: Option<i64>,
    },
    Delete {
        rt: String,
        id: String,
    },
    ConditionalDelete {
        rt: String,
        search: SearchRequest,
    },
    Search(SearchRequest),
    History {
        scope: HistoryScope,
        since: Option<i64>,
        count: usize,
        cursor: Option<String>,
    },
    /// A FHIR operation (`$find-care`, `$book`, …), from the registry in [`super::ops`].
    Operation {
        op: &'static Operation,
        input: OperationInput,
    },
    /// A `batch` or `transaction` Bundle posted to the base.
    Bundle {
        transaction: bool,
        bundle: Value,
    },
}

impl Interaction {
    /// The interaction's name (as in the CapabilityStatement), for metrics and logs.
    pub fn name(&self) -> &'static str {
        match self {
            Interaction::Capabilities => "capabilities",
            Interaction::Read { .. } => "read",
            Interaction::VRead { .. } => "vread",
            Interaction::Create { .. } => "create",
            Interaction::Update { .. } | Interaction::ConditionalUpdate { .. } => "update",
            Interaction::Delete { .. } | Interaction::ConditionalDelete { .. } => "delete",
            Interaction::Search(_) => "search-type",
            Interaction::History {
                scope: HistoryScope::Instance { .. },
                ..
            } => "history-instance",
            Interaction::History {
                scope: HistoryScope::Type(_),
                ..
            } => "history-type",
            Interaction::History { .. } => "history-system",
            Interaction::Bundle {
                transaction: true, ..
            } => "transaction",
            Interaction::Bundle { .. } => "batch",
            Interaction::Operation { op, .. } => op.name,
        }
    }

    pub fn resource_type(&self) -> Option<&str> {
        match self {
            Interaction::Read { rt, .. }
            | Interaction::VRead { rt, .. }
            | Interaction::Create { rt, .. }
            | Interaction::Update { rt, .. }
            | Interaction::ConditionalUpdate { rt, .. }
            | Interaction::Delete { rt, .. }
            | Interaction::ConditionalDelete { rt, .. } => Some(rt),
            Interaction::Search(s) => Some(&s.resource_type),
            Interaction::Operation { op, .. } => op.resource_type,
            Interaction::History {
                scope: HistoryScope::Instance { resource_type, .. },
                ..
            } => Some(resource_type),
            Interaction::History {
                scope: HistoryScope::Type(rt),
                ..
            } => Some(rt),
            _ => None,
        }
    }

    /// Whether it needs a read-write transaction.
    pub fn writes(&self) -> bool {
        match self {
            Interaction::Create { .. }
            | Interaction::Update { .. }
            | Interaction::ConditionalUpdate { .. }
            | Interaction::Delete { .. }
            | Interaction::ConditionalDelete { .. }
            | Interaction::Bundle { .. } => true,
            Interaction::Operation { op, .. } => op.writes,
            _ => false,
        }
    }
}

/// Request headers that shape an interaction (also carried by Bundle entries).
#[derive(Debug, Clone, Default)]
pub struct Conditions {
    pub if_match: Option<String>,
    pub if_none_match: Option<String>,
    pub if_none_exist: Option<String>,
    pub lenient: bool,
}

/// The `Parameters` body of an operation, validated; a structural error in a named parameter
/// says which parameter it is in. `usage` is the 400 for a missing or other body.
fn operation_parameters(body: Option<Value>, usage: &str) -> Result<Value, ApiError> {
    let params = body.ok_or_else(|| ApiError::bad_request(IssueType::Required, usage))?;
    if params.get("resourceType").and_then(Value::as_str) != Some("Parameters") {
        return Err(ApiError::bad_request(IssueType::Invalid, usage).at("resourceType"));
    }
    validate_resource(&params).map_err(|mut issues| {
        for issue in &mut issues {
            let name = issue
                .expression
                .as_deref()
                .and_then(|e| e.strip_prefix("Parameters.parameter["))
                .and_then(|rest| rest.split(']').next())
                .and_then(|i| i.parse::<usize>().ok())
                .and_then(|i| params.pointer(&format!("/parameter/{i}/name")))
                .and_then(Value::as_str);
            if let Some(name) = name {
                issue.diagnostics = format!("parameter '{name}': {}", issue.diagnostics);
            }
        }
        ApiError::with_issues(400, issues)
    })?;
    Ok(params)
}

/// Parses an HTTP-level request.
pub fn parse(
    req: &FhirRequest,
    registry: &Registry,
    limits: SearchLimits,
) -> Result<Interaction, ApiError> {
    let segs: Vec<&str> = req.path.iter().map(String::as_str).collect();
    let needs_body = matches!(req.method, Method::Post | Method::Put)
        && !(req.method == Method::Post && segs.last() == Some(&"_search"));
    let mut query = req.query.clone();
    let body = if needs_body {
        match &req.content_type {
            ContentType::Json => Some(parse_json(&req.body)?),
            ContentType::Missing => {
                return Err(ApiError::new(
                    415,
                    IssueType::NotSupported,
                    "the request has no Content-Type; send the resource as JSON with 'Content-Type: application/fhir+json'",
                ));
            }
            ContentType::Form | ContentType::Other(_) => {
                let what = match &req.content_type {
                    ContentType::Other(m) => m.clone(),
                    _ => "application/x-www-form-urlencoded".into(),
                };
                return Err(ApiError::new(
                    415,
                    IssueType::NotSupported,
                    format!(
                        "Content-Type '{what}' is not supported; this server accepts FHIR JSON (application/fhir+json or application/json)"
                    ),
                ));
            }
        }
    } else if req.method == Method::Post && segs.last() == Some(&"_search") {
        match &req.content_type {
            ContentType::Form | ContentType::Missing => {
                query.extend(form_urlencoded::parse(&req.body).into_owned());
                None
            }
            other => {
                return Err(ApiError::new(
                    415,
                    IssueType::NotSupported,
                    format!(
                        "POST _search takes application/x-www-form-urlencoded parameters, not {other:?}"
                    ),
                ));
            }
        }
    } else {
        None
    };
    let conditions = Conditions {
        if_match: req.if_match.clone(),
        if_none_match: req.if_none_match.clone(),
        if_none_exist: req.if_none_exist.clone(),
        lenient: req.prefer.lenient,
    };
    route(
        req.method,
        &segs,
        query,
        body,
        &conditions,
        registry,
        ParseOptions {
            lenient: false,
            base_url: &req.base_url,
            limits,
        },
    )
}

/// Parses a JSON body, reporting where it breaks.
pub fn parse_json(body: &[u8]) -> Result<Value, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request(
            IssueType::Structure,
            "the request body is empty; send a FHIR resource as JSON",
        ));
    }
    serde_json::from_slice(body).map_err(|e| {
        ApiError::bad_request(
            IssueType::Structure,
            format!(
                "the body is not valid JSON: {e} (line {}, column {})",
                e.line(),
                e.column()
            ),
        )
    })
}

/// Routes by method and path segments.
pub fn route(
    method: Method,
    segs: &[&str],
    query: Vec<(String, String)>,
    body: Option<Value>,
    cond: &Conditions,
    registry: &Registry,
    parsing: ParseOptions,
) -> Result<Interaction, ApiError> {
    // the base URL and limits as given, leniency as the request asks
    let opts = ParseOptions {
        lenient: cond.lenient,
        ..parsing
    };
    let check_type = |rt: &str| -> Result<String, ApiError> {
        if registry.supports(rt) {
            Ok(rt.to_string())
        } else if fhir::definitions::definitions().is_resource_type(rt) {
            Err(ApiError::not_found(format!(
                "the resource type '{rt}' is not supported by this server; see /fhir/metadata"
            )))
        } else {
            Err(ApiError::not_found(format!(
                "'{rt}' is not a FHIR resource type"
            )))
        }
    };
    let check_id = |id: &str| -> Result<String, ApiError> {
        if fhir::primitive::is_id(id) {
            Ok(id.to_string())
        } else {
            Err(ApiError::bad_request(
                IssueType::Value,
                format!("'{id}' is not a valid resource id (1–64 of A-Z a-z 0-9 - .)"),
            ))
        }
    };
    let is_get = matches!(method, Method::Get | Method::Head);
    match (method, segs) {
        (Method::Get | Method::Head, ["metadata"]) => Ok(Interaction::Capabilities),
        // operations: `$code` at the system, type or instance level, from the registry
        (_, [.., last]) if last.starts_with('$') => operation(method, segs, body, registry),
        (Method::Post, []) => {
            let bundle = body.unwrap_or(Value::Null);
            match bundle.get("resourceType").and_then(Value::as_str) {
                Some("Bundle") => {}
                Some(other) => {
                    return Err(ApiError::bad_request(
                        IssueType::Invalid,
                        format!(
                            "POST to the base takes a batch or transaction Bundle, not a {other}"
                        ),
                    )
                    .at("resourceType"));
                }
                None => {
                    return Err(ApiError::bad_request(
                        IssueType::Required,
                        "the body has no resourceType",
                    )
                    .at("resourceType"));
                }
            }
            let transaction = match bundle.get("type").and_then(Value::as_str) {
                Some("transaction") => true,
                Some("batch") => false,
                other => {
                    return Err(ApiError::bad_request(
                        IssueType::Invalid,
                        format!(
                            "POST to the base takes a Bundle of type batch or transaction, not {}",
                            other.unwrap_or("(none)")
                        ),
                    )
                    .at("Bundle.type"));
                }
            };
            let entries = bundle
                .get("entry")
                .and_then(Value::as_array)
                .map_or(0, Vec::len);
            let max = fhir::validate::resource_limits().bundle_entries;
            if entries > max {
                return Err(ApiError::new(
                    422,
                    IssueType::TooCostly,
                    format!(
                        "the Bundle has {entries} entries; at most {max} are accepted in one request — send several Bundles, or NDJSON to `continuum import`"
                    ),
                )
                .at("Bundle.entry"));
            }
            Ok(Interaction::Bundle {
                transaction,
                bundle,
            })
        }
        (_, ["_history"]) if is_get => history(HistoryScope::System, &query),
        (_, [rt]) if is_get => {
            let rt = check_type(rt)?;
            Ok(Interaction::Search(search(registry, &rt, &query, &opts)?))
        }
        (Method::Post, [rt, "_search"]) => {
            let rt = check_type(rt)?;
            Ok(Interaction::Search(search(registry, &rt, &query, &opts)?))
        }
        (Method::Post, [rt]) => {
            let rt = check_type(rt)?;
            let resource = resource_body(body, &rt)?;
            let if_none_exist = match &cond.if_none_exist {
                Some(q) => Some(condition(registry, &rt, q, &opts, "If-None-Exist")?),
                None => None,
            };
            Ok(Interaction::Create {
                rt,
                resource,
                if_none_exist,
            })
        }
        (Method::Put, [rt]) => {
            let rt = check_type(rt)?;
            let search = conditional_criteria(registry, &rt, &query, &opts, "PUT")?;
            let resource = resource_body(body, &rt)?;
            Ok(Interaction::ConditionalUpdate {
                rt,
                search,
                resource,
                if_match: version_header(&cond.if_match, "If-Match")?,
            })
        }
        (Method::Delete, [rt]) => {
            let rt = check_type(rt)?;
            let search = conditional_criteria(registry, &rt, &query, &opts, "DELETE")?;
            Ok(Interaction::ConditionalDelete { rt, search })
        }
        (_, [rt, "_history"]) if is_get => {
            let rt = check_type(rt)?;
            history(HistoryScope::Type(rt), &query)
        }
        (_, [rt, id]) if is_get => {
            let rt = check_type(rt)?;
            let id = check_id(id)?;
            Ok(Interaction::Read {
                rt,
                id,
                if_none_match: version_header(&cond.if_none_match, "If-None-Match")?,
                view: view(&query)?,
            })
        }
        (Method::Put, [rt, id]) => {
            let rt = check_type(rt)?;
            let id = check_id(id)?;
            let resource = resource_body(body, &rt)?;
            match resource.get("id").and_then(Value::as_str) {
                Some(body_id) if body_id == id => {}
                Some(body_id) => {
                    return Err(ApiError::bad_request(
                        IssueType::Invalid,
                        format!(
                            "the body's id '{body_id}' does not match the id '{id}' in the URL"
                        ),
                    )
                    .at(format!("{rt}.id")));
                }
                None => {
                    return Err(ApiError::bad_request(
                        IssueType::Required,
                        format!(
                            "an update must carry the resource id in the body (\"id\": \"{id}\")"
                        ),
                    )
                    .at(format!("{rt}.id")));
                }
            }
            Ok(Interaction::Update {
                rt,
                id,
                resource,
                if_match: version_header(&cond.if_match, "If-Match")?,
            })
        }
        (Method::Delete, [rt, id]) => {
            let rt = check_type(rt)?;
            let id = check_id(id)?;
            Ok(Interaction::Delete { rt, id })
        }
        (_, [rt, id, "_history"]) if is_get => {
            let rt = check_type(rt)?;
            let id = check_id(id)?;
            history(
                HistoryScope::Instance {
                    resource_type: rt,
                    id,
                },
                &query,
            )
        }
        (_, [rt, id, "_history", vid]) if is_get => {
            let rt = check_type(rt)?;
            let id = check_id(id)?;
            let version = vid.parse::<i64>().map_err(|_| {
                ApiError::bad_request(IssueType::Value, format!("'{vid}' is not a version number"))
            })?;
            Ok(Interaction::VRead {
                rt,
                id,
                version,
                view: view(&query)?,
            })
        }
        (Method::Patch, [_, _]) => Err(ApiError::method_not_allowed(
            "GET, HEAD, PUT, DELETE",
            "PATCH is not supported; use PUT with the whole resource",
        )),
        (_, [rt, ..]) if rt.starts_with('$') || segs.iter().any(|s| s.starts_with('$')) => {
            Err(ApiError::not_found(format!(
                "the operation '{}' is not supported",
                segs.join("/")
            )))
        }
        _ => {
            let what = format!("no FHIR interaction matches {method:?} /{}", segs.join("/"));
            match segs.len() {
                0 => Err(ApiError::method_not_allowed(
                    "POST",
                    format!("{what}: the base takes a POSTed batch or transaction Bundle"),
                )),
                1 => Err(ApiError::method_not_allowed(
                    "GET, HEAD, POST, PUT, DELETE",
                    what,
                )),
                2 => Err(ApiError::method_not_allowed("GET, HEAD, PUT, DELETE", what)),
                _ if matches!(method, Method::Other | Method::Patch) => {
                    Err(ApiError::method_not_allowed("GET, HEAD", what))
                }
                _ => Err(ApiError::new(404, IssueType::NotSupported, what)),
            }
        }
    }
}

/// An operation request: `$code` looked up in the registry at its level; POST only (a GET is a
/// 405 saying so); the body must be a valid Parameters resource.
fn operation(
    method: Method,
    segs: &[&str],
    body: Option<Value>,
    registry: &Registry,
) -> Result<Interaction, ApiError> {
    let (rt, id, code) = match segs {
        [code] => (None, None, *code),
        [rt, code] => (Some(*rt), None, *code),
        [rt, id, code] => (Some(*rt), Some(*id), *code),
        _ => {
            return Err(ApiError::not_found(format!(
                "the operation '{}' is not supported",
                segs.join("/")
            )));
        }
    };
    let code = code.trim_start_matches('$');
    let level = match (rt, id) {
        (None, _) => Level::System,
        (Some(_), None) => Level::Type,
        (Some(_), Some(_)) => Level::Instance,
    };
    if let Some(rt) = rt
        && !registry.supports(rt)
    {
        return Err(ApiError::not_found(format!(
            "the resource type '{rt}' is not supported by this server; see /fhir/metadata"
        )));
    }
    let Some(op) = ops::lookup(rt, code, level) else {
        let invocation = |o: &ops::Operation| match (o.resource_type, o.level) {
            (Some(t), Level::Instance) => format!("POST {t}/{{id}}/${}", o.code),
            (Some(t), _) => format!("POST {t}/${}", o.code),
            (None, _) => format!("POST /${}", o.code),
        };
        let elsewhere: Vec<String> = ops::OPERATIONS
            .iter()
            .filter(|o| o.code == code)
            .map(|o| invocation(o))
            .collect();
        if !elsewhere.is_empty() {
            return Err(ApiError::not_found(format!(
                "the operation '${code}' is invoked as {}",
                elsewhere.join(" or ")
            )));
        }
        let place = match (rt, level) {
            (None, _) => "the system level (/fhir)".to_string(),
            (Some(t), Level::Instance) => format!("a {t}"),
            (Some(t), _) => format!("the {t} type"),
        };
        let here: Vec<String> = ops::OPERATIONS
            .iter()
            .filter(|o| o.resource_type == rt && o.level == level)
            .map(|o| invocation(o))
            .collect();
        return Err(ApiError::not_found(format!(
            "there is no operation ${code} on {place}; {}",
            if here.is_empty() {
                "none are offered there (GET /fhir/metadata lists every operation)".to_string()
            } else {
                format!("the operations there are {}", here.join(", "))
            }
        )));
    };
    if method != Method::Post {
        return Err(ApiError::method_not_allowed(
            "POST",
            format!(
                "${code} is invoked with POST and a Parameters body (Content-Type: application/fhir+json), not {method:?}"
            ),
        ));
    }
    if let Some(id) = id
        && !fhir::primitive::is_id(id)
    {
        return Err(ApiError::bad_request(
            IssueType::Value,
            format!("'{id}' is not a valid resource id (1–64 of A-Z a-z 0-9 - .)"),
        ));
    }
    let params = operation_parameters(body, op.usage)?;
    Ok(Interaction::Operation {
        op,
        input: OperationInput {
            id: id.map(str::to_string),
            params,
        },
    })
}

/// The criteria of a conditional update or delete (`PUT Patient?identifier=…`), always strict.
fn conditional_criteria(
    registry: &Registry,
    rt: &str,
    query: &[(String, String)],
    opts: &ParseOptions,
    method: &str,
) -> Result<SearchRequest, ApiError> {
    if query.is_empty() {
        return Err(ApiError::new(
            405,
            IssueType::NotSupported,
            format!("{method} needs a resource id (Type/id) or search criteria (Type?param=value)"),
        ));
    }
    let strict = ParseOptions {
        lenient: false,
        ..*opts
    };
    search(registry, rt, query, &strict)
}

fn resource_body(body: Option<Value>, rt: &str) -> Result<Value, ApiError> {
    let resource = body.ok_or_else(|| {
        ApiError::bad_request(IssueType::Required, "the request needs a resource body")
    })?;
    match resource.get("resourceType") {
        Some(Value::String(t)) if t == rt => {}
        Some(Value::String(t)) => {
            return Err(ApiError::bad_request(
                IssueType::Invalid,
                format!("the body is a {t} but the URL is for {rt}"),
            )
            .at("resourceType"));
        }
        Some(_) => {
            return Err(ApiError::bad_request(
                IssueType::Structure,
                "resourceType must be a string",
            )
            .at("resourceType"));
        }
        None => {
            if !resource.is_object() {
                return Err(ApiError::bad_request(
                    IssueType::Structure,
                    "the body must be a JSON object (a FHIR resource)",
                ));
            }
            return Err(ApiError::bad_request(
                IssueType::Required,
                format!("the body has no resourceType (expected \"{rt}\")"),
            )
            .at("resourceType"));
        }
    }
    validate_resource(&resource).map_err(ApiError::invalid)?;
    Ok(resource)
}

fn search(
    registry: &Registry,
    rt: &str,
    query: &[(String, String)],
    opts: &ParseOptions,
) -> Result<SearchRequest, ApiError> {
    parse_search(registry, rt, query, opts).map_err(|issues| ApiError::with_issues(400, issues))
}

/// Parses the search criteria of a conditional interaction (`identifier=x|y`).
pub fn condition(
    registry: &Registry,
    rt: &str,
    q: &str,
    opts: &ParseOptions,
    header: &str,
) -> Result<SearchRequest, ApiError> {
    let q = q.split_once('?').map(|(_, q)| q).unwrap_or(q);
    let pairs: Vec<(String, String)> = form_urlencoded::parse(q.as_bytes()).into_owned().collect();
    if pairs.is_empty() {
        return Err(ApiError::bad_request(
            IssueType::Invalid,
            format!("{header} has no search criteria"),
        ));
    }
    parse_search(
        registry,
        rt,
        &pairs,
        &ParseOptions {
            lenient: false,
            ..*opts
        },
    )
    .map_err(|issues| ApiError::with_issues(400, issues).context(header))
}

/// `W/"3"`, `"3"` or `3` → 3.
pub fn version_header(value: &Option<String>, header: &str) -> Result<Option<i64>, ApiError> {
    let Some(v) = value else { return Ok(None) };
    let t = v.trim().trim_start_matches("W/").trim_matches('"');
    if t == "*" && header == "If-None-Match" {
        return Ok(None);
    }
    t.parse::<i64>().map(Some).map_err(|_| {
        ApiError::bad_request(
            IssueType::Value,
            format!("{header} must be a version ETag like W/\"3\", not '{v}'"),
        )
    })
}

fn view(query: &[(String, String)]) -> Result<View, ApiError> {
    let mut v = View {
        summary: Summary::False,
        elements: None,
    };
    for (k, val) in query {
        match k.as_str() {
            "_summary" => {
                v.summary =
                    match val.as_str() {
                        "true" => Summary::True,
                        "false" => Summary::False,
                        "text" => Summary::Text,
                        "data" => Summary::Data,
                        _ => return Err(ApiError::bad_request(
                            IssueType::Value,
                            format!(
                                "_summary must be true, false, text or data on a read, not '{val}'"
                            ),
                        )
                        .at("_summary")),
                    }
            }
            "_elements" => {
                v.elements = Some(val.split(',').map(|s| s.trim().to_string()).collect())
            }
            "_format" | "_pretty" => {}
            other => {
                return Err(ApiError::bad_request(
                    IssueType::NotSupported,
                    format!("the parameter '{other}' is not supported on a read"),
                )
                .at(other.to_string()));
            }
        }
    }
    Ok(v)
}

fn history(scope: HistoryScope, query: &[(String, String)]) -> Result<Interaction, ApiError> {
    let mut since = None;
    let mut count = fhir::search::query::DEFAULT_COUNT;
    let mut cursor = None;
    for (k, v) in query {
        match k.as_str() {
            "_since" => {
                let t = fhir::primitive::parse_date_time(
                    v,
                    fhir::primitive::Precision::Fraction,
                    false,
                )
                .map_err(|e| {
                    ApiError::bad_request(
                        IssueType::Value,
                        format!("_since must be an instant: {e}"),
                    )
                    .at("_since")
                })?;
                since = Some(t.range().low);
            }
            "_count" => {
                count = match v.parse::<usize>() {
                    Ok(n) if n <= fhir::search::query::MAX_COUNT => n.max(1),
                    _ => {
                        return Err(ApiError::bad_request(
                            IssueType::Value,
                            format!(
                                "_count must be a whole number up to {}",
                                fhir::search::query::MAX_COUNT
                            ),
                        )
                        .at("_count"));
                    }
                }
            }
            "_cursor" => cursor = Some(v.clone()),
            "_format" | "_pretty" => {}
            other => {
                return Err(ApiError::bad_request(
                    IssueType::NotSupported,
                    format!("the parameter '{other}' is not supported on history"),
                )
                .at(other.to_string()));
            }
        }
    }
    Ok(Interaction::History {
        scope,
        since,
        count,
        cursor,
    })
}
