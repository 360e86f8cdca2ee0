//! The administration subcommands: `users`, `clients`, `keys`, `audit verify`, and the
//! first-start rule that the server never runs without an administrator.

use std::io::BufRead;

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use server::auth::parse_grant;
use server::auth::secrets::{check_password_strength, digest, hash_secret, random_token};
use store::Store;
use store::accounts::{ClientRecord, UserRecord};

#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// Add a console user. The password is read from stdin with --password-stdin, or generated
    /// and printed once.
    Add {
        /// The sign-in name.
        username: String,
        /// A role (repeatable): alliance-admin; coordinator@ORG, clinician@ORG or
        /// referring-clinician@ORG (ORG an Organization id, e.g. cc); patient (with --fhir-user
        /// Patient/ID); proxy (with --fhir-user RelatedPerson/ID, a parent or guardian); auditor.
        #[arg(long = "role", required = true, value_name = "ROLE")]
        roles: Vec<String>,
        /// The FHIR record the user is (repeatable): Practitioner/ID for staff, Patient/ID for a
        /// patient, RelatedPerson/ID for a proxy. It must exist.
        #[arg(long = "fhir-user", value_name = "TYPE/ID")]
        fhir_users: Vec<String>,
        /// The name shown in the console and the audit trail.
        #[arg(long)]
        display_name: Option<String>,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
    },
    /// List users.
    List,
    /// Disable a user (their sessions end at once).
    Disable {
        /// The sign-in name.
        username: String,
    },
    /// Enable a disabled user.
    Enable {
        /// The sign-in name.
        username: String,
    },
    /// Set a user's password (read from stdin with --password-stdin, or generated).
    Passwd {
        /// The sign-in name.
        username: String,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum ClientsCommand {
    /// Register an API client; prints its client_id and client_secret once.
    Add {
        /// What the client is, for the list and the audit trail.
        #[arg(long)]
        name: String,
        /// SMART scopes, space-separated or repeated: `system/Patient.rs`, `user/*.cruds`, …
        #[arg(long = "scope", required = true)]
        scopes: Vec<String>,
        /// Act in a role (repeatable; without one, a client with system/ scopes is a backend service): alliance-admin; coordinator@ORG, clinician@ORG or
        /// referring-clinician@ORG (ORG an Organization id, e.g. cc); patient (with --fhir-user
        /// Patient/ID); proxy (with --fhir-user RelatedPerson/ID, a parent or guardian); auditor.
        #[arg(long = "role", value_name = "ROLE")]
        roles: Vec<String>,
        /// The FHIR record the client acts as (repeatable; see --role). It must exist.
        #[arg(long = "fhir-user", value_name = "TYPE/ID")]
        fhir_users: Vec<String>,
        /// Also write `client_id:client_secret` to FILE (owner-only), for `curl -u "$(cat FILE)"`.
        #[arg(long, value_name = "FILE")]
        credentials_file: Option<std::path::PathBuf>,
    },
    /// List clients: id, status, name, roles, FHIR identity and scopes.
    List,
    /// Disable a client: its tokens stop working at once, and no new ones are issued.
    Disable {
        /// The client_id (c-…).
        client_id: String,
    },
    /// Enable a disabled client.
    Enable {
        /// The client_id (c-…).
        client_id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Make a new signing key; older keys keep verifying the tokens they signed until those expire.
    Rotate,
    /// List signing keys.
    List,
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Recompute the audit hash chain and name the first broken link.
    Verify,
}

fn read_password(stdin: bool) -> Result<(String, bool)> {
    if stdin {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("cannot read the password from stdin")?;
        let pw = line.trim_end_matches(['\r', '\n']).to_string();
        check_password_strength(&pw).map_err(anyhow::Error::msg)?;
        return Ok((pw, false));
    }
    Ok((random_token(18), true))
}

pub fn users(store: &Store, cmd: UsersCommand) -> Result<()> {
    match cmd {
        UsersCommand::Add {
            username,
            roles,
            fhir_users,
            display_name,
            password_stdin,
        } => {
            let grants = roles
                .iter()
                .map(|r| parse_grant(r))
                .collect::<Result<Vec<_>, _>>()
                .map_err(anyhow::Error::msg)?;
            crate::checks::check_identity(store, &grants, &fhir_users)?;
            let (password, generated) = read_password(password_stdin)?;
            let record = UserRecord {
                id: uuid_like(),
                username: username.clone(),
                password_hash: hash_secret(&password),
                display_name,
                grants,
                fhir_users,
                disabled: false,
                failed_logins: 0,
                locked_until: None,
            };
            let name = username.clone();
            store
                .write_blocking(move |tx| {
                    if tx.user_by_name(&name)?.is_some() {
                        return Ok::<bool, store::StoreError>(false);
                    }
                    tx.insert_user(&record)?;
                    Ok(true)
                })?
                .then_some(())
                .with_context(|| format!("a user named '{username}' already exists"))?;
            println!("added user {username}");
            if generated {
                println!(
                    "password: {password}\n(shown once; change it with `continuum users passwd {username} --password-stdin`)"
                );
            }
        }
        UsersCommand::List => {
            let users = store.read_blocking(|tx| tx.list_users())?;
            println!(
                "{:<20} {:<9} {:<40} fhir user",
                "username", "status", "roles"
            );
            for u in users {
                println!(
                    "{:<20} {:<9} {:<40} {}",
                    u.username,
                    status(u.disabled),
                    roles_text(&u.grants),
                    u.fhir_users.join(" ")
                );
            }
        }
        UsersCommand::Disable { username } => {
            let n = username.clone();
            if !store.write_blocking(move |tx| tx.set_user_disabled(&n, true))? {
                bail!("no user named '{username}'");
            }
            println!("disabled {username}; their sessions are ended");
        }
        UsersCommand::Enable { username } => {
            let n = username.clone();
            if !store.write_blocking(move |tx| tx.set_user_disabled(&n, false))? {
                bail!("no user named '{username}'");
            }
            println!("enabled {username}");
        }
        UsersCommand::Passwd {
            username,
            password_stdin,
        } => {
            let (password, generated) = read_password(password_stdin)?;
            let (n, h) = (username.clone(), hash_secret(&password));
            if !store.write_blocking(move |tx| tx.set_user_password(&n, &h))? {
                bail!("no user named '{username}'");
            }
            println!("password of {username} changed");
            if generated {
                println!("password: {password}\n(shown once)");
            }
        }
    }
    Ok(())
}

fn uuid_like() -> String {
    let t = random_token(16);
    t.chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .take(20)
        .collect()
}

fn status(disabled: bool) -> &'static str {
    if disabled { "disabled" } else { "active" }
}

fn roles_text(grants: &[care::access::Grant]) -> String {
    let roles: Vec<String> = grants
        .iter()
        .map(|g| match &g.organization {
            Some(o) => format!("{}@{o}", g.role.as_str()),
            None => g.role.as_str().to_string(),
        })
        .collect();
    if roles.is_empty() {
        "-".into()
    } else {
        roles.join(",")
    }
}

/// Registers an API client; returns its id and (only copy of the) secret.
pub fn create_client(
    store: &Store,
    name: &str,
    scopes: &str,
    grants: Vec<care::access::Grant>,
    fhir_users: Vec<String>,
) -> Result<(String, String)> {
    let parsed = care::access::Scopes::parse(scopes)?;
    if parsed.scopes.is_empty() {
        bail!("give at least one resource scope, like --scope system/Patient.rs");
    }
    let client_id = format!("c-{}", uuid_like());
    let secret = random_token(32);
    let record = ClientRecord {
        client_id: client_id.clone(),
        name: name.to_string(),
        secret_hash: hash_secret(&secret),
        scopes: parsed.to_scope_string(),
        grants,
        fhir_users,
        disabled: false,
    };
    store.write_blocking(move |tx| tx.insert_client(&record))?;
    Ok((client_id, secret))
}

/// Writes `id:secret` to a file only its owner may read.
pub fn write_credentials(path: &std::path::Path, id: &str, secret: &str) -> Result<()> {
    write_private(path, &format!("{id}:{secret}\n"))
}

/// Writes a file only its owner may read (creating its directory).
fn write_private(path: &std::path::Path, text: &str) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).ok();
    }
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).ok();
    }
    Ok(())
}

