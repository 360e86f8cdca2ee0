//! `batch` and `transaction` Bundles posted to the base. A transaction is all-or-nothing in the
//! one store transaction it runs in: `urn:uuid:` fullUrls and conditional references are
//! resolved to the ids assigned, entries run in the order the spec prescribes (DELETE, POST,
//! PUT, GET), and any failure rolls everything back. A batch runs each entry in a savepoint and
//! reports each.

use std::collections::{HashMap, HashSet};

use fhir::IssueType;
use fhir::search::SearchRequest;
use serde_json::{Value, json};
use store::CallerTx;

use super::execute::{self, Outcome};
use super::interaction::{Conditions, Interaction, condition, route};
use super::render::{self, etag, location, status_line};
use super::{Method, Return};
use crate::app::Ctx;
use crate::error::ApiError;

/// One entry's request, parsed.
struct Entry {
    index: usize,
    full_url: Option<String>,
    method: Method,
    interaction: Interaction,
}

pub(crate) fn execute(
    tx: &mut CallerTx,
    ctx: &Ctx,
    transaction: bool,
    bundle: Value,
) -> Result<Value, ApiError> {
    let raw_entries = match bundle.get("entry") {
        None => Vec::new(),
        Some(Value::Array(items)) => items.clone(),
        Some(_) => {
            return Err(ApiError::bad_request(
                IssueType::Structure,
                "Bundle.entry must be an array",
            )
            .at("Bundle.entry"));
        }
    };
    if transaction {
        run_transaction(tx, ctx, raw_entries)
    } else {
        run_batch(tx, ctx, raw_entries)
    }
}

fn entry_error(index: usize, e: ApiError) -> ApiError {
    let mut e = e.context(&format!("Bundle.entry[{index}]"));
    for issue in &mut e.issues {
        issue.expression = Some(match &issue.expression {
            Some(x) if x.starts_with("Bundle.") => x.clone(),
            Some(x) => format!(
                "Bundle.entry[{index}].resource.{}",
                x.split_once('.').map(|(_, r)| r).unwrap_or(x)
            ),
            None => format!("Bundle.entry[{index}]"),
        });
    }
    e
}

fn parse_entry(ctx: &Ctx, index: usize, raw: &Value) -> Result<Entry, ApiError> {
    let request = raw.get("request").ok_or_else(|| {
        ApiError::bad_request(IssueType::Required, "the entry has no request")
            .at(format!("Bundle.entry[{index}].request"))
    })?;
    let method_text = request.get("method").and_then(Value::as_str).unwrap_or("");
    let method = Method::parse(method_text);
    if matches!(method, Method::Other | Method::Patch) {
        return Err(ApiError::bad_request(
            IssueType::NotSupported,
            format!("request.method '{method_text}' is not supported in a Bundle entry"),
        )
        .at(format!("Bundle.entry[{index}].request.method")));
    }
    let url = request.get("url").and_then(Value::as_str).ok_or_else(|| {
        ApiError::bad_request(IssueType::Required, "the entry has no request.url")
            .at(format!("Bundle.entry[{index}].request.url"))
    })?;
    let local = url
        .strip_prefix(&ctx.base_url)
        .map(|r| r.trim_start_matches('/'))
        .unwrap_or(url.trim_start_matches('/'));
    let (path, query) = match local.split_once('?') {
        Some((p, q)) => (p, q),
        None => (local, ""),
    };
    let segs: Vec<String> = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        })
        .collect();
    if segs.is_empty() {
        return Err(ApiError::bad_request(
            IssueType::NotSupported,
            "a Bundle entry cannot itself be a batch or transaction",
        )
        .at(format!("Bundle.entry[{index}].request.url")));
    }
    let pairs: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    let cond = Conditions {
        if_match: request
            .get("ifMatch")
            .and_then(Value::as_str)
            .map(str::to_string),
        if_none_match: request
            .get("ifNoneMatch")
            .and_then(Value::as_str)
            .map(str::to_string),
        if_none_exist: request
            .get("ifNoneExist")
            .and_then(Value::as_str)
            .map(str::to_string),
        lenient: ctx.prefer.lenient,
    };
    let body = raw.get("resource").cloned();
    if matches!(method, Method::Post | Method::Put) && body.is_none() {
        return Err(ApiError::bad_request(
            IssueType::Required,
            format!("a {method_text} entry needs a resource"),
        )
        .at(format!("Bundle.entry[{index}].resource")));
    }
    let seg_refs: Vec<&str> = segs.iter().map(String::as_str).collect();
    let interaction = route(
        method,
        &seg_refs,
        pairs,
        body,
        &cond,
        ctx.registry,
        fhir::search::ParseOptions {
            lenient: false,
            base_url: &ctx.base_url,
            limits: ctx.search_limits,
        },
    )?;
    Ok(Entry {
        index,
        full_url: raw
            .get("fullUrl")
            .and_then(Value::as_str)
            .map(str::to_string),
        method,
        interaction,
    })
}

