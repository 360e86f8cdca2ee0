//! What the command line checks before it changes accounts: that the database exists (an
//! account command never creates one), that it is the one the running server uses, and that
//! roles and FHIR identities name records that exist.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use anyhow::{Result, bail};
use care::access::Grant;
use store::{DatabaseUrl, Store};

/// An account command works on an existing database: a SQLite file that is not there means a
/// mistyped or forgotten `--database`, not a wish for a new, empty alliance.
pub fn database_must_exist(url: &DatabaseUrl) -> Result<()> {
    if let DatabaseUrl::Sqlite(path) = url
        && !path.exists()
    {
        bail!(
            "there is no database at {}: `continuum serve` (or `continuum migrate`) creates it; \
             if the server runs with another database, give this command the same --database \
             (or CONTINUUM_DATABASE_URL)",
            path.display()
        );
    }
    Ok(())
}

/// Warns when a Continuum server answers at `listen` but runs on another database than
/// `store`: what this command changes would not be seen there.
pub fn warn_if_server_uses_another_database(listen: SocketAddr, store: &Store, url: &DatabaseUrl) {
    let Ok(ours) = store.read_blocking(|tx| tx.database_identity()) else {
        return;
    };
    let Some(theirs) = server_database(listen) else {
        return;
    };
    if theirs != ours {
        eprintln!(
            "warning: the Continuum server on {listen} runs on another database; this command \
             changes {} — give it the server's --database (or CONTINUUM_DATABASE_URL) to change \
             the server's",
            url.redacted()
        );
    }
}

/// The database identity a server at `listen` reports at `/healthz`, if one answers quickly.
fn server_database(listen: SocketAddr) -> Option<String> {
    let mut addr = listen;
    if addr.ip().is_unspecified() {
        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_millis(300)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    stream
        .write_all(b"GET /healthz HTTP/1.0\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut answer = Vec::new();
    stream.take(64 * 1024).read_to_end(&mut answer).ok()?;
    let text = String::from_utf8_lossy(&answer);
    let (_, body) = text.split_once("\r\n\r\n")?;
    let v: serde_json::Value = serde_json::from_str(body).ok()?;
    v.get("database")?.as_str().map(str::to_string)
}

/// Checks a new account's roles and FHIR identities against the database: every role's
/// organisation is an Organization that exists, a patient is a Patient and a proxy a
/// RelatedPerson that exist, and no identity is of a type its roles cannot be.
pub fn check_identity(store: &Store, grants: &[Grant], fhir_users: &[String]) -> Result<()> {
    for grant in grants {
        let Some(org) = &grant.organization else {
            continue;
        };
        if !exists(store, "Organization", org)? {
            let known = store.read_blocking(|tx| tx.list_current("Organization", 30))?;
            let names: Vec<String> = known
                .iter()
                .map(
                    |(id, body)| match body.get("name").and_then(|n| n.as_str()) {
                        Some(name) => format!("{id} ({name})"),
                        None => id.clone(),
                    },
                )
                .collect();
            bail!(
                "there is no Organization/{org} in this database, so the role {}@{org} would \
                 see no one; {}",
                grant.role.as_str(),
                if names.is_empty() {
                    "it has no organisations yet (load the directory first)".to_string()
                } else {
                    format!("the organisations are: {}", names.join(", "))
                }
            );
        }
    }
    let mut parsed = Vec::new();
    for r in fhir_users {
        match r.split_once('/') {
            Some((t, id))
                if fhir::definitions::definitions().is_resource_type(t)
                    && fhir::primitive::is_id(id) =>
            {
                parsed.push((t, id))
            }
            _ => bail!("--fhir-user '{r}' is not a FHIR reference like RelatedPerson/123"),
        }
    }
    for grant in grants {
        let (types, needed) = grant.role.identity();
        if needed && !parsed.iter().any(|(t, _)| types.contains(t)) {
            bail!(
                "the role {} needs --fhir-user {}/ID: the record of the person who signs in (the \
                 access rules follow it{})",
                grant.role.as_str(),
                types[0],
                if types[0] == "RelatedPerson" {
                    " to the child"
                } else {
                    ""
                }
            );
        }
    }
    for (t, id) in &parsed {
        if !grants.is_empty() && !grants.iter().any(|g| g.role.identity().0.contains(t)) {
            let wanted: Vec<String> = grants
                .iter()
                .map(|g| {
                    format!(
                        "a {} is a {}",
                        g.role.as_str(),
                        g.role.identity().0.join(" or ")
                    )
                })
                .collect();
            bail!(
                "--fhir-user {t}/{id} does not fit the roles: {}",
                wanted.join("; ")
            );
        }
        if !exists(store, t, id)? {
            bail!(
                "there is no {t}/{id} in this database; create it first (or check the id: \
                 `GET /fhir/{t}?_count=10` lists some)"
            );
        }
    }
    Ok(())
}

fn exists(store: &Store, rt: &str, id: &str) -> Result<bool> {
    let (rt, id) = (rt.to_string(), id.to_string());
    let found = store.read_blocking(move |tx| tx.current(&rt, &id, false))?;
    Ok(found.is_some_and(|s| !s.deleted))
}