pub fn clients(store: &Store, cmd: ClientsCommand) -> Result<()> {
    match cmd {
        ClientsCommand::Add {
            name,
            scopes,
            roles,
            fhir_users,
            credentials_file,
        } => {
            let grants = roles
                .iter()
                .map(|r| parse_grant(r))
                .collect::<Result<Vec<_>, _>>()
                .map_err(anyhow::Error::msg)?;
            crate::checks::check_identity(store, &grants, &fhir_users)?;
            let (client_id, secret) =
                create_client(store, &name, &scopes.join(" "), grants, fhir_users)?;
            let scopes = store
                .read_blocking({
                    let id = client_id.clone();
                    move |tx| tx.client(&id)
                })?
                .map(|c| c.scopes)
                .unwrap_or_default();
            println!("client_id: {client_id}");
            println!("client_secret: {secret}");
            println!("scopes: {scopes}");
            match credentials_file {
                Some(path) => {
                    write_credentials(&path, &client_id, &secret)?;
                    println!(
                        "(the secret is shown once; {} holds client_id:client_secret — get a token with: curl -u \"$(cat {})\" -d grant_type=client_credentials http://HOST/auth/token)",
                        path.display(),
                        path.display()
                    );
                }
                None => println!(
                    "(the secret is shown once; get a token with: curl -u {client_id}:SECRET -d grant_type=client_credentials http://HOST/auth/token)"
                ),
            }
        }
        ClientsCommand::List => {
            let clients = store.read_blocking(|tx| tx.list_clients())?;
            println!(
                "{:<24} {:<9} {:<16} {:<36} {:<28} scopes",
                "client_id", "status", "name", "roles", "fhir user"
            );
            for c in clients {
                println!(
                    "{:<24} {:<9} {:<16} {:<36} {:<28} {}",
                    c.client_id,
                    status(c.disabled),
                    c.name,
                    roles_text(&c.grants),
                    if c.fhir_users.is_empty() {
                        "-".to_string()
                    } else {
                        c.fhir_users.join(" ")
                    },
                    c.scopes
                );
            }
        }
        ClientsCommand::Disable { client_id } => set_client_disabled(store, &client_id, true)?,
        ClientsCommand::Enable { client_id } => set_client_disabled(store, &client_id, false)?,
    }
    Ok(())
}