/// A batch: each entry on its own (a failed one leaves the others), but the whole within the
/// request's time budget — past it the batch stops and nothing of it is written.
fn run_batch(tx: &mut CallerTx, ctx: &Ctx, raw_entries: Vec<Value>) -> Result<Value, ApiError> {
    let mut out = Vec::with_capacity(raw_entries.len());
    for (i, raw) in raw_entries.iter().enumerate() {
        tx.check_budget()?;
        let result = parse_entry(ctx, i, raw)
            .and_then(|entry| tx.savepoint(|tx| execute::execute(tx, ctx, entry.interaction)));
        out.push(match result {
            Ok(outcome) => response_entry(outcome, ctx),
            Err(e) => error_entry(&e),
        });
    }
    // an entry stopped by the budget fails the batch (its savepoint could not say which
    // entries the rest would have needed)
    tx.check_budget()?;
    Ok(json!({
        "resourceType": "Bundle",
        "id": uuid::Uuid::new_v4().to_string(),
        "type": "batch-response",
        "entry": out,
    }))
}

fn run_transaction(
    tx: &mut CallerTx,
    ctx: &Ctx,
    raw_entries: Vec<Value>,
) -> Result<Value, ApiError> {
    let mut entries = Vec::with_capacity(raw_entries.len());
    for (i, raw) in raw_entries.iter().enumerate() {
        entries.push(parse_entry(ctx, i, raw).map_err(|e| entry_error(i, e))?);
    }

    // 1. identities: what each fullUrl will be, deciding conditional creates and updates now
    let mut ids: HashMap<String, String> = HashMap::new();
    let mut existing: HashMap<usize, Outcome> = HashMap::new();
    let mut targets: HashSet<(String, String)> = HashSet::new();
    for e in &mut entries {
        let i = e.index;
        let resolved: Option<(String, String)> = match &mut e.interaction {
            Interaction::Create {
                rt,
                resource,
                if_none_exist,
            } => {
                let mut id = tx.new_id();
                if let Some(search) = if_none_exist.take()
                    && let Some(stored) = execute::if_none_exist_match(tx, rt, &search)
                        .map_err(|err| entry_error(i, err))?
                {
                    id = stored.id.clone();
                    existing.insert(
                        i,
                        Outcome::Resource {
                            status: 200,
                            stored,
                            view: None,
                        },
                    );
                }
                if let Value::Object(o) = resource {
                    o.insert("id".into(), Value::String(id.clone()));
                }
                Some((rt.clone(), id))
            }
            Interaction::Update { rt, id, .. } => Some((rt.clone(), id.clone())),
            Interaction::ConditionalUpdate {
                rt,
                search,
                resource,
                if_match,
            } => {
                let body_id = resource
                    .get("id")
                    .and_then(Value::as_str)
                    .map(str::to_string);
                let id = execute::conditional_update_target(tx, rt, search, body_id.as_deref())
                    .map_err(|err| entry_error(i, err))?
                    .unwrap_or_else(|| tx.new_id());
                if let Value::Object(o) = resource {
                    o.insert("id".into(), Value::String(id.clone()));
                }
                let rt = rt.clone();
                e.interaction = Interaction::Update {
                    rt: rt.clone(),
                    id: id.clone(),
                    resource: resource.clone(),
                    if_match: *if_match,
                };
                Some((rt, id))
            }
            Interaction::Delete { rt, id } => Some((rt.clone(), id.clone())),
            Interaction::ConditionalDelete { rt, search } => {
                let found = execute::matches(tx, search).map_err(|err| entry_error(i, err))?;
                match found.as_slice() {
                    [] => None,
                    [one] => {
                        let rt = rt.clone();
                        let id = one.id.clone();
                        e.interaction = Interaction::Delete {
                            rt: rt.clone(),
                            id: id.clone(),
                        };
                        Some((rt, id))
                    }
                    _ => {
                        return Err(entry_error(
                            i,
                            ApiError::new(
                                412,
                                IssueType::MultipleMatches,
                                format!("the conditional delete matches more than one {rt}"),
                            ),
                        ));
                    }
                }
            }
            _ => None,
        };
        if let Some((rt, id)) = resolved {
            if !targets.insert((rt.clone(), id.clone())) {
                return Err(entry_error(
                    i,
                    ApiError::bad_request(
                        IssueType::Duplicate,
                        format!("{rt}/{id} is changed by more than one entry of this transaction"),
                    ),
                ));
            }
            if let Some(full) = &e.full_url {
                ids.insert(full.clone(), format!("{rt}/{id}"));
            }
        }
    }

    // 2. references: fullUrls and conditional references become the resolved ids
    for e in &mut entries {
        let i = e.index;
        let resource = match &mut e.interaction {
            Interaction::Create { resource, .. } | Interaction::Update { resource, .. } => resource,
            _ => continue,
        };
        rewrite_references(tx, ctx, resource, &ids).map_err(|err| entry_error(i, err))?;
    }

    // 3. execute: DELETE, POST, PUT, GET
    let rank = |m: Method| match m {
        Method::Delete => 0,
        Method::Post => 1,
        Method::Put => 2,
        _ => 3,
    };
    let mut order: Vec<usize> = (0..entries.len()).collect();
    order.sort_by_key(|&k| (rank(entries[k].method), k));
    let mut slots: Vec<Option<Outcome>> = (0..entries.len()).map(|_| None).collect();
    let mut pending: Vec<Option<Entry>> = entries.into_iter().map(Some).collect();
    for k in order {
        tx.check_budget()?;
        let entry = pending[k].take().expect("each entry runs once");
        let i = entry.index;
        let outcome = match existing.remove(&i) {
            Some(found) => found,
            None => match entry.interaction {
                Interaction::Create { rt, resource, .. } => {
                    let id = resource
                        .get("id")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string();
                    execute::create_with_id(tx, ctx, &rt, &id, resource)
                }
                other => execute::execute(tx, ctx, other),
            }
            .map_err(|err| entry_error(i, err))?,
        };
        slots[k] = Some(outcome);
    }
    let out: Vec<Value> = slots
        .into_iter()
        .map(|o| response_entry(o.expect("every entry ran"), ctx))
        .collect();
    Ok(json!({
        "resourceType": "Bundle",
        "id": uuid::Uuid::new_v4().to_string(),
        "type": "transaction-response",
        "entry": out,
    }))
}

