//! The command line: `continuum serve | import | migrate`, each taking `--database`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use store::{DatabaseUrl, Store, StoreOptions};

use crate::config::{Config, FlagConfig};

#[derive(Debug, Parser)]
#[command(
    name = "continuum",
    version,
    about = "Care coordination for a pediatric care alliance: a FHIR R4 server on SQLite or PostgreSQL"
)]
pub struct Cli {
    /// A TOML configuration file (default: $CONTINUUM_CONFIG, then ./continuum.toml if present).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

/// `--database`, for the commands that open one.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct DatabaseArg {
    /// Where the data lives: sqlite://PATH (default sqlite://./continuum-data/continuum.db, or
    /// $CONTINUUM_DATABASE_URL) or postgres://USER:PASSWORD@HOST:PORT/DB. Give every command the
    /// database the server runs on.
    #[arg(long, global = true, value_name = "URL")]
    pub database: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server.
    Serve {
        #[command(flatten)]
        db: DatabaseArg,
        /// Address to listen on (default 127.0.0.1:8080).
        #[arg(long, value_name = "HOST:PORT")]
        listen: Option<String>,
        /// The public FHIR base URL to put in links, when behind a proxy.
        #[arg(long, value_name = "URL")]
        public_url: Option<String>,
        /// Largest accepted request body in bytes (default 16 MiB).
        #[arg(long, value_name = "BYTES")]
        max_body_bytes: Option<usize>,
        /// Load the illustrative demo alliance first (once) and a demo API client.
        #[arg(long)]
        demo: bool,
        /// Listen for HL7 v2 ADT messages over MLLP on this address (off by default), e.g.
        /// 127.0.0.1:2575.
        #[arg(long, value_name = "HOST:PORT")]
        mllp: Option<String>,
        /// MLLP over TLS: the PEM certificate chain (with --mllp-tls-key).
        #[arg(long, value_name = "FILE", requires = "mllp_tls_key")]
        mllp_tls_cert: Option<String>,
        /// MLLP over TLS: the certificate's PEM private key.
        #[arg(long, value_name = "FILE", requires = "mllp_tls_cert")]
        mllp_tls_key: Option<String>,
    },
    /// The illustrative demo alliance.
    Demo {
        #[command(flatten)]
        db: DatabaseArg,
        #[command(subcommand)]
        command: DemoCommand,
    },
    /// Slots from the schedules' weekly templates.
    Slots {
        #[command(flatten)]
        db: DatabaseArg,
        #[command(subcommand)]
        command: SlotsCommand,
    },
    /// Transition to adult care: the scheduler of the Six Core Elements.
    Transition {
        #[command(flatten)]
        db: DatabaseArg,
        #[command(subcommand)]
        command: TransitionCommand,
    },
    /// The alliance's access and quality measures (the catalogue in `care::measures::catalog`):
    /// CSV or JSON on stdout, computed as the alliance itself (in full unless --public).
    Measures {
        #[command(flatten)]
        db: DatabaseArg,
        /// The first day (YYYY-MM-DD; default the first of the month eleven months ago).
        #[arg(long, value_name = "DATE")]
        from: Option<String>,
        /// The day after the last (YYYY-MM-DD; default the first of next month).
        #[arg(long, value_name = "DATE")]
        to: Option<String>,
        /// The dimensions: month, organization, service, age_band (comma-separated; none for one cell).
        #[arg(long, default_value = "month")]
        by: String,
        /// One organisation's measures (an Organization id).
        #[arg(long)]
        organization: Option<String>,
        /// Only these measures (comma-separated ids).
        #[arg(long)]
        measure: Option<String>,
        /// csv or json.
        #[arg(long, default_value = "csv")]
        format: String,
        /// Suppress cells of fewer than 11, as for publication outside the alliance.
        #[arg(long)]
        public: bool,
    },
    /// Load FHIR data: NDJSON (.ndjson), Bundles (transaction, batch, collection) or resources.
    /// A transaction Bundle is all or nothing; refusals are reported in file order.
    Import {
        #[command(flatten)]
        db: DatabaseArg,
        /// Check every resource and Bundle as an import would, and write nothing.
        #[arg(long)]
        dry_run: bool,
        /// Files to load.
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
    },
    /// Bring the database schema up to date (creating the database file if needed) and exit.
    Migrate {
        #[command(flatten)]
        db: DatabaseArg,
    },
    /// Link the records of two files (CSV or NDJSON of Patients), or find the duplicates in
    /// one: writes left_id,right_id,score,grade for the probable and certain matches.
    Link(crate::link::LinkArgs),
    /// Console users: add, list, disable, enable, passwd.
    Users {
        #[command(flatten)]
        db: DatabaseArg,
        #[command(subcommand)]
        command: crate::admin::UsersCommand,
    },
    /// API clients (OAuth2 client credentials): add, list, disable, enable.
    Clients {
        #[command(flatten)]
        db: DatabaseArg,
        #[command(subcommand)]
        command: crate::admin::ClientsCommand,
    },
    /// Token signing keys: rotate, list.
    Keys {
        #[command(flatten)]
        db: DatabaseArg,
        #[command(subcommand)]
        command: crate::admin::KeysCommand,
    },
    /// The audit trail: verify its hash chain.
    Audit {
        #[command(flatten)]
        db: DatabaseArg,
        #[command(subcommand)]
        command: crate::admin::AuditCommand,
    },
}

