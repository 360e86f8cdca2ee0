//! Continuum's HTTP edge: the FHIR REST API at `/fhir` (router in [`rest`], axum adapter in
//! [`http`]), health and readiness probes, and Prometheus metrics. Only this crate knows HTTP.

pub mod api;
pub mod app;
pub mod audit;
pub mod auth;
pub mod demo;
pub mod error;
pub mod http;
pub mod jobs;
pub mod metrics;
pub mod mllp;
pub mod rest;

pub use app::{notify, slots};

use std::net::SocketAddr;
use std::sync::Arc;

use store::Store;
use tokio::net::TcpListener;

pub use error::ApiError;
pub use rest::{FhirApi, RestConfig};

/// How the server listens and answers.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    /// The FHIR base URL to put in links (`https://continuum.example.org/fhir`); by default the
    /// one each request came in on.
    pub public_base_url: Option<String>,
    /// The largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// Tokens, sessions and the access policy.
    pub auth: auth::AuthConfig,
    /// Holds, video visits, the waitlist and reminders.
    pub booking: app::booking::BookingConfig,
    /// Referral service levels and the business calendar.
    pub referrals: app::referrals::ReferralConfig,
    /// The background jobs.
    pub jobs: jobs::JobsConfig,
    /// Name words that are not names (`BABY`, `UNKNOWN`, …) beyond the built-in ones, for
    /// identity linkage.
    pub placeholder_names: Vec<String>,
    /// How large one search may be.
    pub search_limits: fhir::search::SearchLimits,
    /// How long one request's unit of work may run (503 with Retry-After beyond it).
    pub request_budget: std::time::Duration,
    /// The HL7 v2 listener (MLLP), off unless configured.
    pub mllp: Option<mllp::MllpConfig>,
    /// Bulk Data export: the folder of its files and how long they are kept.
    pub export: Arc<app::export::ExportConfig>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            public_base_url: None,
            max_body_bytes: 16 * 1024 * 1024,
            auth: auth::AuthConfig::default(),
            booking: Default::default(),
            referrals: Default::default(),
            jobs: Default::default(),
            placeholder_names: Vec::new(),
            search_limits: Default::default(),
            request_budget: std::time::Duration::from_secs(30),
            mllp: None,
            export: Default::default(),
        }
    }
}

/// Builds the axum application over a store (loading or creating the token signing key) and
/// starts its background jobs.
pub async fn app(store: Store, config: &ServerConfig) -> Result<axum::Router, StartError> {
    Ok(app_with_jobs(store, config).await?.0)
}

/// As [`app`], also returning the jobs' handle (to run one now, as tests do).
pub async fn app_with_jobs(
    store: Store,
    config: &ServerConfig,
) -> Result<(axum::Router, jobs::Jobs), StartError> {
    let started = start(store, config).await?;
    Ok((started.router, started.jobs))
}

/// What [`start`] started.
pub struct Started {
    pub router: axum::Router,
    pub jobs: jobs::Jobs,
    /// The address the HL7 v2 listener listens on, when configured.
    pub mllp: Option<SocketAddr>,
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Keys(#[from] auth::tokens::KeyRingError),
    #[error("cannot listen for HL7 v2 (MLLP) on {0}: {1}")]
    Mllp(SocketAddr, std::io::Error),
}

/// Builds the application, starts its jobs and (when configured) its HL7 v2 listener.
pub async fn start(store: Store, config: &ServerConfig) -> Result<Started, StartError> {
    let api = FhirApi::new(
        store.clone(),
        RestConfig {
            public_base_url: config.public_base_url.clone(),
            booking: Arc::new(config.booking.clone()),
            match_model: Arc::new(app::matching::MatchModel::with_placeholders(
                &config.placeholder_names,
            )),
            search_limits: config.search_limits,
            request_budget: Some(config.request_budget),
            referrals: Arc::new(config.referrals.clone()),
            export: config.export.clone(),
            ..Default::default()
        },
    );
    let database = store
        .read(|tx| tx.database_identity())
        .await
        .unwrap_or_default();
    let auth = auth::Auth::new(store, config.auth.clone()).await?;
    // the alliance's own definitions every server carries (written only when they changed)
    if let Err(e) = app::transition::ensure_questionnaire(&api).await {
        tracing::error!(
            status = e.status,
            "the readiness questionnaire could not be stored"
        );
    }
    let jobs = jobs::Jobs::standard(api.clone(), &config.jobs);
    jobs.clone().spawn(config.jobs.run_at_start);
    let mllp = match &config.mllp {
        Some(m) => {
            let (listener, addr) = mllp::bind(m)
                .await
                .map_err(|e| StartError::Mllp(m.listen, e))?;
            tokio::spawn(mllp::serve(listener, api.clone(), m.clone()));
            Some(addr)
        }
        None => None,
    };
    let router = http::router(http::AppState {
        api,
        auth: Arc::new(auth),
        metrics: Arc::new(metrics::Metrics::new()),
        max_body_bytes: config.max_body_bytes,
        database,
    });
    Ok(Started { router, jobs, mllp })
}

/// Binds the listener (port 0 picks a free port) and returns it with its address.
pub async fn bind(addr: SocketAddr) -> std::io::Result<(TcpListener, SocketAddr)> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    Ok((listener, local))
}

/// Serves until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    app: axum::Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}
