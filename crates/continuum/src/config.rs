//! Layered configuration: defaults → TOML file → `CONTINUUM_*` environment → command-line
//! flags. The database URL is kept wrapped so a password never reaches a log.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::Deserialize;

/// The default embedded database.
pub const DEFAULT_DATABASE: &str = "sqlite://./continuum-data/continuum.db";

/// A value that must not be printed (it may hold a password).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// The settings a TOML file may hold (all optional; unknown keys are an error).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub database: Option<String>,
    pub listen: Option<String>,
    pub public_base_url: Option<String>,
    pub max_body_bytes: Option<usize>,
    pub db_connections: Option<usize>,
    pub log: Option<String>,
    pub log_format: Option<String>,
    pub secure_cookies: Option<bool>,
    pub oidc_issuer: Option<String>,
    pub oidc_jwks_url: Option<String>,
    pub oidc_audience: Option<String>,
    pub oidc_roles_claim: Option<String>,
    pub hold_minutes: Option<usize>,
    pub waitlist_offer_minutes: Option<usize>,
    pub video_url_template: Option<String>,
    pub video_join_opens_minutes: Option<usize>,
    pub reminder_hours: Option<Vec<usize>>,
    pub notify_transport: Option<String>,
    pub notify_webhook_url: Option<String>,
    pub notify_webhook_secret: Option<String>,
    pub smtp_url: Option<String>,
    pub smtp_from: Option<String>,
    pub notify_interval_seconds: Option<usize>,
    /// How long a Subscription's notification is retried before the Subscription is put in
    /// `error` (hours, default 24).
    pub subscription_retry_hours: Option<usize>,
    pub signing_key_secret: Option<String>,
    pub signing_key_file: Option<String>,
    pub placeholder_names: Option<Vec<String>>,
    pub max_search_terms: Option<usize>,
    pub max_search_values: Option<usize>,
    pub request_budget_seconds: Option<usize>,
    pub max_array_items: Option<usize>,
    pub max_index_entries: Option<usize>,
    pub max_bundle_entries: Option<usize>,
    /// Business days to accept, book and see a referral, per priority:
    /// `{ routine = [3, 14, 30], urgent = [1, 3, 7], asap = [1, 2, 3], stat = [0, 0, 0] }`.
    pub referral_service_levels: Option<std::collections::BTreeMap<String, Vec<u32>>>,
    /// Days that are not business days (`YYYY-MM-DD`), beyond weekends.
    pub referral_holidays: Option<Vec<String>>,
    /// The HL7 v2 listener (MLLP): its address, largest message, TLS certificate and key.
    pub mllp_listen: Option<String>,
    pub mllp_max_message_bytes: Option<usize>,
    pub mllp_tls_cert: Option<String>,
    pub mllp_tls_key: Option<String>,
    /// Bulk Data export: the folder of its files, and how long a finished export's files are
    /// kept (hours, default 24).
    pub export_dir: Option<String>,
    pub export_retention_hours: Option<usize>,
}

/// Flags given on the command line (`None` when not given).
#[derive(Debug, Default, Clone)]
pub struct FlagConfig {
    pub database: Option<String>,
    pub listen: Option<String>,
    pub public_base_url: Option<String>,
    pub max_body_bytes: Option<usize>,
    pub mllp_listen: Option<String>,
    pub mllp_tls_cert: Option<String>,
    pub mllp_tls_key: Option<String>,
}

/// The HL7 v2 listener's settings.
#[derive(Debug, Clone)]
pub struct MllpSettings {
    pub listen: SocketAddr,
    pub max_message_bytes: usize,
    /// PEM certificate chain and private key, for MLLP over TLS.
    pub tls: Option<(std::path::PathBuf, std::path::PathBuf)>,
}