impl Command {
    /// The `--database` given, for the commands that open one.
    fn database(&self) -> Option<String> {
        match self {
            Command::Serve { db, .. }
            | Command::Demo { db, .. }
            | Command::Slots { db, .. }
            | Command::Transition { db, .. }
            | Command::Import { db, .. }
            | Command::Measures { db, .. }
            | Command::Migrate { db }
            | Command::Users { db, .. }
            | Command::Clients { db, .. }
            | Command::Keys { db, .. }
            | Command::Audit { db, .. } => db.database.clone(),
            Command::Link(_) => None,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum DemoCommand {
    /// Load the demo alliance (sites, services, clinicians, schedules, 8 weeks of slots and
    /// 2,000 synthetic patients) and create a demo API client; does nothing if already loaded.
    Load,
}

#[derive(Debug, Subcommand)]
pub enum SlotsCommand {
    /// Create the slots every active schedule's template offers over the coming weeks (never
    /// duplicating or overwriting a slot).
    Generate {
        /// How many weeks ahead.
        #[arg(long, default_value_t = 8)]
        weeks: u32,
    },
}

#[derive(Debug, Subcommand)]
pub enum TransitionCommand {
    /// Bring every young person's element Tasks up to date (what the daily job does): one open
    /// Task per element due or overdue, the others closed; running it twice changes nothing.
    Run {
        /// The day to compute for (YYYY-MM-DD; default today).
        #[arg(long, value_name = "DATE")]
        as_of: Option<String>,
    },
}

/// Weeks of slots kept ahead by the daily job.
const SLOT_WEEKS: u32 = server::jobs::SLOT_WEEKS;

pub fn run(cli: Cli) -> Result<()> {
    let env: HashMap<String, String> = std::env::vars().collect();
    let mut flags = FlagConfig {
        database: cli.command.database(),
        ..Default::default()
    };
    if let Command::Serve {
        listen,
        public_url,
        max_body_bytes,
        mllp,
        mllp_tls_cert,
        mllp_tls_key,
        ..
    } = &cli.command
    {
        flags.listen = listen.clone();
        flags.public_base_url = public_url.clone();
        flags.max_body_bytes = *max_body_bytes;
        flags.mllp_listen = mllp.clone();
        flags.mllp_tls_cert = mllp_tls_cert.clone();
        flags.mllp_tls_key = mllp_tls_key.clone();
    }
    let config = Config::load(cli.config.as_deref(), &env, &flags)?;
    // before the first resource is validated: this process's size limits
    fhir::validate::set_resource_limits(config.resource_limits);
    init_logging(&config);
    for w in &config.warnings {
        tracing::warn!("{w}");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    match cli.command {
        Command::Serve { demo, .. } => {
            let store = open_store(&config, true)?;
            crate::admin::ensure_admin(&store, config.admin_password.as_ref().map(|s| s.expose()))?;
            let mut users = None;
            if demo {
                runtime.block_on(load_demo(&config, &store))?;
                ensure_demo_client(&config, &store)?;
                users = Some(ensure_demo_users(&config, &store)?);
            }
            runtime.block_on(serve(config, store, users))
        }
        Command::Demo {
            command: DemoCommand::Load,
            ..
        } => {
            let store = open_store(&config, true)?;
            runtime.block_on(load_demo(&config, &store))?;
            ensure_demo_client(&config, &store)
        }
        Command::Slots {
            command: SlotsCommand::Generate { weeks },
            ..
        } => {
            let store = open_store(&config, true)?;
            let api = rest_api(&config, store);
            let report = runtime
                .block_on(server::slots::generate(&api, weeks))
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            println!(
                "{} schedules: {} slots created, {} already there ({weeks} weeks)",
                report.schedules, report.created, report.existing
            );
            Ok(())
        }
        Command::Measures {
            from,
            to,
            by,
            organization,
            measure,
            format,
            public,
            ..
        } => {
            let store = open_store(&config, true)?;
            let mut query: Vec<(String, String)> =
                vec![("by".into(), by), ("format".into(), format)];
            for (k, v) in [
                ("from", from),
                ("to", to),
                ("organization", organization),
                ("measure", measure),
            ] {
                if let Some(v) = v {
                    query.push((k.into(), v));
                }
            }
            if public {
                query.push(("audience".into(), "public".into()));
            }
            let (mut request, csv) = server::api::measures::request(&query, store.clock().now_ms())
                .map_err(|e| anyhow::anyhow!(e.to_string()))?;
            request.operator = true;
            let api = rest_api(&config, store);
            let r = request.clone();
            let measured = runtime
                .block_on(api.system_read("measures", move |tx, ctx| {
                    let m = server::app::measures::measures(tx, ctx, &r)?;
                    let words = tx.trail.description.clone();
                    Ok((m, words))
                }))
                .map_err(|e| anyhow::anyhow!(e.to_string()))?;
            print!(
                "{}",
                server::api::measures::render(&request, &measured, csv).1
            );
            Ok(())
        }
        Command::Transition {
            command: TransitionCommand::Run { as_of },
            ..
        } => {
            let store = open_store(&config, true)?;
            let as_of_ms = match as_of {
                None => store.clock().now_ms(),
                Some(d) => server::app::transition::day_noon_ms(&d)
                    .ok_or_else(|| anyhow::anyhow!("--as-of '{d}' is not a date (YYYY-MM-DD)"))?,
            };
            let api = rest_api(&config, store);
            let report = runtime
                .block_on(server::app::transition::schedule(&api, as_of_ms))
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            println!("{}", report.words());
            Ok(())
        }
        Command::Import { files, dry_run, .. } => runtime.block_on(import(config, files, dry_run)),
        Command::Migrate { .. } => migrate(config),
        Command::Link(args) => crate::link::run(args),
        Command::Users { command, .. } => crate::admin::users(&open_accounts(&config)?, command),
        Command::Clients { command, .. } => {
            crate::admin::clients(&open_accounts(&config)?, command)
        }
        Command::Keys { command, .. } => crate::admin::keys(
            &open_accounts(&config)?,
            &config.signing_key_seal.open()?,
            command,
        ),
        Command::Audit { command, .. } => crate::admin::audit(&open_accounts(&config)?, command),
    }
}

/// The database of an account command (users, clients, keys, audit): it must exist, and a
/// warning says when the server running on the configured address uses another one.
fn open_accounts(config: &Config) -> Result<Store> {
    let url = DatabaseUrl::parse(config.database.expose())?;
    crate::checks::database_must_exist(&url)?;
    let store = open_store(config, true)?;
    crate::checks::warn_if_server_uses_another_database(config.listen, &store, &url);
    Ok(store)
}

fn init_logging(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_new(&config.log)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        // a closed stderr must not turn requests into 500s (the default reports write errors
        // with eprintln!, which panics)
        .log_internal_errors(false);
    if config.log_json {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn open_store(config: &Config, migrate: bool) -> Result<Store> {
    let url = DatabaseUrl::parse(config.database.expose())?;
    let store = Store::open(
        &url,
        &StoreOptions {
            connections: config.db_connections,
            migrate,
        },
        Arc::new(care::SystemClock),
    )
    .with_context(|| format!("cannot open the database {}", url.redacted()))?;
    Ok(store)
}

fn rest_api(config: &Config, store: Store) -> server::FhirApi {
    server::FhirApi::new(
        store,
        server::RestConfig {
            public_base_url: config.public_base_url.clone(),
            booking: std::sync::Arc::new(booking_config(config)),
            match_model: std::sync::Arc::new(server::app::matching::MatchModel::with_placeholders(
                &config.placeholder_names,
            )),
            search_limits: config.search_limits,
            referrals: std::sync::Arc::new(config.referrals.clone()),
            ..Default::default()
        },
    )
}

fn booking_config(config: &Config) -> server::app::booking::BookingConfig {
    let b = &config.booking;
    server::app::booking::BookingConfig {
        hold_minutes: b.hold_minutes,
        waitlist_offer_minutes: b.waitlist_offer_minutes,
        video_url_template: b.video_url_template.clone(),
        join_opens_minutes: b.join_opens_minutes,
        reminders: care::notify::ReminderConfig {
            hours_before: b.reminder_hours.clone(),
        },
    }
}

fn notifier(config: &Config) -> Result<server::notify::Notifier> {
    use crate::config::NotifySettings;
    let transport = match &config.notify {
        NotifySettings::Log => server::notify::Transport::Log,
        NotifySettings::Webhook { url, secret } => server::notify::Transport::Webhook {
            url: url.clone(),
            secret: secret.expose().to_string(),
        },
        NotifySettings::Smtp { url, from } => {
            server::notify::Transport::smtp(url.expose(), from).map_err(anyhow::Error::msg)?
        }
    };
    let mut notifier = server::notify::Notifier::new(transport);
    notifier.rest_hook_window_ms = config.subscription_retry_hours as i64 * 3_600_000;
    Ok(notifier)
}

/// Loads the demo alliance once (then tops up its slots).
async fn load_demo(config: &Config, store: &Store) -> Result<()> {
    let api = rest_api(config, store.clone());
    let start = std::time::Instant::now();
    match server::demo::load(&api, SLOT_WEEKS).await? {
        Some(loaded) => {
            // fresh statistics for the planner after the bulk load (PostgreSQL would otherwise
            // plan the first searches over empty-table estimates until autovacuum catches up)
            store.analyze().await?;
            eprintln!(
                "demo alliance loaded: {} resources, {} slots for {} schedules, {} duplicate patients linked and {} pairs for identity review ({:.1} s) — illustrative data, not real people",
                loaded.resources,
                loaded.slots.created,
                loaded.slots.schedules,
                loaded.identity.linked,
                loaded.identity.for_review,
                start.elapsed().as_secs_f64()
            )
        }
        None => eprintln!("demo alliance already loaded (slots topped up)"),
    }
    Ok(())
}

/// Creates the demo API client once; its `id:secret` goes to a file readable by the owner.
fn ensure_demo_client(config: &Config, store: &Store) -> Result<()> {
    let path = demo_credentials_path(config);
    if !path.exists() {
        let (id, secret) =
            crate::admin::create_client(store, "demo", "system/*.cruds", vec![], vec![])?;
        crate::admin::write_credentials(&path, &id, &secret)?;
        eprintln!(
            "demo API client written to {} (use it as curl -u \"$(cat {})\" …/auth/token)",
            path.display(),
            path.display()
        );
    }
    Ok(())
}

/// Creates the demo's console users once (their passwords generated and kept, readable by the
/// owner only, beside the demo client's file); returns the file's lines to print at start.
fn ensure_demo_users(config: &Config, store: &Store) -> Result<(PathBuf, String)> {
    let path = demo_file(config, "demo-users");
    let lines = crate::admin::ensure_demo_users(store, &path)?;
    Ok((path, lines))
}

/// Where the demo client's `id:secret` is kept: beside the SQLite file, or in the working
/// directory for PostgreSQL.
fn demo_credentials_path(config: &Config) -> PathBuf {
    demo_file(config, "demo-client")
}

fn demo_file(config: &Config, name: &str) -> PathBuf {
    match DatabaseUrl::parse(config.database.expose()) {
        Ok(DatabaseUrl::Sqlite(p)) => p
            .parent()
            .map(|d| d.join(name))
            .unwrap_or_else(|| PathBuf::from(name)),
        _ => PathBuf::from(format!("continuum-{name}")),
    }
}

async fn serve(config: Config, store: Store, demo_users: Option<(PathBuf, String)>) -> Result<()> {
    let server_config = server::ServerConfig {
        listen: config.listen,
        public_base_url: config.public_base_url.clone(),
        max_body_bytes: config.max_body_bytes,
        auth: server::auth::AuthConfig {
            audience: config
                .public_base_url
                .clone()
                .unwrap_or_else(|| "continuum".into()),
            secure_cookies: config.secure_cookies,
            oidc: config
                .oidc
                .clone()
                .map(
                    |(issuer, jwks_url, audience, roles_claim)| server::auth::oidc::OidcConfig {
                        issuer,
                        jwks_url,
                        audience,
                        roles_claim,
                    },
                ),
            key_seal: config.signing_key_seal.open()?,
            ..Default::default()
        },
        booking: booking_config(&config),
        referrals: config.referrals.clone(),
        placeholder_names: config.placeholder_names.clone(),
        search_limits: config.search_limits,
        request_budget: std::time::Duration::from_secs(config.request_budget_seconds as u64),
        mllp: match &config.mllp {
            None => None,
            Some(m) => {
                let mut c = server::mllp::MllpConfig::new(m.listen);
                c.max_message_bytes = m.max_message_bytes;
                if let Some((cert, key)) = &m.tls {
                    c.tls = Some(
                        server::mllp::tls_config(cert, key)
                            .map_err(|e| anyhow::anyhow!("MLLP over TLS: {e}"))?,
                    );
                }
                Some(c)
            }
        },
        export: std::sync::Arc::new({
            let mut e = server::app::export::ExportConfig::new(config.export_dir.clone());
            e.retention =
                std::time::Duration::from_secs(config.export_retention_hours as u64 * 3600);
            e
        }),
        // slot generation, the release of lapsed holds and notification delivery (the
        // library's scheduler, the same jobs the tests run)
        jobs: server::jobs::JobsConfig {
            run_at_start: true,
            notifier: Some(std::sync::Arc::new(notifier(&config)?)),
            notify_every: std::time::Duration::from_secs(config.notify_interval_seconds as u64),
        },
    };
    let (listener, addr) = server::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let started = server::start(store.clone(), &server_config)
        .await
        .context("cannot start")?;
    let app = started.router;
    tracing::info!(database = %store.description(), %addr, "listening");
    eprintln!(
        "Continuum is listening on http://{addr}/fhir  (database: {})",
        store.description()
    );
    if let Some(mllp) = started.mllp {
        eprintln!(
            "HL7 v2 (MLLP{}) is listening on {mllp}",
            if server_config.mllp.as_ref().is_some_and(|m| m.tls.is_some()) {
                " over TLS"
            } else {
                ""
            }
        );
    }
    // (stderr may already be closed by whoever started the server: these lines are not worth a
    // failure)
    use std::io::Write as _;
    let _ = writeln!(
        std::io::stderr(),
        "The console: open http://{addr}/ in a browser and sign in."
    );
    if let Some((path, users)) = &demo_users {
        let _ = writeln!(
            std::io::stderr(),
            "Demo users (user name, password, who; kept in {}):\n{}",
            path.display(),
            users
                .lines()
                .map(|l| format!("  {l}"))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    server::serve(listener, app, shutdown_signal())
        .await
        .context("server failed")?;
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

async fn import(config: Config, files: Vec<PathBuf>, dry_run: bool) -> Result<()> {
    let store = open_store(&config, true)?;
    let api = rest_api(&config, store);
    let start = std::time::Instant::now();
    let totals = crate::import::import_files(&api, &files, dry_run).await?;
    let secs = start.elapsed().as_secs_f64();
    const SHOWN: usize = 50;
    for r in totals.rejected.iter().take(SHOWN) {
        eprintln!("refused {}: {}", r.origin, r.reason);
    }
    if totals.rejected.len() > SHOWN {
        eprintln!("… and {} more refused", totals.rejected.len() - SHOWN);
    }
    if dry_run {
        println!(
            "dry run: {} resources would be imported, {} refused; nothing was written",
            totals.stored,
            totals.rejected.len()
        );
        if !totals.rejected.is_empty() {
            bail!("{} would be refused", totals.rejected.len());
        }
        return Ok(());
    }
    api.store()
        .analyze()
        .await
        .context("cannot refresh the planner statistics")?;
    println!(
        "imported {} resources in {:.1} s ({:.0}/s); {} refused (not imported)",
        totals.stored,
        secs,
        totals.stored as f64 / secs.max(1e-9),
        totals.rejected.len()
    );
    // the bulk path does not link as it writes: link the imported Patients with each other
    // and with the ones already stored, in one run of the batch engine
    if totals.bulk_patients > 0 {
        let bar = indicatif::ProgressBar::new_spinner();
        bar.enable_steady_tick(std::time::Duration::from_millis(120));
        bar.set_message("linking patient identities (blocking, comparing, estimating the model)");
        let start = std::time::Instant::now();
        let linked = server::app::linkage::link_all_patients(&api)
            .await
            .map_err(|e| anyhow::anyhow!("identity linkage failed: {e}"))?;
        bar.finish_and_clear();
        println!(
            "identity linkage over {} patients in {:.1} s: {} linked, {} for review",
            linked.patients,
            start.elapsed().as_secs_f64(),
            linked.linked,
            linked.for_review
        );
    }
    if !totals.rejected.is_empty() {
        bail!(
            "{} refused (listed above, in file order)",
            totals.rejected.len()
        );
    }
    Ok(())
}

fn migrate(config: Config) -> Result<()> {
    let url = DatabaseUrl::parse(config.database.expose())?;
    let _store = open_store(&config, true)?;
    println!(
        "{} is at schema version {}",
        url.redacted(),
        store::migrations::latest_version()
    );
    Ok(())
}
