//! The directory and the accounts: `GET /admin` lists the organisations, their sites, services
//! and clinicians, and the schedules' weekly templates (for coordinators and administrators),
//! and the console users and API clients (administrators); `POST /admin/sites` adds a clinic
//! site (a Location placed at its ZIP code's centroid, written as the user, so the directory
//! rules of the access policy decide); `POST /admin/users/{name}/disable|enable` (and
//! `/admin/users/client:{id}/…` for an API client), `POST /admin/users` and `/admin/clients`
//! (a new console user or API client; its password or secret shown once) and
//! `POST /admin/keys/rotate` (a new token signing key) — administrators only
//! (`care::access::decide_accounts`), each audited.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Path, Request, State};
use axum::response::Response;
use fhir::IssueType;
use minijinja::context;
use serde::Serialize;
use serde_json::{Value, json};

use super::view::Names;
use super::{
    AppState, done_words, error_page, posted, query_of, read, render_flash, see_other, session,
    tpl, write,
};
use crate::app::resources::body;
use crate::error::ApiError;

#[derive(Serialize)]
struct Site {
    id: String,
    name: String,
    organization: String,
    organization_id: String,
    address: String,
    services: usize,
}

#[derive(Serialize)]
struct Org {
    id: String,
    name: String,
    sites: usize,
    services: usize,
    clinicians: usize,
}

#[derive(Serialize)]
struct Account {
    name: String,
    /// The name as a path segment.
    path: String,
    kind: &'static str,
    roles: String,
    disabled: bool,
}

#[derive(Serialize)]
struct ServiceRow {
    name: String,
    organization: String,
    organization_id: String,
    specialty: String,
    sites: usize,
    accepting: bool,
}

#[derive(Serialize)]
struct ClinicianRow {
    name: String,
    organization: String,
    organization_id: String,
    service: String,
    licensed: String,
}

#[derive(Serialize)]
struct ScheduleRow {
    name: String,
    modality: String,
    hours: String,
}