/// Replaces `reference` values that name a fullUrl of this transaction, or that are
/// conditional (`Patient?identifier=…`), with the resolved `Type/id`.
fn rewrite_references(
    tx: &mut CallerTx,
    ctx: &Ctx,
    value: &mut Value,
    ids: &HashMap<String, String>,
) -> Result<(), ApiError> {
    match value {
        Value::Object(obj) => {
            if let Some(Value::String(r)) = obj.get("reference") {
                if let Some(resolved) = ids.get(r) {
                    obj.insert("reference".into(), Value::String(resolved.clone()));
                } else if let Some((rt, q)) = r.split_once('?')
                    && ctx.registry.supports(rt)
                {
                    let search: SearchRequest = condition(
                        ctx.registry,
                        rt,
                        q,
                        &fhir::search::ParseOptions {
                            lenient: false,
                            base_url: &ctx.base_url,
                            limits: ctx.search_limits,
                        },
                        "conditional reference",
                    )?;
                    let found = execute::matches(tx, &search)?;
                    match found.as_slice() {
                        [one] => {
                            obj.insert(
                                "reference".into(),
                                Value::String(format!("{rt}/{}", one.id)),
                            );
                        }
                        [] => {
                            return Err(ApiError::new(
                                412,
                                IssueType::NotFound,
                                format!("the conditional reference '{r}' matches nothing"),
                            ));
                        }
                        _ => {
                            return Err(ApiError::new(
                                412,
                                IssueType::MultipleMatches,
                                format!(
                                    "the conditional reference '{r}' matches more than one resource"
                                ),
                            ));
                        }
                    }
                } else if r.starts_with("urn:uuid:") {
                    return Err(ApiError::bad_request(
                        IssueType::NotFound,
                        format!("the reference '{r}' names no entry of this transaction"),
                    ));
                }
            }
            for (_, v) in obj.iter_mut() {
                rewrite_references(tx, ctx, v, ids)?;
            }
        }
        Value::Array(items) => {
            for v in items {
                rewrite_references(tx, ctx, v, ids)?;
            }
        }
        _ => {}
    }
    Ok(())
}