/// The resolved configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub database: Secret,
    pub listen: SocketAddr,
    pub public_base_url: Option<String>,
    pub max_body_bytes: usize,
    /// The HL7 v2 listener, when configured (`--mllp`, `CONTINUUM_MLLP_LISTEN`).
    pub mllp: Option<MllpSettings>,
    pub db_connections: usize,
    pub log: String,
    pub log_json: bool,
    /// Mark session cookies `Secure` (default true; turn off only behind plain-HTTP test rigs).
    pub secure_cookies: bool,
    /// `CONTINUUM_ADMIN_PASSWORD`: creates the first administrator when there is none.
    pub admin_password: Option<Secret>,
    /// An external OpenID Connect issuer: (issuer, JWKS URL, audience, roles claim).
    pub oidc: Option<(String, String, String, String)>,
    /// Holds, video visits, the waitlist and reminders.
    pub booking: BookingSettings,
    /// How notifications leave the server.
    pub notify: NotifySettings,
    pub notify_interval_seconds: usize,
    pub subscription_retry_hours: usize,
    /// Bulk Data export files: their folder and how long they are kept (hours).
    pub export_dir: PathBuf,
    pub export_retention_hours: usize,
    /// What seals the token signing keys at rest.
    pub signing_key_seal: KeySealSource,
    /// Given-name words that mark an unnamed newborn, beyond the built-in list (Baby, Boy,
    /// Girl, Infant, Newborn, Twin, …).
    pub placeholder_names: Vec<String>,
    /// How large one search may be.
    pub search_limits: fhir::search::SearchLimits,
    /// How long one request may hold the database before it is stopped (503, rolled back).
    pub request_budget_seconds: usize,
    /// How large one resource or Bundle may be.
    pub resource_limits: fhir::validate::ResourceLimits,
    /// Referral service levels and the business calendar.
    pub referrals: server::app::referrals::ReferralConfig,
    /// Problems worth a warning once logging is up (unknown `CONTINUUM_` variables).
    pub warnings: Vec<String>,
}

/// Booking settings (see the README, "Configuration").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BookingSettings {
    pub hold_minutes: i64,
    pub waitlist_offer_minutes: i64,
    pub video_url_template: String,
    pub join_opens_minutes: i64,
    pub reminder_hours: Vec<i64>,
}

/// The notification transport: `log`, `webhook` (URL and HMAC secret) or `smtp` (URL and From).
#[derive(Debug, Clone)]
pub enum NotifySettings {
    Log,
    Webhook { url: String, secret: Secret },
    Smtp { url: Secret, from: String },
}

/// Where the key that seals the token signing keys comes from: a configured secret, or a file
/// of random bytes (created on first start) beside the SQLite database — or, for PostgreSQL, in
/// the working directory.
#[derive(Debug, Clone)]
pub enum KeySealSource {
    Secret(Secret),
    File(PathBuf),
}

impl KeySealSource {
    pub fn open(&self) -> Result<server::auth::seal::KeySeal> {
        match self {
            KeySealSource::Secret(s) => Ok(server::auth::seal::KeySeal::from_secret(s.expose())),
            KeySealSource::File(p) => Ok(server::auth::seal::KeySeal::from_file(p)?),
        }
    }
}

/// How often the notification worker looks for due messages.
pub const DEFAULT_NOTIFY_INTERVAL_SECONDS: usize = 15;

const ENV_KEYS: &[&str] = &[
    "CONTINUUM_CONFIG",
    "CONTINUUM_DATABASE_URL",
    "CONTINUUM_LISTEN",
    "CONTINUUM_PUBLIC_BASE_URL",
    "CONTINUUM_MAX_BODY_BYTES",
    "CONTINUUM_DB_CONNECTIONS",
    "CONTINUUM_LOG",
    "CONTINUUM_LOG_FORMAT",
    "CONTINUUM_ADMIN_PASSWORD",
    "CONTINUUM_SECURE_COOKIES",
    "CONTINUUM_OIDC_ISSUER",
    "CONTINUUM_OIDC_JWKS_URL",
    "CONTINUUM_OIDC_AUDIENCE",
    "CONTINUUM_OIDC_ROLES_CLAIM",
    "CONTINUUM_HOLD_MINUTES",
    "CONTINUUM_WAITLIST_OFFER_MINUTES",
    "CONTINUUM_VIDEO_URL_TEMPLATE",
    "CONTINUUM_VIDEO_JOIN_OPENS_MINUTES",
    "CONTINUUM_REMINDER_HOURS",
    "CONTINUUM_REFERRAL_HOLIDAYS",
    "CONTINUUM_NOTIFY_TRANSPORT",
    "CONTINUUM_NOTIFY_WEBHOOK_URL",
    "CONTINUUM_NOTIFY_WEBHOOK_SECRET",
    "CONTINUUM_SMTP_URL",
    "CONTINUUM_SMTP_FROM",
    "CONTINUUM_NOTIFY_INTERVAL_SECONDS",
    "CONTINUUM_SIGNING_KEY_SECRET",
    "CONTINUUM_SIGNING_KEY_FILE",
    "CONTINUUM_PLACEHOLDER_NAMES",
    "CONTINUUM_MAX_SEARCH_TERMS",
    "CONTINUUM_MAX_SEARCH_VALUES",
    "CONTINUUM_REQUEST_BUDGET_SECONDS",
    "CONTINUUM_MAX_ARRAY_ITEMS",
    "CONTINUUM_MAX_INDEX_ENTRIES",
    "CONTINUUM_MAX_BUNDLE_ENTRIES",
    "CONTINUUM_SUBSCRIPTION_RETRY_HOURS",
    "CONTINUUM_MLLP_LISTEN",
    "CONTINUUM_MLLP_MAX_MESSAGE_BYTES",
    "CONTINUUM_MLLP_TLS_CERT",
    "CONTINUUM_MLLP_TLS_KEY",
    "CONTINUUM_EXPORT_DIR",
    "CONTINUUM_EXPORT_RETENTION_HOURS",
];