fn set_client_disabled(store: &Store, client_id: &str, disabled: bool) -> Result<()> {
    let id = client_id.to_string();
    if !store.write_blocking(move |tx| tx.set_client_disabled(&id, disabled))? {
        bail!("no client '{client_id}' (`continuum clients list` shows them)");
    }
    if disabled {
        println!("disabled {client_id}; its tokens no longer work");
    } else {
        println!("enabled {client_id}");
    }
    Ok(())
}

pub fn keys(store: &Store, seal: &server::auth::seal::KeySeal, cmd: KeysCommand) -> Result<()> {
    match cmd {
        KeysCommand::Rotate => {
            // the new key must open with the sealing key the server uses
            for k in store.read_blocking(|tx| tx.keys())? {
                if k.retired_at.is_none() && server::auth::seal::KeySeal::is_sealed(&k.private_key)
                {
                    seal.open(&k.kid, &k.private_key)?;
                }
            }
            let seal = seal.clone();
            let kid = store.write_blocking(move |tx| {
                let now = tx.now();
                let mut key = server::auth::tokens::generate_key(now);
                server::auth::tokens::seal_key(&mut key, &seal);
                let kid = key.kid.clone();
                tx.insert_key(&key)?;
                tx.retire_keys_except(&kid)?;
                // a retired key verifies for a day, far longer than any token lives
                tx.purge_keys_retired_before(now - 24 * 3_600_000)?;
                Ok::<_, store::StoreError>(kid)
            })?;
            println!(
                "new signing key {kid}; running servers pick it up on the next token they verify with it"
            );
        }
        KeysCommand::List => {
            for k in store.read_blocking(|tx| tx.keys())? {
                println!(
                    "{} {} created {} {}",
                    k.kid,
                    k.algorithm,
                    fhir::primitive::format_instant(k.created_at),
                    k.retired_at
                        .map(|r| format!("retired {}", fhir::primitive::format_instant(r)))
                        .unwrap_or_else(|| "active".into())
                );
            }
        }
    }
    Ok(())
}

pub fn audit(store: &Store, cmd: AuditCommand) -> Result<()> {
    match cmd {
        AuditCommand::Verify => {
            let v = store.read_blocking(store::audit::verify)?;
            match v.first_broken {
                None => {
                    println!("audit chain intact: {} records verified", v.checked);
                    if v.pending > 0 {
                        println!(
                            "{} writes' records committed with their writes and not yet sealed into the chain (the running server seals them as it goes, or at its next start)",
                            v.pending
                        );
                    }
                    Ok(())
                }
                Some((seq, why)) => {
                    println!(
                        "audit chain BROKEN at record {seq} (after {} good records): {why}",
                        v.checked
                    );
                    bail!("the audit trail has been tampered with")
                }
            }
        }
    }
}