fn response_entry(outcome: Outcome, ctx: &Ctx) -> Value {
    let base = &ctx.base_url;
    match outcome {
        Outcome::Resource { status, stored, .. } => {
            let mut entry = json!({
                "fullUrl": format!("{base}/{}/{}", stored.resource_type, stored.id),
                "response": {
                    "status": status_line(status),
                    "location": location(base, &stored),
                    "etag": etag(stored.version),
                    "lastModified": fhir::primitive::format_instant(stored.last_updated),
                }
            });
            match ctx.prefer.return_ {
                Return::Representation => {
                    if let Some(r) = render::resource_value(&stored) {
                        entry["resource"] = r;
                    }
                }
                Return::OperationOutcome => {
                    entry["response"]["outcome"] =
                        fhir::operation_outcome(&[fhir::Issue::information(format!(
                            "{}/{} version {}",
                            stored.resource_type, stored.id, stored.version
                        ))]);
                }
                Return::Minimal => {}
            }
            entry
        }
        Outcome::NotModified(stored) => {
            json!({"response": {"status": status_line(304), "etag": etag(stored.version)}})
        }
        Outcome::Deleted(stored) => {
            let mut entry = json!({"response": {"status": status_line(204)}});
            if let Some(s) = stored {
                entry["response"]["etag"] = json!(etag(s.version));
            }
            entry
        }
        other => {
            let resp = render::response(other, ctx.prefer, base);
            let resource = match resp.body {
                super::Body::Json(v) => Some(v),
                super::Body::Text(t) => serde_json::from_str(&t).ok(),
                super::Body::Empty => None,
            };
            let mut entry = json!({"response": {"status": status_line(resp.status)}});
            if let Some(r) = resource {
                entry["resource"] = r;
            }
            entry
        }
    }
}

fn error_entry(e: &ApiError) -> Value {
    json!({
        "response": {
            "status": status_line(e.status),
            "outcome": fhir::operation_outcome(&e.issues),
        }
    })
}
