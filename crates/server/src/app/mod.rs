//! The application layer: what the alliance does, orchestrated over the store — booking and
//! the waitlist, notifications and subscriptions, video visits, identity linkage, the care
//! finder and its directory snapshot, slot generation, labels that follow the care, bulk import.
//! Every entry point reaches it through one unit of work ([`unit`]): authenticate (the caller
//! comes in bound), one transaction, audit exactly once. It depends on the store and the pure
//! crates, never on the FHIR router (`rest`), the JSON API (`api`) or HTTP.

pub mod adt;
pub mod appointments;
pub mod booking;
pub mod directory;
pub mod export;
pub mod findcare;
pub mod import;
pub mod labels;
pub mod linkage;
pub mod matching;
pub mod measures;
pub mod notify;
pub mod params;
pub mod referrals;
pub mod resources;
pub mod slots;
pub mod subscriptions;
pub mod transition;
pub mod unit;
pub mod visits;
pub mod waitlist;

use std::sync::Arc;

use fhir::search::Registry;
use store::Store;

pub use unit::{Work, system_caller};

/// The `Prefer` header's settings, as the unit of work hands them on.
pub use prefer::{Prefer, Return};

mod prefer {
    /// `Prefer` header settings.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
    pub struct Prefer {
        pub return_: Return,
        pub lenient: bool,
    }

    #[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
    pub enum Return {
        Minimal,
        #[default]
        Representation,
        OperationOutcome,
    }

    impl Prefer {
        /// Parses `return=minimal, handling=lenient` (several headers may be joined with commas).
        pub fn parse(header: Option<&str>) -> Prefer {
            let mut p = Prefer::default();
            for part in header.unwrap_or("").split([',', ';']) {
                match part.trim().replace(' ', "").as_str() {
                    "return=minimal" => p.return_ = Return::Minimal,
                    "return=representation" => p.return_ = Return::Representation,
                    "return=OperationOutcome" => p.return_ = Return::OperationOutcome,
                    "handling=lenient" => p.lenient = true,
                    "handling=strict" => p.lenient = false,
                    _ => {}
                }
            }
            p
        }
    }
}

/// The alliance's settings and shared caches, for every entry point.
#[derive(Debug, Clone, Default)]
pub struct AppConfig {
    /// The FHIR base URL to use in links instead of the one the request came in on.
    pub public_base_url: Option<String>,
    /// The care finder's settings.
    pub find_care: Arc<care::findcare::FindCareConfig>,
    /// The care finder's directory snapshot, shared by every request.
    pub directory: Arc<directory::DirectoryCache>,
    /// Holds, video visits, the waitlist and reminders.
    pub booking: Arc<booking::BookingConfig>,
    /// The active subscriptions, shared by every request.
    pub subscriptions: Arc<subscriptions::SubscriptionCache>,
    /// The sending facilities' Organizations, for HL7 v2 messages.
    pub facilities: Arc<adt::FacilityCache>,
    /// The identity model `$match` scores with.
    pub match_model: Arc<matching::MatchModel>,
    /// How large one search may be (every path a query arrives by).
    pub search_limits: fhir::search::SearchLimits,
    /// Referral service levels and the business calendar.
    pub referrals: Arc<referrals::ReferralConfig>,
    /// How long one request's unit of work may run before it is stopped and rolled back (503
    /// with Retry-After); `None`: unbounded.
    pub request_budget: Option<std::time::Duration>,
    /// Bulk Data export: where its files go, how long they are kept, its worker.
    pub export: Arc<export::ExportConfig>,
}

/// The application: the store, the search registry and the alliance's settings. Every entry
/// point — the FHIR router, the JSON API, background jobs, imports — runs its work through it as
/// one unit of work ([`unit`]).
#[derive(Clone)]
pub struct App {
    store: Store,
    registry: &'static Registry,
    config: Arc<AppConfig>,
}

/// What a unit of work needs besides its transaction: the request's base URL and `Prefer`, the
/// registry, and the alliance's settings and caches.
pub struct Ctx {
    pub base_url: String,
    pub prefer: Prefer,
    pub registry: &'static Registry,
    pub find_care: Arc<care::findcare::FindCareConfig>,
    /// The care finder's directory snapshot, shared by every request.
    pub directory: Arc<directory::DirectoryCache>,
    pub booking: Arc<booking::BookingConfig>,
    pub subscriptions: Arc<subscriptions::SubscriptionCache>,
    pub facilities: Arc<adt::FacilityCache>,
    pub match_model: Arc<matching::MatchModel>,
    pub search_limits: fhir::search::SearchLimits,
    pub referrals: Arc<referrals::ReferralConfig>,
}

impl App {
    pub fn new(store: Store, config: AppConfig) -> App {
        App {
            store,
            registry: fhir::search::registry(),
            config: Arc::new(config),
        }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The search-parameter registry.
    pub fn registry(&self) -> &'static Registry {
        self.registry
    }

    pub fn config(&self) -> &AppConfig {
        &self.config
    }

    /// What execution needs, for a request to `base_url` (or a background job: the public base
    /// URL when one is configured).
    pub fn ctx(&self, base_url: String, prefer: Prefer) -> Ctx {
        Ctx {
            base_url,
            prefer,
            registry: self.registry,
            find_care: self.config.find_care.clone(),
            directory: self.config.directory.clone(),
            booking: self.config.booking.clone(),
            subscriptions: self.config.subscriptions.clone(),
            facilities: self.config.facilities.clone(),
            match_model: self.config.match_model.clone(),
            search_limits: self.config.search_limits,
            referrals: self.config.referrals.clone(),
        }
    }

    /// The context of a background job.
    pub fn job_ctx(&self) -> Ctx {
        let base = self
            .config
            .public_base_url
            .clone()
            .unwrap_or_default()
            .trim_end_matches('/')
            .to_string();
        self.ctx(base, Prefer::default())
    }
}