/// Variables the project's scripts and tests read, not the server: never warned about.
const TOOL_KEYS: &[&str] = &[
    "CONTINUUM_BIN",
    "CONTINUUM_EXAMPLES_DIR",
    "CONTINUUM_FHIR_URL",
    "CONTINUUM_CLIENT_ID",
    "CONTINUUM_CLIENT_SECRET",
    "CONTINUUM_MLLP_PORT",
];

impl Config {
    /// Resolves the layers. `config_file` is `--config`; without it `CONTINUUM_CONFIG`, then
    /// `./continuum.toml` if present.
    pub fn load(
        config_file: Option<&Path>,
        env: &HashMap<String, String>,
        flags: &FlagConfig,
    ) -> Result<Config> {
        let mut warnings = Vec::new();
        for key in env.keys().filter(|k| k.starts_with("CONTINUUM_")) {
            if !ENV_KEYS.contains(&key.as_str())
                && !key.starts_with("CONTINUUM_TEST_")
                && !TOOL_KEYS.contains(&key.as_str())
            {
                warnings.push(format!(
                    "unknown environment variable {key} (known: {})",
                    ENV_KEYS.join(", ")
                ));
            }
        }
        let path: Option<PathBuf> = config_file
            .map(Path::to_path_buf)
            .or_else(|| env.get("CONTINUUM_CONFIG").map(PathBuf::from))
            .or_else(|| Some(PathBuf::from("continuum.toml")).filter(|p| p.exists()));
        let file: FileConfig = match &path {
            Some(p) => {
                let text = std::fs::read_to_string(p).with_context(|| {
                    format!("cannot read the configuration file {}", p.display())
                })?;
                toml::from_str(&text)
                    .with_context(|| format!("invalid configuration file {}", p.display()))?
            }
            None => FileConfig::default(),
        };
        let referrals = referral_settings(
            file.referral_service_levels.as_ref(),
            file.referral_holidays.as_ref(),
            env,
        )?;
        let pick =
            |flag: &Option<String>, env_key: &str, file: &Option<String>| -> Option<String> {
                flag.clone()
                    .or_else(|| env.get(env_key).cloned())
                    .or_else(|| file.clone())
            };
        let database = pick(&flags.database, "CONTINUUM_DATABASE_URL", &file.database)
            .unwrap_or_else(|| DEFAULT_DATABASE.to_string());
        let listen_text = pick(&flags.listen, "CONTINUUM_LISTEN", &file.listen)
            .unwrap_or_else(|| "127.0.0.1:8080".to_string());
        let listen: SocketAddr = listen_text
            .parse()
            .with_context(|| format!("listen address '{listen_text}' is not HOST:PORT (e.g. 127.0.0.1:8080 or 0.0.0.0:8080)"))?;
        let public_base_url = pick(
            &flags.public_base_url,
            "CONTINUUM_PUBLIC_BASE_URL",
            &file.public_base_url,
        );
        if let Some(u) = &public_base_url
            && !(u.starts_with("http://") || u.starts_with("https://"))
        {
            bail!("public base URL '{u}' must start with http:// or https://");
        }
        let number = |flag: Option<usize>,
                      key: &str,
                      file: Option<usize>,
                      default: usize|
         -> Result<usize> {
            if let Some(v) = flag {
                return Ok(v);
            }
            if let Some(v) = env.get(key) {
                return v
                    .parse()
                    .with_context(|| format!("{key}='{v}' is not a whole number"));
            }
            Ok(file.unwrap_or(default))
        };
        let max_body_bytes = number(
            flags.max_body_bytes,
            "CONTINUUM_MAX_BODY_BYTES",
            file.max_body_bytes,
            16 * 1024 * 1024,
        )?;
        let mllp = match pick(
            &flags.mllp_listen,
            "CONTINUUM_MLLP_LISTEN",
            &file.mllp_listen,
        ) {
            None => None,
            Some(text) => {
                let listen: SocketAddr = text.parse().with_context(|| {
                    format!("MLLP listen address '{text}' is not HOST:PORT (e.g. 127.0.0.1:2575)")
                })?;
                let max_message_bytes = number(
                    None,
                    "CONTINUUM_MLLP_MAX_MESSAGE_BYTES",
                    file.mllp_max_message_bytes,
                    1024 * 1024,
                )?;
                let cert = pick(
                    &flags.mllp_tls_cert,
                    "CONTINUUM_MLLP_TLS_CERT",
                    &file.mllp_tls_cert,
                );
                let key = pick(
                    &flags.mllp_tls_key,
                    "CONTINUUM_MLLP_TLS_KEY",
                    &file.mllp_tls_key,
                );
                let tls = match (cert, key) {
                    (Some(c), Some(k)) => Some((c.into(), k.into())),
                    (None, None) => None,
                    _ => bail!(
                        "MLLP over TLS needs both a certificate (mllp_tls_cert) and its key (mllp_tls_key)"
                    ),
                };
                Some(MllpSettings {
                    listen,
                    max_message_bytes,
                    tls,
                })
            }
        };
        let db_connections = number(None, "CONTINUUM_DB_CONNECTIONS", file.db_connections, 4)?;
        if db_connections == 0 {
            bail!("db_connections must be at least 1");
        }
        let defaults = fhir::search::SearchLimits::default();
        let terms = number(
            None,
            "CONTINUUM_MAX_SEARCH_TERMS",
            file.max_search_terms,
            defaults.terms,
        )?;
        let values = number(
            None,
            "CONTINUUM_MAX_SEARCH_VALUES",
            file.max_search_values,
            defaults.values,
        )?;
        // a term nests about two levels of SQL expression and a value one; SQLite refuses an
        // expression more than 1,000 deep
        if terms == 0 || values == 0 || 2 * terms + values > 800 {
            bail!(
                "max_search_terms ({terms}) and max_search_values ({values}) must be at least 1, with twice the terms plus the values at most 800 (the depth a query's SQL may reach)"
            );
        }
        let request_budget_seconds = number(
            None,
            "CONTINUUM_REQUEST_BUDGET_SECONDS",
            file.request_budget_seconds,
            30,
        )?;
        if request_budget_seconds == 0 {
            bail!("request_budget_seconds must be at least 1");
        }
        let sizes = fhir::validate::ResourceLimits::default();
        let resource_limits = fhir::validate::ResourceLimits {
            array_items: number(
                None,
                "CONTINUUM_MAX_ARRAY_ITEMS",
                file.max_array_items,
                sizes.array_items,
            )?,
            index_entries: number(
                None,
                "CONTINUUM_MAX_INDEX_ENTRIES",
                file.max_index_entries,
                sizes.index_entries,
            )?,
            bundle_entries: number(
                None,
                "CONTINUUM_MAX_BUNDLE_ENTRIES",
                file.max_bundle_entries,
                sizes.bundle_entries,
            )?,
        };
        if resource_limits.array_items == 0
            || resource_limits.index_entries == 0
            || resource_limits.bundle_entries == 0
        {
            bail!("max_array_items, max_index_entries and max_bundle_entries must be at least 1");
        }
        let search_limits = fhir::search::SearchLimits {
            terms,
            values,
            total_values: defaults.total_values.max(values),
            ..defaults
        };
        let log = env
            .get("CONTINUUM_LOG")
            .cloned()
            .or(file.log)
            .unwrap_or_else(|| "info".into());
        let log_format = env
            .get("CONTINUUM_LOG_FORMAT")
            .cloned()
            .or(file.log_format)
            .unwrap_or_else(|| "text".into());
        let log_json = match log_format.as_str() {
            "json" => true,
            "text" => false,
            other => bail!("log format '{other}' is not text or json"),
        };
        let secure_cookies = match env.get("CONTINUUM_SECURE_COOKIES").map(String::as_str) {
            Some("false" | "0" | "no") => false,
            Some("true" | "1" | "yes") | None => file.secure_cookies.unwrap_or(true),
            Some(other) => bail!("CONTINUUM_SECURE_COOKIES='{other}' is not true or false"),
        };
        let minutes = |key: &str, file: Option<usize>, default: usize| -> Result<i64> {
            let v = number(None, key, file, default)?;
            if v == 0 || v > 7 * 24 * 60 {
                bail!("{key} must be between 1 and 10080 minutes (got {v})");
            }
            Ok(v as i64)
        };
        let text_setting =
            |key: &str, file: &Option<String>| env.get(key).cloned().or_else(|| file.clone());
        let video_url_template =
            text_setting("CONTINUUM_VIDEO_URL_TEMPLATE", &file.video_url_template)
                .unwrap_or_else(|| "https://meet.jit.si/continuum-{room}".into());
        if !video_url_template.contains("{room}")
            || !(video_url_template.starts_with("https://")
                || video_url_template.starts_with("http://"))
        {
            bail!(
                "video_url_template '{video_url_template}' must be an http(s) URL containing {{room}}"
            );
        }
        let reminder_hours: Vec<i64> = match env.get("CONTINUUM_REMINDER_HOURS") {
            Some(v) => v
                .split(',')
                .filter(|s| !s.trim().is_empty())
                .map(|h| h.trim().parse::<i64>().with_context(|| format!("CONTINUUM_REMINDER_HOURS='{v}' is not a list of whole hours (e.g. 72,24)")))
                .collect::<Result<_>>()?,
            None => file
                .reminder_hours
                .clone()
                .map(|v| v.into_iter().map(|h| h as i64).collect())
                .unwrap_or_else(|| vec![72, 24]),
        };
        if reminder_hours.iter().any(|h| *h <= 0 || *h > 24 * 60) {
            bail!("reminder hours must be between 1 and 1440");
        }
        let booking = BookingSettings {
            hold_minutes: minutes("CONTINUUM_HOLD_MINUTES", file.hold_minutes, 10)?,
            waitlist_offer_minutes: minutes(
                "CONTINUUM_WAITLIST_OFFER_MINUTES",
                file.waitlist_offer_minutes,
                30,
            )?,
            video_url_template,
            join_opens_minutes: minutes(
                "CONTINUUM_VIDEO_JOIN_OPENS_MINUTES",
                file.video_join_opens_minutes,
                15,
            )?,
            reminder_hours,
        };
        let transport = text_setting("CONTINUUM_NOTIFY_TRANSPORT", &file.notify_transport)
            .unwrap_or_else(|| "log".into());
        let notify = match transport.as_str() {
            "log" => NotifySettings::Log,
            "webhook" => {
                let url = text_setting("CONTINUUM_NOTIFY_WEBHOOK_URL", &file.notify_webhook_url)
                    .context("the webhook transport needs notify_webhook_url")?;
                if !(url.starts_with("https://") || url.starts_with("http://")) {
                    bail!("notify_webhook_url '{url}' must be an http(s) URL");
                }
                let secret = text_setting(
                    "CONTINUUM_NOTIFY_WEBHOOK_SECRET",
                    &file.notify_webhook_secret,
                )
                .context("the webhook transport needs notify_webhook_secret (the HMAC key)")?;
                if secret.len() < 16 {
                    bail!("notify_webhook_secret must be at least 16 characters");
                }
                NotifySettings::Webhook {
                    url,
                    secret: Secret(secret),
                }
            }
            "smtp" => NotifySettings::Smtp {
                url: Secret(text_setting("CONTINUUM_SMTP_URL", &file.smtp_url).context(
                    "the smtp transport needs smtp_url (smtp://host:25 or smtps://user:pass@host)",
                )?),
                from: text_setting("CONTINUUM_SMTP_FROM", &file.smtp_from)
                    .context("the smtp transport needs smtp_from (an e-mail address)")?,
            },
            other => bail!("notify_transport '{other}' is not log, webhook or smtp"),
        };
        let notify_interval_seconds = number(
            None,
            "CONTINUUM_NOTIFY_INTERVAL_SECONDS",
            file.notify_interval_seconds,
            DEFAULT_NOTIFY_INTERVAL_SECONDS,
        )?
        .max(1);
        let subscription_retry_hours = number(
            None,
            "CONTINUUM_SUBSCRIPTION_RETRY_HOURS",
            file.subscription_retry_hours,
            24,
        )?
        .max(1);
        let export_retention_hours = number(
            None,
            "CONTINUUM_EXPORT_RETENTION_HOURS",
            file.export_retention_hours,
            24,
        )?
        .max(1);
        let export_dir = text_setting("CONTINUUM_EXPORT_DIR", &file.export_dir)
            .map(PathBuf::from)
            .unwrap_or_else(|| default_export_dir(&database));
        let signing_key_seal = match (
            text_setting("CONTINUUM_SIGNING_KEY_SECRET", &file.signing_key_secret),
            text_setting("CONTINUUM_SIGNING_KEY_FILE", &file.signing_key_file),
        ) {
            (Some(_), Some(_)) => {
                bail!("give either signing_key_secret or signing_key_file, not both")
            }
            (Some(secret), None) => {
                if secret.chars().count() < 32 {
                    bail!("signing_key_secret must be at least 32 characters");
                }
                KeySealSource::Secret(Secret(secret))
            }
            (None, Some(path)) => KeySealSource::File(PathBuf::from(path)),
            (None, None) => KeySealSource::File(default_seal_file(&database)),
        };
        let placeholder_names = match env.get("CONTINUUM_PLACEHOLDER_NAMES") {
            Some(list) => list
                .split(',')
                .map(str::trim)
                .filter(|w| !w.is_empty())
                .map(str::to_string)
                .collect(),
            None => file.placeholder_names.clone().unwrap_or_default(),
        };
        Ok(Config {
            placeholder_names,
            signing_key_seal,
            booking,
            referrals,
            notify,
            notify_interval_seconds,
            subscription_retry_hours,
            export_dir,
            export_retention_hours,
            secure_cookies,
            admin_password: env.get("CONTINUUM_ADMIN_PASSWORD").cloned().map(Secret),
            oidc: {
                let get = |key: &str, file: &Option<String>| {
                    env.get(key).cloned().or_else(|| file.clone())
                };
                match (
                    get("CONTINUUM_OIDC_ISSUER", &file.oidc_issuer),
                    get("CONTINUUM_OIDC_JWKS_URL", &file.oidc_jwks_url),
                ) {
                    (Some(issuer), Some(jwks)) => Some((
                        issuer,
                        jwks,
                        get("CONTINUUM_OIDC_AUDIENCE", &file.oidc_audience)
                            .unwrap_or_else(|| "continuum".into()),
                        get("CONTINUUM_OIDC_ROLES_CLAIM", &file.oidc_roles_claim)
                            .unwrap_or_else(|| "continuum_roles".into()),
                    )),
                    (None, None) => None,
                    _ => bail!("an OpenID Connect issuer needs both oidc_issuer and oidc_jwks_url"),
                }
            },
            database: Secret(database),
            listen,
            public_base_url,
            max_body_bytes,
            mllp,
            db_connections,
            log,
            log_json,
            search_limits,
            request_budget_seconds,
            resource_limits,
            warnings,
        })
    }
}

