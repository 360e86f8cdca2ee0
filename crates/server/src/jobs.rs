//! Background jobs, owned by the library: one scheduler ([`Jobs`]) and one registration per
//! job — slot generation (daily), the release of lapsed holds (every minute), referral service
//! levels (every 15 minutes) and notification
//! delivery (every `notify_interval_seconds`, when a transport is configured). `server::app`
//! starts it for `continuum serve` and for the test app alike; each job is work of the
//! application (`App::system_job`: the system as caller, one transaction, audited when it did
//! something) that reads time from the store's injected clock, so a test that moves the clock
//! and runs a job exercises exactly what the server runs.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use crate::app::App;
use crate::app::notify::Notifier;
use crate::error::ApiError;

/// The weeks of slots kept ahead of every schedule.
pub const SLOT_WEEKS: u32 = 8;

/// What a job's run says it did (`None`: nothing to do).
pub type Ran = Result<Option<String>, ApiError>;

type Run = Arc<dyn Fn(App) -> Pin<Box<dyn Future<Output = Ran> + Send>> + Send + Sync>;

/// One registered job.
#[derive(Clone)]
pub struct Job {
    pub name: &'static str,
    pub every: Duration,
    run: Run,
}

impl Job {
    pub fn new<F, Fut>(name: &'static str, every: Duration, run: F) -> Job
    where
        F: Fn(App) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Ran> + Send + 'static,
    {
        Job {
            name,
            every,
            run: Arc::new(move |app| Box::pin(run(app))),
        }
    }
}

/// How the scheduler runs.
#[derive(Debug, Clone)]
pub struct JobsConfig {
    /// Run every job once as soon as the scheduler starts (the server does; the test app
    /// does not, so a test's data is not raced by a job it did not ask for).
    pub run_at_start: bool,
    /// Notification delivery: the transports, and how often to look for due messages.
    pub notifier: Option<Arc<Notifier>>,
    pub notify_every: Duration,
}

impl Default for JobsConfig {
    fn default() -> Self {
        JobsConfig {
            run_at_start: false,
            notifier: None,
            notify_every: Duration::from_secs(15),
        }
    }
}

/// The scheduler and its jobs.
#[derive(Clone)]
pub struct Jobs {
    app: App,
    jobs: Vec<Job>,
}

impl Jobs {
    /// The jobs every server runs.
    pub fn standard(app: App, config: &JobsConfig) -> Jobs {
        let mut jobs = vec![
            Job::new(
                "slots:generate",
                Duration::from_secs(24 * 3600),
                |app: App| async move {
                    let r = crate::app::slots::generate(&app, SLOT_WEEKS).await?;
                    Ok((r.created > 0).then(|| {
                        format!("{} slots created for {} schedules", r.created, r.schedules)
                    }))
                },
            ),
            Job::new(
                "holds:release",
                Duration::from_secs(60),
                |app: App| async move {
                    let n = crate::app::slots::release_lapsed_holds(&app).await?;
                    Ok((n > 0).then(|| format!("{n} lapsed slot holds released")))
                },
            ),
            // referrals at risk and overdue, marked; the receiver told once when one is overdue
            Job::new(
                "referrals:service-levels",
                Duration::from_secs(15 * 60),
                |app: App| async move { crate::app::referrals::mark_service_levels(&app).await },
            ),
            // transition to adult care: each young person's element Tasks, due and overdue
            Job::new(
                "transition:schedule",
                Duration::from_secs(24 * 3600),
                |app: App| async move {
                    let now = app.store().clock().now_ms();
                    let r = crate::app::transition::schedule(&app, now).await?;
                    Ok(r.wrote().then(|| r.words()))
                },
            ),
            // the identity model, estimated again after enough Patient writes — never inside
            // a request
            Job::new(
                "identity:model",
                Duration::from_secs(60),
                |app: App| async move {
                    let n = crate::app::matching::refresh_when_stale(&app).await?;
                    Ok(n.map(crate::app::matching::model_estimated))
                },
            ),
            // Bulk Data export: waiting jobs (kick-off starts the worker at once; this takes
            // up what a restart left), and finished jobs' files past their retention
            Job::new(
                "bulk-export",
                Duration::from_secs(5),
                |app: App| async move {
                    let ran = crate::app::export::run_pending(&app).await?;
                    let expired = crate::app::export::expire(&app).await?;
                    Ok(match (ran, expired) {
                        (None, None) => None,
                        (a, b) => Some(a.into_iter().chain(b).collect::<Vec<_>>().join("; ")),
                    })
                },
            ),
        ];
        if let Some(notifier) = config.notifier.clone() {
            jobs.push(Job::new(
                "notifications:deliver",
                config.notify_every,
                move |app: App| {
                    let notifier = notifier.clone();
                    async move { deliver_all(&app, &notifier).await }
                },
            ));
        }
        Jobs { app, jobs }
    }

    /// The application the jobs run in.
    pub fn app(&self) -> &App {
        &self.app
    }

    /// The registered jobs' names.
    pub fn names(&self) -> Vec<&'static str> {
        self.jobs.iter().map(|j| j.name).collect()
    }

    /// Runs one job now (what the scheduler does when it is due).
    pub async fn run_now(&self, name: &str) -> Ran {
        let job = self
            .jobs
            .iter()
            .find(|j| j.name == name)
            .ok_or_else(|| ApiError::not_found(format!("there is no job '{name}'")))?;
        (job.run)(self.app.clone()).await
    }

    /// Starts the scheduler: each job runs every `every` (first at once when `run_at_start`),
    /// one run of a job at a time; a failed run is logged and tried again at its next turn.
    pub fn spawn(self, run_at_start: bool) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut handles = Vec::new();
            for job in self.jobs {
                let app = self.app.clone();
                handles.push(tokio::spawn(async move {
                    let mut every = tokio::time::interval(job.every);
                    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    if !run_at_start {
                        every.tick().await; // the first tick is immediate: skip it
                    }
                    loop {
                        every.tick().await;
                        match (job.run)(app.clone()).await {
                            Ok(Some(what)) => tracing::info!(job = job.name, "{what}"),
                            Ok(None) => {}
                            Err(e) => {
                                tracing::error!(job = job.name, status = e.status, "job failed")
                            }
                        }
                    }
                }));
            }
            for h in handles {
                let _ = h.await;
            }
        })
    }
}

/// Delivers due messages until none is left that can be sent now.
async fn deliver_all(app: &App, notifier: &Notifier) -> Ran {
    let mut total = crate::app::notify::DeliveryReport::default();
    loop {
        let r = crate::app::notify::deliver_due(app, notifier).await?;
        if r == Default::default() {
            break;
        }
        total.sent += r.sent;
        total.retrying += r.retrying;
        total.failed += r.failed;
        total.skipped += r.skipped;
        if r.sent + r.skipped == 0 {
            break;
        }
    }
    Ok((total != Default::default()).then(|| {
        format!(
            "notifications: {} sent, {} retrying, {} failed, {} skipped",
            total.sent, total.retrying, total.failed, total.skipped
        )
    }))
}
