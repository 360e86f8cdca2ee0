//! `GET /worklist`: an organisation's referrals, received or sent, by where each stands
//! against its service level (overdue first, at risk next, then the rest of the open ones,
//! and the recently closed), with counts; the identity pairs waiting for review.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Request, State};
use axum::response::Response;
use minijinja::context;
use serde::Serialize;
use serde_json::Value;
use store::referrals::WorklistState;

use super::view::{Names, patient_card, referral_status_words, when};
use super::{AppState, done_words, error_page, query_of, read, render_flash, session, tpl};
use crate::app::referrals::{WorklistRequest, worklist};
use crate::app::resources::body;

#[derive(Serialize)]
struct Row {
    task: String,
    patient_id: String,
    patient: String,
    age: String,
    service: String,
    other_side: String,
    priority: String,
    status: String,
    business: String,
    authored: String,
    due: String,
    level: String,
}

#[derive(Serialize)]
struct Tab {
    state: &'static str,
    label: &'static str,
    count: String,
    current: bool,
}

const TABS: [(WorklistState, &str, &str); 4] = [
    (WorklistState::Overdue, "overdue", "Overdue"),
    (WorklistState::AtRisk, "at-risk", "At risk"),
    (WorklistState::Open, "open", "All open"),
    (WorklistState::Closed, "closed", "Closed"),
];

pub async fn page(
    State(state): State<AppState>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    req: Request,
) -> Response {
    let q = query_of(req.uri());
    let s = match session(&state, req.headers(), addr, "/worklist").await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let mine = s.organizations();
    let admin = s.is_admin();
    let org = q
        .get("org")
        .filter(|o| fhir::primitive::is_id(o))
        .cloned()
        .or_else(|| mine.first().cloned())
        .unwrap_or_else(|| "cc".to_string());
    let received = q.get("role").map(String::as_str) != Some("sent");
    let chosen = q
        .get("state")
        .and_then(|st| TABS.iter().position(|(_, code, _)| code == st))
        .unwrap_or(0);
    let reviewer = s.has(care::access::Role::Coordinator) || admin;
    let (o, flash) = (org.clone(), done_words(q.get("done")));
    let mine_inner = mine.clone();
    let result = read(&state, &s, "console-worklist", move |tx, ctx| {
        let now = tx.now();
        let Some(org) = tx
            .current("Organization", &o, false)?
            .filter(|x| !x.deleted)
        else {
            return Err(crate::error::ApiError::not_found(
                "there is no such organisation",
            ));
        };
        let org_name = body(&org)["name"].as_str().unwrap_or("").to_string();
        let mut tabs = Vec::new();
        let mut rows = Vec::new();
        let mut names = Names::default();
        for (i, (st, code, label)) in TABS.iter().enumerate() {
            let page = worklist(
                tx,
                ctx,
                WorklistRequest {
                    organization: o.clone(),
                    received,
                    state: *st,
                    count: 50,
                    after: None,
                },
            )?;
            let items = page["items"].as_array().cloned().unwrap_or_default();
            let more = !page["next"].is_null();
            tabs.push(Tab {
                state: code,
                label,
                count: format!("{}{}", items.len(), if more { "+" } else { "" }),
                current: i == chosen,
            });
            if i != chosen {
                continue;
            }
            for it in items {
                let task = it["task"].as_str().unwrap_or("").to_string();
                let pid = it["patient"]
                    .as_str()
                    .unwrap_or("")
                    .trim_start_matches("Patient/")
                    .to_string();
                let card = match tx.current("Patient", &pid, false)? {
                    Some(p) => patient_card(&pid, &body(&p), now),
                    None => patient_card(&pid, &Value::Null, now),
                };
                let other = if received {
                    it["requester"].as_str()
                } else {
                    it["owner"].as_str()
                };
                let other_side = match other {
                    Some(r) => names.of(tx, r)?,
                    None => String::new(),
                };
                let status = it["status"].as_str().unwrap_or("");
                rows.push(Row {
                    task: task.trim_start_matches("Task/").to_string(),
                    patient_id: pid,
                    patient: card.name,
                    age: card.age,
                    service: match it["service"].as_str() {
                        Some(id) if fhir::primitive::is_id(id) => {
                            names.of(tx, &format!("HealthcareService/{id}"))?
                        }
                        other => other.unwrap_or("").to_string(),
                    },
                    other_side,
                    priority: it["priority"].as_str().unwrap_or("routine").to_string(),
                    status: referral_status_words(status).to_string(),
                    business: it["businessStatus"].as_str().unwrap_or("").to_string(),
                    authored: when(it["authoredOn"].as_str()),
                    due: if it["closed"].is_string() {
                        format!("closed {}", when(it["closed"].as_str()))
                    } else {
                        // due by the end of a business day: the day says it
                        it["nextDue"]
                            .as_str()
                            .map(|d| {
                                let w = when(Some(d));
                                w.split(',').next().unwrap_or(&w).to_string()
                            })
                            .unwrap_or_else(|| "nothing due".into())
                    },
                    level: it["serviceLevel"].as_str().unwrap_or("").to_string(),
                });
            }
        }
        let pairs = if reviewer {
            crate::api::identity_reviews::reviews(tx, "pending")
                .ok()
                .and_then(|v| v["count"].as_u64())
        } else {
            None
        };

        // the organisations whose worklists this user may open: their own, or (those who see
        // everything) every one
        let mut choices: Vec<(String, String)> = Vec::new();
        if tx.view().everything {
            for o in crate::app::resources::search(tx, ctx, "Organization", &[])? {
                let name = body(&o)["name"].as_str().unwrap_or(&o.id).to_string();
                choices.push((o.id.clone(), name));
            }
            choices.sort_by(|a, b| a.1.cmp(&b.1));
        } else {
            for m in &mine_inner {
                let name = names.of(tx, &format!("Organization/{m}"))?;
                choices.push((m.clone(), name));
            }
        }
        Ok((tabs, rows, pairs, org_name, choices))
    })
    .await;
    match result {
        Ok((tabs, rows, pairs, org_name, choices)) => {
            let orgs: Vec<_> = choices
                .iter()
                .map(|(id, name)| context! { id => id, name => name, current => *id == org })
                .collect();
            render_flash(
                &s,
                "/worklist",
                "console/worklist.html",
                "Worklist",
                context! {
                    org => org, org_name => org_name, orgs => orgs, received => received,
                    tabs => tpl(&tabs), rows => tpl(&rows), pairs => pairs,
                    state => TABS[chosen].1, state_label => TABS[chosen].2,
                },
                flash,
            )
        }
        Err(e) => error_page(Some(&s), &e),
    }
}