/// The default folder of Bulk Data export files: `exports` beside the SQLite file; for
/// PostgreSQL, beside the database's default sealing-key file in the user's data folder.
fn default_export_dir(database: &str) -> PathBuf {
    let key = default_seal_file(database);
    let stem = key
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("signing-key")
        .replacen("signing-key", "exports", 1);
    key.with_file_name(stem)
}

/// The default sealing-key file: beside the SQLite file; for PostgreSQL, one file per database
/// (named by a digest of its URL without the password) in the user's data folder
/// (`$XDG_DATA_HOME/continuum` or `~/.local/share/continuum`), so that every command on one
/// machine finds the same key whatever its working directory.
fn default_seal_file(database: &str) -> PathBuf {
    match store::DatabaseUrl::parse(database) {
        Ok(store::DatabaseUrl::Sqlite(p)) => p
            .parent()
            .map(|d| d.join("signing-key.secret"))
            .unwrap_or_else(|| PathBuf::from("signing-key.secret")),
        _ => {
            use sha2::Digest as _;
            // the URL without its password: user@host:port/db names the database
            let without_password = match database.split_once("://") {
                Some((scheme, rest)) => match rest.rsplit_once('@') {
                    Some((userinfo, host)) => {
                        let user = userinfo.split(':').next().unwrap_or("");
                        format!("{scheme}://{user}@{host}")
                    }
                    None => database.to_string(),
                },
                None => database.to_string(),
            };
            let digest = sha2::Sha256::digest(without_password.as_bytes());
            let name: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
            let base = std::env::var_os("XDG_DATA_HOME")
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
                .unwrap_or_else(|| PathBuf::from("."));
            base.join("continuum")
                .join(format!("signing-key-{name}.secret"))
        }
    }
}

