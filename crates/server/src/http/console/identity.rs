//! The identity review queue: `GET /identity?state=pending|linked|rejected|unlinked` shows each
//! pair of records side by side, field by field, marking what agrees and what differs;
//! `POST /identity/{id}/accept|reject|unlink` decides one (`api::identity_reviews`, decided by
//! `care::access::decide_identity_review`).

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Path, Request, State};
use axum::response::Response;
use minijinja::context;
use serde::Serialize;
use serde_json::Value;

use super::{
    AppState, done_words, error_page, posted, query_of, read, render_flash, see_other, session,
    tpl, write,
};
use crate::api::identity_reviews::{Decision, STATES};
use crate::error::ApiError;

#[derive(Serialize)]
struct Field {
    label: &'static str,
    left: String,
    right: String,
    agree: bool,
}

#[derive(Serialize)]
struct Pair {
    id: String,
    grade: String,
    score: String,
    created: String,
    left_id: String,
    right_id: String,
    fields: Vec<Field>,
    actions: Vec<(&'static str, &'static str)>,
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        Value::Array(a) => a
            .iter()
            .filter_map(|i| {
                let value = i.get("value").and_then(Value::as_str)?;
                let system = i.get("system").and_then(Value::as_str).unwrap_or("");
                Some(format!(
                    "{} {value}",
                    system.rsplit(':').next().unwrap_or("")
                ))
            })
            .collect::<Vec<_>>()
            .join(", "),
        other => other.to_string(),
    }
}

fn normal(s: &str) -> String {
    s.to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric())
        .collect()
}

pub async fn page(
    State(state): State<AppState>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    req: Request,
) -> Response {
    let q = query_of(req.uri());
    let s = match session(&state, req.headers(), addr, "/identity").await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let current = q
        .get("state")
        .filter(|st| STATES.contains(&st.as_str()))
        .cloned()
        .unwrap_or_else(|| "pending".into());
    let flash = done_words(q.get("done"));
    let st = current.clone();
    let result = read(&state, &s, "console-identity-reviews", move |tx, _ctx| {
        let list = crate::api::identity_reviews::reviews(tx, &st)?;
        let mut pairs = Vec::new();
        for r in list["reviews"].as_array().into_iter().flatten() {
            let (l, rt) = (&r["left"], &r["right"]);
            let mut fields = Vec::new();
            for (label, key) in [
                ("Name", "name"),
                ("Birth date", "birthDate"),
                ("Sex", "gender"),
                ("Address", "address"),
                ("Identifiers", "identifier"),
            ] {
                let (a, b) = (text(&l[key]), text(&rt[key]));
                fields.push(Field {
                    label,
                    agree: !a.is_empty() && normal(&a) == normal(&b),
                    left: a,
                    right: b,
                });
            }
            let state = r["state"].as_str().unwrap_or("");
            let actions = match state {
                "pending" => vec![
                    ("accept", "Same person: link"),
                    ("reject", "Different people"),
                ],
                "linked" => vec![("unlink", "Undo the link"), ("reject", "Different people")],
                "unlinked" => vec![("accept", "Link again"), ("reject", "Different people")],
                _ => vec![],
            };
            pairs.push(Pair {
                id: r["id"].as_str().unwrap_or("").to_string(),
                grade: r["grade"].as_str().unwrap_or("").to_string(),
                score: r["score"].to_string(),
                created: super::view::when(r["created"].as_str()),
                left_id: l["reference"]
                    .as_str()
                    .unwrap_or("")
                    .trim_start_matches("Patient/")
                    .to_string(),
                right_id: rt["reference"]
                    .as_str()
                    .unwrap_or("")
                    .trim_start_matches("Patient/")
                    .to_string(),
                fields,
                actions,
            });
        }
        Ok(pairs)
    })
    .await;
    match result {
        Ok(pairs) => {
            let tabs: Vec<_> = STATES
                .iter()
                .map(|st| context! { state => st, current => *st == current })
                .collect();
            render_flash(
                &s,
                "/identity",
                "console/identity.html",
                "Identity review",
                context! { pairs => tpl(&pairs), tabs => tabs, state => current },
                flash,
            )
        }
        Err(e) => error_page(Some(&s), &e),
    }
}

pub async fn decide(
    State(state): State<AppState>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    Path((id, decision)): Path<(String, String)>,
    req: Request,
) -> Response {
    let (s, form) = match posted(&state, req, addr, "/identity").await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let Some(d) = Decision::parse(&decision).filter(|d| !matches!(d, Decision::Reopen)) else {
        return error_page(Some(&s), &ApiError::not_found("there is no such decision"));
    };
    if !fhir::primitive::is_id(&id) {
        return error_page(Some(&s), &ApiError::not_found("there is no such review"));
    }
    let rid = id.clone();
    let done = write(
        &state,
        &s,
        &form,
        "console-identity-decision",
        move |tx, ctx| crate::api::identity_reviews::decide(tx, ctx, &rid, d),
    )
    .await;
    let code = match d {
        Decision::Accept => "linked",
        Decision::Reject => "not-linked",
        _ => "unlinked",
    };
    match done {
        Ok(decided) => {
            crate::api::identity_reviews::release_held(&state.api, d, &decided).await;
            see_other("/identity", code)
        }
        Err(e) => error_page(Some(&s), &e),
    }
}