/// A name as one path segment (percent-encoded but for letters, digits and `-_.@:`).
fn segment(name: &str) -> String {
    name.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.@:".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Whether the caller manages accounts (`care::access::decide_accounts`).
fn manages_accounts(tx: &store::CallerTx) -> bool {
    care::access::decide_accounts(&tx.caller().subject).is_permit()
}

/// The refusal of an account change by one who does not manage accounts (recorded as denied).
fn may_manage_accounts(tx: &mut store::CallerTx) -> Result<(), ApiError> {
    match care::access::decide_accounts(&tx.caller().subject) {
        care::access::Decision::Permit => Ok(()),
        care::access::Decision::Deny(why) => {
            tx.trail.denied = true;
            Err(ApiError::new(403, IssueType::Forbidden, why))
        }
    }
}

pub async fn page(
    State(state): State<AppState>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    req: Request,
) -> Response {
    let q = query_of(req.uri());
    let s = match session(&state, req.headers(), addr, "/admin").await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let flash = done_words(q.get("done"));
    let result = read(&state, &s, "console-directory", move |tx, ctx| {
        let mut names = Names::default();
        let orgs_found = crate::app::resources::search(tx, ctx, "Organization", &[])?;
        let locations = crate::app::resources::search(tx, ctx, "Location", &[])?;
        let services = crate::app::resources::search(tx, ctx, "HealthcareService", &[])?;
        let roles = crate::app::resources::search(tx, ctx, "PractitionerRole", &[])?;
        let schedules = crate::app::resources::search(tx, ctx, "Schedule", &[])?;
        let of_org = |r: &Value, key: &str| {
            r.pointer(&format!("/{key}/reference"))
                .and_then(Value::as_str)
                .map(|x| x.trim_start_matches("Organization/").to_string())
                .unwrap_or_default()
        };
        let mut orgs: Vec<Org> = Vec::new();
        for o in &orgs_found {
            let b = body(o);
            orgs.push(Org {
                id: o.id.clone(),
                name: b["name"].as_str().unwrap_or(&o.id).to_string(),
                sites: locations
                    .iter()
                    .filter(|l| of_org(&body(l), "managingOrganization") == o.id)
                    .count(),
                services: services
                    .iter()
                    .filter(|h| of_org(&body(h), "providedBy") == o.id)
                    .count(),
                clinicians: roles
                    .iter()
                    .filter(|r| of_org(&body(r), "organization") == o.id)
                    .count(),
            });
        }
        orgs.sort_by(|a, b| a.name.cmp(&b.name));
        let mut sites = Vec::new();
        for l in &locations {
            let b = body(l);
            let org = of_org(&b, "managingOrganization");
            let a = &b["address"];
            let address = format!(
                "{} {} {}",
                a["line"][0].as_str().unwrap_or(""),
                a["city"].as_str().unwrap_or(""),
                a["postalCode"].as_str().unwrap_or("")
            )
            .trim()
            .to_string();
            let reference = format!("Location/{}", l.id);
            sites.push(Site {
                id: l.id.clone(),
                name: b["name"].as_str().unwrap_or(&l.id).to_string(),
                organization: if org.is_empty() {
                    String::new()
                } else {
                    names.of(tx, &format!("Organization/{org}"))?
                },
                organization_id: org,
                address,
                services: services
                    .iter()
                    .filter(|h| {
                        body(h)["location"].as_array().is_some_and(|ls| {
                            ls.iter().any(|x| x["reference"] == reference.as_str())
                        })
                    })
                    .count(),
            });
        }
        sites.sort_by(|a, b| (&a.organization, &a.name).cmp(&(&b.organization, &b.name)));
        let mut templates = Vec::new();
        for sc in schedules.iter().take(60) {
            let b = body(sc);
            let actors: Vec<String> = b["actor"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|a| a["reference"].as_str().map(str::to_string))
                .collect();
            let mut label = Vec::new();
            for a in &actors {
                label.push(names.of(tx, a)?);
            }
            let modality = fhir::json::extension_value(&b, care::profile::MODALITY, "valueCode")
                .and_then(Value::as_str)
                .map(str::to_string)
                .unwrap_or_else(|| "in-person".into());
            // the weekly template: the service's hours (`availableTime`)
            let service = actors
                .iter()
                .find_map(|a| a.strip_prefix("HealthcareService/"))
                .and_then(|id| services.iter().find(|h| h.id == id))
                .map(body);
            let hours: Vec<String> = service
                .as_ref()
                .and_then(|h| h["availableTime"].as_array())
                .into_iter()
                .flatten()
                .map(|t| {
                    let days: Vec<&str> = t["daysOfWeek"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(Value::as_str)
                        .collect();
                    let hm = |k: &str| t[k].as_str().map(|x| x.get(..5).unwrap_or(x)).unwrap_or("");
                    format!(
                        "{} {}–{}",
                        days.join(" "),
                        hm("availableStartTime"),
                        hm("availableEndTime")
                    )
                })
                .collect();
            templates.push(ScheduleRow {
                name: label.join(" · "),
                modality,
                hours: hours.join(", "),
            });
        }
        // the accounts, for administrators
        let accounts = if manages_accounts(tx) {
            let users = tx.on_behalf(store::OnBehalf::Accounts).list_users()?;
            let clients = tx.on_behalf(store::OnBehalf::Accounts).list_clients()?;
            let mut out: Vec<Account> = users
                .iter()
                .map(|u| Account {
                    name: u.username.clone(),
                    path: segment(&u.username),
                    kind: "user",
                    roles: u
                        .grants
                        .iter()
                        .map(|g| match &g.organization {
                            Some(o) => format!("{}@{o}", g.role.as_str()),
                            None => g.role.as_str().to_string(),
                        })
                        .collect::<Vec<_>>()
                        .join(", "),
                    disabled: u.disabled,
                })
                .collect();
            out.extend(clients.iter().map(|c| Account {
                name: format!("client:{}", c.client_id),
                path: segment(&format!("client:{}", c.client_id)),
                kind: "API client",
                roles: format!("{} ({})", c.name, c.scopes),
                disabled: c.disabled,
            }));
            Some(out)
        } else {
            None
        };
        let org_name = |id: &str| {
            orgs.iter()
                .find(|o| o.id == id)
                .map(|o| o.name.clone())
                .unwrap_or_else(|| id.to_string())
        };
        let mut service_rows: Vec<ServiceRow> = services
            .iter()
            .map(|h| {
                let b = body(h);
                ServiceRow {
                    name: b["name"].as_str().unwrap_or(&h.id).to_string(),
                    organization: org_name(&of_org(&b, "providedBy")),
                    organization_id: of_org(&b, "providedBy"),
                    specialty: b
                        .pointer("/specialty/0/text")
                        .or_else(|| b.pointer("/specialty/0/coding/0/display"))
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string(),
                    sites: b["location"].as_array().map_or(0, Vec::len),
                    accepting: fhir::json::extension_value(
                        &b,
                        care::profile::ACCEPTING,
                        "valueBoolean",
                    )
                    .and_then(Value::as_bool)
                    .unwrap_or(true),
                }
            })
            .collect();
        service_rows
            .sort_by(|a, b| (&a.organization_id, &a.name).cmp(&(&b.organization_id, &b.name)));
        let mut clinicians = Vec::new();
        for r in &roles {
            let b = body(r);
            let name = match b.pointer("/practitioner/display").and_then(Value::as_str) {
                Some(d) => d.to_string(),
                None => match b.pointer("/practitioner/reference").and_then(Value::as_str) {
                    Some(p) => names.of(tx, p)?,
                    None => r.id.clone(),
                },
            };
            let service = match b
                .pointer("/healthcareService/0/reference")
                .and_then(Value::as_str)
            {
                Some(h) => names.of(tx, h)?,
                None => String::new(),
            };
            let licensed: Vec<&str> = fhir::json::extensions(&b, care::profile::LICENSED_STATE)
                .filter_map(|e| {
                    e.get("valueCode")
                        .or_else(|| e.get("valueString"))
                        .and_then(Value::as_str)
                })
                .collect();
            clinicians.push(ClinicianRow {
                name,
                organization: org_name(&of_org(&b, "organization")),
                organization_id: of_org(&b, "organization"),
                service,
                licensed: licensed.join(" "),
            });
        }
        clinicians
            .sort_by(|a, b| (&a.organization_id, &a.name).cmp(&(&b.organization_id, &b.name)));
        // the Subscriptions the caller may read, with their failed notifications; the hospital
        // messages received lately (for administrators: the register names patients' records)
        let subscriptions = crate::api::subscriptions::overview(tx, ctx)?;
        let hospital = if manages_accounts(tx) {
            tx.on_behalf(store::OnBehalf::HospitalEvents)
                .hl7_messages(None, None, 20)?
                .into_iter()
                .map(|m| HospitalMessage {
                    received: care::notify::eastern(m.received_ms),
                    sender: m.sender.replace('|', " · "),
                    control_id: m.control_id,
                    event: m.event,
                    state: m.state,
                    detail: m.detail,
                })
                .collect()
        } else {
            Vec::new()
        };
        Ok((
            orgs,
            sites,
            templates,
            accounts,
            service_rows,
            clinicians,
            subscriptions,
            hospital,
        ))
    })
    .await;
    let may_edit = s.is_admin() || s.has(care::access::Role::Coordinator);
    match result {
        Ok((
            orgs,
            sites,
            templates,
            accounts,
            service_rows,
            clinicians,
            subscriptions,
            hospital,
        )) => render_flash(
            &s,
            "/admin",
            "console/admin.html",
            "Directory",
            context! {
                orgs => tpl(&orgs), sites => tpl(&sites), schedules => tpl(&templates),
                services => tpl(&service_rows), clinicians => tpl(&clinicians),
                accounts => accounts.map(|a| tpl(&a)), may_edit => may_edit,
                me_name => s.user.clone(), subscriptions => subscriptions,
                hospital => tpl(&hospital),
            },
            flash,
        ),
        Err(e) => error_page(Some(&s), &e),
    }
}

/// A hospital message as the admin page lists it.
#[derive(serde::Serialize)]
struct HospitalMessage {
    received: String,
    sender: String,
    control_id: String,
    event: String,
    state: String,
    detail: String,
}

/// `POST /admin/subscriptions/{id}/deliveries/{delivery}/resend`: one failed notification
/// delivered again (the same rule as the JSON API's).
pub async fn resend_delivery(
    State(state): State<AppState>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    Path((id, delivery)): Path<(String, String)>,
    req: Request,
) -> Response {
    let (s, form) = match posted(&state, req, addr, "/admin").await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let done = write(
        &state,
        &s,
        &form,
        "console-subscription-resend",
        move |tx, ctx| crate::api::subscriptions::resend_in(tx, ctx, &id, &delivery).map(|_| ()),
    )
    .await;
    match done {
        Ok(()) => see_other("/admin", "resent"),
        Err(e) => error_page(Some(&s), &e),
    }
}

/// `POST /admin/sites`: a new clinic site of an organisation.
pub async fn add_site(
    State(state): State<AppState>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    req: Request,
) -> Response {
    let (s, form) = match posted(&state, req, addr, "/admin").await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let required = |k: &str, what: &str| {
        form.opt(k).ok_or_else(|| {
            ApiError::new(422, IssueType::Required, format!("enter the site's {what}"))
        })
    };
    let fields = (|| {
        let name = required("name", "name")?;
        let org = required("organization", "organisation")?;
        if !fhir::primitive::is_id(&org) {
            return Err(ApiError::new(
                400,
                IssueType::Value,
                "choose the organisation",
            ));
        }
        let line = required("line", "street address")?;
        let zip = required("postalCode", "ZIP code")?;
        let Some((point, state_code)) = care::geo::zip_centroid(&zip) else {
            return Err(ApiError::new(
                422,
                IssueType::Value,
                format!("'{zip}' is not a ZIP code the directory knows (five digits, e.g. 06106)"),
            ));
        };
        let city = form
            .opt("city")
            .or_else(|| care::geo::zip_city(&zip))
            .unwrap_or_default();
        let mut site = json!({"resourceType": "Location", "status": "active", "name": name,
            "mode": "instance",
            "type": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-RoleCode", "code": "OUTPHARM", "display": "outpatient facility"}], "text": "Clinic"}],
            "address": {"use": "work", "line": [line], "city": city, "state": state_code, "postalCode": zip, "country": "US"},
            "position": {"latitude": point.lat, "longitude": point.lng},
            "managingOrganization": {"reference": format!("Organization/{org}")}});
        if let Some(phone) = form.opt("phone") {
            site["telecom"] = json!([{"system": "phone", "value": phone, "use": "work"}]);
        }
        Ok(site)
    })();
    let site = match fields {
        Ok(site) => site,
        Err(e) => return error_page(Some(&s), &e),
    };
    let done = write(&state, &s, &form, "console-add-site", move |tx, ctx| {
        crate::rest::execute::create(tx, ctx, "Location", site, None).map(|_| ())
    })
    .await;
    match done {
        Ok(()) => see_other("/admin", "site-added"),
        Err(e) => error_page(Some(&s), &e),
    }
}

/// `POST /admin/users/{name}/disable|enable` (an API client as `client:{id}`).
pub async fn user_action(
    State(state): State<AppState>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    Path((name, action)): Path<(String, String)>,
    req: Request,
) -> Response {
    let (s, form) = match posted(&state, req, addr, "/admin").await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let disable = match action.as_str() {
        "disable" => true,
        "enable" => false,
        _ => {
            return error_page(
                Some(&s),
                &ApiError::not_found("there is no such account action"),
            );
        }
    };
    if disable && name == s.user {
        return error_page(
            Some(&s),
            &ApiError::new(
                409,
                IssueType::BusinessRule,
                "you cannot disable your own account",
            ),
        );
    }
    let who = name.clone();
    let done = write(&state, &s, &form, "console-account", move |tx, _ctx| {
        may_manage_accounts(tx)?;
        let found = match who.strip_prefix("client:") {
            Some(id) => tx
                .on_behalf(store::OnBehalf::Accounts)
                .set_client_disabled(id, disable)?,
            None => tx
                .on_behalf(store::OnBehalf::Accounts)
                .set_user_disabled(&who, disable)?,
        };
        if !found {
            return Err(ApiError::not_found(format!("there is no account '{who}'")));
        }
        tx.trail.description = Some(format!(
            "account {who} {}",
            if disable { "disabled" } else { "enabled" }
        ));
        Ok(())
    })
    .await;
    match done {
        Ok(()) => see_other(
            "/admin",
            if disable {
                "user-disabled"
            } else {
                "user-enabled"
            },
        ),
        Err(e) => error_page(Some(&s), &e),
    }
}

/// The result of creating an account: what is shown once.
fn created_page(
    s: &super::Session,
    what: &str,
    name: &str,
    secret_label: &str,
    secret: &str,
) -> Response {
    super::render(
        s,
        "/admin",
        "console/created.html",
        "Account created",
        context! { what => what, name => name, secret_label => secret_label, secret => secret },
    )
}

/// The grants and FHIR identity of a new account, checked as `continuum users add` checks them.
fn grants_of(form: &super::Form) -> Result<(Vec<care::access::Grant>, Vec<String>), ApiError> {
    let role = form.get("role");
    let grant = match form.opt("organization") {
        Some(org) if care::access::Role::parse(role).is_some_and(|r| r.needs_organization()) => {
            crate::auth::parse_grant(&format!("{role}@{org}"))
        }
        _ => crate::auth::parse_grant(role),
    }
    .map_err(|why| ApiError::new(422, IssueType::Value, why))?;
    let (types, needed) = grant.role.identity();
    let fhir_users: Vec<String> = form.opt("fhir_user").into_iter().collect();
    for f in &fhir_users {
        let ok = fhir::json::split_reference(f)
            .is_some_and(|(rt, id)| types.contains(&rt) && fhir::primitive::is_id(id));
        if !ok {
            return Err(ApiError::new(
                422,
                IssueType::Value,
                format!("'{f}' is not a {} reference (Type/id)", types.join(" or ")),
            ));
        }
    }
    if needed && fhir_users.is_empty() {
        return Err(ApiError::new(
            422,
            IssueType::Required,
            format!(
                "a {} account names the {} it is",
                grant.role.as_str(),
                types.join(" or ")
            ),
        ));
    }
    Ok((vec![grant], fhir_users))
}

/// The records an account names must exist (read as the administrator, who sees everything).
fn check_records(tx: &mut store::CallerTx, fhir_users: &[String]) -> Result<(), ApiError> {
    for f in fhir_users {
        if let Some((rt, id)) = fhir::json::split_reference(f)
            && tx.current(rt, id, false)?.filter(|r| !r.deleted).is_none()
        {
            return Err(ApiError::new(
                422,
                IssueType::Value,
                format!("there is no {f}"),
            ));
        }
    }
    Ok(())
}

/// `POST /admin/users`: a console user with a generated password, shown once.
pub async fn add_user(
    State(state): State<AppState>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    req: Request,
) -> Response {
    let (s, form) = match posted(&state, req, addr, "/admin").await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let username = form.get("username").trim().to_string();
    let valid_name = (2..=64).contains(&username.len())
        && username
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.@".contains(c));
    if !valid_name {
        return error_page(
            Some(&s),
            &ApiError::new(
                422,
                IssueType::Value,
                "a user name is 2 to 64 letters, digits or - _ . @",
            ),
        );
    }
    let (grants, fhir_users) = match grants_of(&form) {
        Ok(g) => g,
        Err(e) => return error_page(Some(&s), &e),
    };
    let password = crate::auth::secrets::random_token(18);
    let record = store::accounts::UserRecord {
        id: uuid::Uuid::new_v4().to_string(),
        username: username.clone(),
        password_hash: crate::auth::secrets::hash_secret(&password),
        display_name: form.opt("display_name"),
        grants,
        fhir_users: fhir_users.clone(),
        disabled: false,
        failed_logins: 0,
        locked_until: None,
    };
    let name = username.clone();
    let done = write(&state, &s, &form, "console-account", move |tx, _ctx| {
        may_manage_accounts(tx)?;
        check_records(tx, &fhir_users)?;
        let accounts = tx.on_behalf(store::OnBehalf::Accounts);
        if accounts.user_by_name(&name)?.is_some() {
            return Err(ApiError::new(
                409,
                IssueType::Duplicate,
                format!("a user named '{name}' already exists"),
            ));
        }
        accounts.insert_user(&record)?;
        tx.trail.description = Some(format!("account {name} created"));
        Ok(())
    })
    .await;
    match done {
        Ok(()) => created_page(&s, "user", &username, "Password", &password),
        Err(e) => error_page(Some(&s), &e),
    }
}

/// `POST /admin/clients`: an API client with a generated secret, shown once.
pub async fn add_client(
    State(state): State<AppState>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    req: Request,
) -> Response {
    let (s, form) = match posted(&state, req, addr, "/admin").await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let Some(name) = form.opt("name") else {
        return error_page(
            Some(&s),
            &ApiError::new(422, IssueType::Required, "name the API client"),
        );
    };
    let scopes = match care::access::Scopes::parse(form.get("scope")) {
        Ok(sc) if !sc.scopes.is_empty() => sc.to_scope_string(),
        Ok(_) => {
            return error_page(
                Some(&s),
                &ApiError::new(
                    422,
                    IssueType::Required,
                    "give at least one resource scope, like system/Patient.rs",
                ),
            );
        }
        Err(e) => {
            return error_page(
                Some(&s),
                &ApiError::new(422, IssueType::Value, e.to_string()),
            );
        }
    };
    let (grants, fhir_users) = if form.get("role").is_empty() {
        (Vec::new(), Vec::new())
    } else {
        match grants_of(&form) {
            Ok(g) => g,
            Err(e) => return error_page(Some(&s), &e),
        }
    };
    let client_id = format!(
        "c-{}",
        crate::auth::secrets::random_token(12).replace(['-', '_'], "x")
    );
    let secret = crate::auth::secrets::random_token(32);
    let record = store::accounts::ClientRecord {
        client_id: client_id.clone(),
        name: name.clone(),
        secret_hash: crate::auth::secrets::hash_secret(&secret),
        scopes,
        grants,
        fhir_users: fhir_users.clone(),
        disabled: false,
    };
    let id = client_id.clone();
    let done = write(&state, &s, &form, "console-account", move |tx, _ctx| {
        may_manage_accounts(tx)?;
        check_records(tx, &fhir_users)?;
        tx.on_behalf(store::OnBehalf::Accounts)
            .insert_client(&record)?;
        tx.trail.description = Some(format!("API client {id} ({name}) created"));
        Ok(())
    })
    .await;
    match done {
        Ok(()) => created_page(&s, "API client", &client_id, "Client secret", &secret),
        Err(e) => error_page(Some(&s), &e),
    }
}

/// `POST /admin/keys/rotate`: a new token signing key; tokens signed by the old one stay valid
/// until they expire.
pub async fn rotate_keys(
    State(state): State<AppState>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    req: Request,
) -> Response {
    let (s, form) = match posted(&state, req, addr, "/admin").await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let auth = state.auth.clone();
    let done = write(&state, &s, &form, "console-account", move |tx, _ctx| {
        may_manage_accounts(tx)?;
        let kid = auth
            .keys
            .rotate_in(tx.on_behalf(store::OnBehalf::Accounts))?;
        tx.trail.description = Some(format!("token signing key rotated: {kid}"));
        Ok(())
    })
    .await;
    match done {
        Ok(()) => {
            if let Err(e) = state.auth.keys.reload().await {
                tracing::error!(error = %e, "the signing keys could not be reloaded");
            }
            see_other("/admin", "keys-rotated")
        }
        Err(e) => error_page(Some(&s), &e),
    }
}