/// The referral service levels (`referral_service_levels`, per priority three business-day
/// counts: accept, book, seen) and holidays (`referral_holidays` or
/// `CONTINUUM_REFERRAL_HOLIDAYS`, comma-separated dates).
fn referral_settings(
    levels_file: Option<&std::collections::BTreeMap<String, Vec<u32>>>,
    holidays_file: Option<&Vec<String>>,
    env: &std::collections::HashMap<String, String>,
) -> Result<server::app::referrals::ReferralConfig> {
    let mut levels = care::referral::ServiceLevels::default();
    for (priority, days) in levels_file.into_iter().flatten() {
        let [accept, book, seen] = days.as_slice() else {
            bail!(
                "referral_service_levels.{priority} needs three business-day counts: accept, book, seen (e.g. [3, 14, 30])"
            );
        };
        if !(accept <= book && book <= seen) || *seen > 365 {
            bail!(
                "referral_service_levels.{priority}: the days to accept, book and see must not decrease, and stay within 365"
            );
        }
        let l = care::referral::service_level::Levels {
            accept: *accept,
            book: *book,
            seen: *seen,
        };
        match care::referral::Priority::parse(priority) {
            Some(care::referral::Priority::Routine) => levels.routine = l,
            Some(care::referral::Priority::Urgent) => levels.urgent = l,
            Some(care::referral::Priority::Asap) => levels.asap = l,
            Some(care::referral::Priority::Stat) => levels.stat = l,
            None => bail!(
                "referral_service_levels: '{priority}' is not a priority (routine, urgent, asap, stat)"
            ),
        }
    }
    let holidays: Vec<String> = match env.get("CONTINUUM_REFERRAL_HOLIDAYS") {
        Some(v) => v
            .split(',')
            .map(|d| d.trim().to_string())
            .filter(|d| !d.is_empty())
            .collect(),
        None => holidays_file.cloned().unwrap_or_default(),
    };
    let calendar = care::referral::Calendar::with_holidays(holidays.iter().map(String::as_str))
        .map_err(anyhow::Error::msg)?;
    Ok(server::app::referrals::ReferralConfig { levels, calendar })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn the_signing_key_seal_file_is_beside_sqlite_and_per_database_for_postgres() {
        assert_eq!(
            default_seal_file("sqlite://./data/c.db"),
            PathBuf::from("./data/signing-key.secret")
        );
        let a = default_seal_file("postgres://u:one@db:5432/alliance");
        let b = default_seal_file("postgres://u:two@db:5432/alliance");
        let c = default_seal_file("postgres://u:one@db:5432/other");
        assert_eq!(a, b, "the password does not name the database");
        assert_ne!(a, c);
        assert!(a.to_string_lossy().contains("continuum/signing-key-"));
        let c = Config::load(
            None,
            &env(&[("CONTINUUM_SIGNING_KEY_SECRET", "too short")]),
            &FlagConfig::default(),
        );
        assert!(c.is_err());
    }

    #[test]
    fn the_mllp_listener_is_off_unless_configured_and_tls_needs_both_files() {
        let c = Config::load(None, &env(&[]), &FlagConfig::default()).unwrap();
        assert!(c.mllp.is_none());
        assert_eq!(c.subscription_retry_hours, 24);
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(
            &file,
            "mllp_listen = \"127.0.0.1:2575\"\nmllp_max_message_bytes = 2048\nsubscription_retry_hours = 48\n",
        )
        .unwrap();
        let c = Config::load(Some(&file), &env(&[]), &FlagConfig::default()).unwrap();
        let m = c.mllp.unwrap();
        assert_eq!((m.listen.port(), m.max_message_bytes), (2575, 2048));
        assert!(m.tls.is_none());
        assert_eq!(c.subscription_retry_hours, 48);
        // the flag wins over the file; TLS with a certificate and no key is refused
        let flags = FlagConfig {
            mllp_listen: Some("127.0.0.1:2600".into()),
            mllp_tls_cert: Some("cert.pem".into()),
            ..Default::default()
        };
        assert!(Config::load(Some(&file), &env(&[]), &flags).is_err());
        let flags = FlagConfig {
            mllp_tls_key: Some("key.pem".into()),
            ..flags
        };
        let c = Config::load(Some(&file), &env(&[]), &flags).unwrap();
        let m = c.mllp.unwrap();
        assert_eq!(m.listen.port(), 2600);
        assert!(m.tls.is_some());
        assert!(
            Config::load(
                None,
                &env(&[("CONTINUUM_MLLP_LISTEN", "nowhere")]),
                &FlagConfig::default()
            )
            .is_err()
        );
    }

    #[test]
    fn layers_apply_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(
            &file,
            "database = \"sqlite://file.db\"\nlisten = \"127.0.0.1:9000\"\nmax_body_bytes = 10\n",
        )
        .unwrap();
        let c = Config::load(Some(&file), &env(&[]), &FlagConfig::default()).unwrap();
        assert_eq!(c.database.expose(), "sqlite://file.db");
        assert_eq!(c.listen.port(), 9000);
        assert_eq!(c.max_body_bytes, 10);
        let c = Config::load(
            Some(&file),
            &env(&[("CONTINUUM_DATABASE_URL", "sqlite://env.db")]),
            &FlagConfig::default(),
        )
        .unwrap();
        assert_eq!(c.database.expose(), "sqlite://env.db");
        let flags = FlagConfig {
            database: Some("sqlite://flag.db".into()),
            ..Default::default()
        };
        let c = Config::load(
            Some(&file),
            &env(&[("CONTINUUM_DATABASE_URL", "sqlite://env.db")]),
            &flags,
        )
        .unwrap();
        assert_eq!(c.database.expose(), "sqlite://flag.db");
        assert_eq!(format!("{:?}", c.database), "Secret(***)");
    }

    #[test]
    fn booking_and_notification_settings() {
        let c = Config::load(None, &env(&[]), &FlagConfig::default()).unwrap();
        assert_eq!(c.booking.hold_minutes, 10);
        assert_eq!(c.booking.waitlist_offer_minutes, 30);
        assert_eq!(c.booking.join_opens_minutes, 15);
        assert_eq!(c.booking.reminder_hours, vec![72, 24]);
        assert!(matches!(c.notify, NotifySettings::Log));
        let c = Config::load(
            None,
            &env(&[
                ("CONTINUUM_HOLD_MINUTES", "5"),
                ("CONTINUUM_REMINDER_HOURS", "48, 2"),
                (
                    "CONTINUUM_VIDEO_URL_TEMPLATE",
                    "https://video.example.org/r/{room}",
                ),
                ("CONTINUUM_NOTIFY_TRANSPORT", "webhook"),
                (
                    "CONTINUUM_NOTIFY_WEBHOOK_URL",
                    "https://hooks.example.org/in",
                ),
                ("CONTINUUM_NOTIFY_WEBHOOK_SECRET", "0123456789abcdef0123"),
            ]),
            &FlagConfig::default(),
        )
        .unwrap();
        assert_eq!(c.booking.hold_minutes, 5);
        assert_eq!(c.booking.reminder_hours, vec![48, 2]);
        assert!(format!("{:?}", c.notify).contains("Secret(***)"));
        for bad in [
            vec![("CONTINUUM_HOLD_MINUTES", "0")],
            vec![(
                "CONTINUUM_VIDEO_URL_TEMPLATE",
                "https://video.example.org/no-room",
            )],
            vec![("CONTINUUM_NOTIFY_TRANSPORT", "pigeon")],
            vec![("CONTINUUM_NOTIFY_TRANSPORT", "webhook")],
            vec![("CONTINUUM_NOTIFY_TRANSPORT", "smtp")],
            vec![("CONTINUUM_REMINDER_HOURS", "72,soon")],
        ] {
            assert!(
                Config::load(None, &env(&bad), &FlagConfig::default()).is_err(),
                "{bad:?} should be refused"
            );
        }
    }

    #[test]
    fn defaults_and_warnings() {
        let c = Config::load(
            None,
            &env(&[("CONTINUUM_DATABSE_URL", "x")]),
            &FlagConfig::default(),
        )
        .unwrap();
        assert_eq!(c.database.expose(), DEFAULT_DATABASE);
        assert_eq!(c.warnings.len(), 1);
        // the limits: defaults, overrides, and refusals of what the database cannot run
        assert_eq!(c.search_limits, fhir::search::SearchLimits::default());
        assert_eq!(c.resource_limits, fhir::validate::ResourceLimits::default());
        assert_eq!(c.request_budget_seconds, 30);
        let tuned = Config::load(
            None,
            &env(&[
                ("CONTINUUM_MAX_SEARCH_TERMS", "50"),
                ("CONTINUUM_MAX_ARRAY_ITEMS", "500"),
                ("CONTINUUM_REQUEST_BUDGET_SECONDS", "5"),
                ("CONTINUUM_BIN", "tools' own: not warned about"),
            ]),
            &FlagConfig::default(),
        )
        .unwrap();
        assert_eq!(tuned.search_limits.terms, 50);
        assert_eq!(tuned.resource_limits.array_items, 500);
        assert_eq!(tuned.request_budget_seconds, 5);
        assert!(tuned.warnings.is_empty(), "{:?}", tuned.warnings);
        for bad in [
            ("CONTINUUM_MAX_SEARCH_TERMS", "400"),
            ("CONTINUUM_MAX_SEARCH_VALUES", "0"),
            ("CONTINUUM_MAX_INDEX_ENTRIES", "0"),
            ("CONTINUUM_REQUEST_BUDGET_SECONDS", "0"),
        ] {
            assert!(
                Config::load(None, &env(&[bad]), &FlagConfig::default()).is_err(),
                "{bad:?}"
            );
        }
        assert!(
            Config::load(
                None,
                &env(&[("CONTINUUM_LISTEN", "nope")]),
                &FlagConfig::default()
            )
            .is_err()
        );
    }
}