/// The server must not run open: with no administrator, create one from
/// `CONTINUUM_ADMIN_PASSWORD`, or print a one-time setup token for `/setup`.
pub fn ensure_admin(store: &Store, admin_password: Option<&str>) -> Result<()> {
    let admins = store.read_blocking(|tx| tx.count_admins())?;
    if admins > 0 {
        return Ok(());
    }
    if let Some(pw) = admin_password {
        check_password_strength(pw)
            .map_err(|e| anyhow::anyhow!("CONTINUUM_ADMIN_PASSWORD: {e}"))?;
        let record = UserRecord {
            id: uuid_like(),
            username: "admin".into(),
            password_hash: hash_secret(pw),
            display_name: Some("Administrator".into()),
            grants: vec![care::access::Grant {
                role: care::access::Role::AllianceAdmin,
                organization: None,
            }],
            fhir_users: vec![],
            disabled: false,
            failed_logins: 0,
            locked_until: None,
        };
        store.write_blocking(move |tx| {
            if tx.user_by_name("admin")?.is_some() {
                return Err(store::StoreError::Conflict(
                    "a user named admin exists but is not an administrator".into(),
                ));
            }
            tx.insert_user(&record)
        })?;
        eprintln!("created the administrator 'admin' from CONTINUUM_ADMIN_PASSWORD");
        return Ok(());
    }
    let token = random_token(24);
    let hash = digest(&token);
    store.write_blocking(move |tx| {
        let expires = tx.now() + 24 * 3_600_000;
        tx.insert_setup_token(&hash, expires)
    })?;
    eprintln!("No administrator exists yet.");
    eprintln!("  One-time setup token (valid 24 h): {token}");
    eprintln!("  Open /setup?token={token} on this server to create the administrator,");
    eprintln!("  or restart with CONTINUUM_ADMIN_PASSWORD set.");
    Ok(())
}

/// The demo's console users, one per kind of person the console serves: (user name, roles,
/// FHIR user, who they are).
pub const DEMO_USERS: &[(&str, &[&str], Option<&str>, &str)] = &[
    (
        "coordinator",
        &["coordinator@cc"],
        None,
        "referral coordinator, Connecticut Children's",
    ),
    (
        "hhc-coordinator",
        &["coordinator@hhc"],
        None,
        "referral coordinator, Hartford HealthCare",
    ),
    (
        "pediatrician",
        &["referring-clinician@shoreline-peds"],
        None,
        "community pediatrician, Shoreline Pediatrics",
    ),
    (
        "parent",
        &["proxy"],
        Some("RelatedPerson/demo-nora-mother"),
        "Elena Reyes, mother of Nora (16)",
    ),
    (
        "nora",
        &["patient"],
        Some("Patient/demo-nora"),
        "Nora Reyes, 16, her own record",
    ),
    (
        "demo-admin",
        &["alliance-admin"],
        None,
        "alliance administrator",
    ),
];

/// Creates the demo's console users once, each with a generated password; returns the lines
/// of the file that keeps them (`name password  who`), read again at every start.
pub fn ensure_demo_users(store: &Store, path: &std::path::Path) -> Result<String> {
    // the file is kept while its users are this database's (another database beside it, or a
    // fresh one, gets users of its own)
    if let Ok(existing) = std::fs::read_to_string(path) {
        let kept: Vec<(String, String)> = existing
            .lines()
            .filter_map(|l| {
                let mut w = l.split_whitespace();
                Some((w.next()?.to_string(), w.next()?.to_string()))
            })
            .collect();
        let valid = DEMO_USERS.iter().all(|(name, ..)| {
            let Some((_, password)) = kept.iter().find(|(n, _)| n == name) else {
                return false;
            };
            let n = name.to_string();
            store
                .read_blocking(move |tx| tx.user_by_name(&n))
                .ok()
                .flatten()
                .is_some_and(|u| {
                    !u.disabled && server::auth::secrets::verify_secret(password, &u.password_hash)
                })
        });
        if valid {
            return Ok(existing);
        }
    }
    let mut lines = String::new();
    for (name, roles, fhir_user, who) in DEMO_USERS {
        let grants = roles
            .iter()
            .map(|r| parse_grant(r))
            .collect::<Result<Vec<_>, _>>()
            .map_err(anyhow::Error::msg)?;
        let password = random_token(12);
        let record = UserRecord {
            id: uuid_like(),
            username: name.to_string(),
            password_hash: hash_secret(&password),
            display_name: Some(who.to_string()),
            grants,
            fhir_users: fhir_user.iter().map(|f| f.to_string()).collect(),
            disabled: false,
            failed_logins: 0,
            locked_until: None,
        };
        let username = name.to_string();
        let p = password.clone();
        let saved = store.write_blocking(move |tx| {
            match tx.user_by_name(&username)? {
                // an account of that name from before: its password is set to the new one
                Some(_) => tx
                    .set_user_password(&username, &hash_secret(&p))
                    .map(|_| ()),
                None => tx.insert_user(&record),
            }
        });
        saved.with_context(|| format!("cannot create the demo user {name}"))?;
        lines.push_str(&format!("{name:<16} {password}  {who}\n"));
    }
    write_private(path, &lines)?;
    Ok(lines)
}
