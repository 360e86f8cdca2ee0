//! The caller-bound store. Every request reads and writes through a [`CallerTx`]: it loads the
//! facts the policy needs about the caller, asks `care::access` for the caller's view, and
//! turns that view into one SQL filter that every read applies — a read by id, a search, its
//! total, its pages and history — so a hidden resource is indistinguishable from an absent
//! one. Writes are decided by `care::access::decide_with` (the policy's `decide`, on the view the
//! transaction already holds) on the resource's facts.

use care::access::{
    AccessView, Action, AuditAccess, Decision, PolicyConfig, ResourceFacts, Role, Subject, view,
};
use fhir::search::{IndexEntry, SearchRequest};
use serde_json::Value;
use std::collections::BTreeSet;

mod accounting;
mod context;
mod sql;

use context::load_context;
pub use context::would_see;
pub use sql::filter_for;
use sql::{placeholders, text_values};

use crate::db::SqlValue;
use crate::error::StoreError;
pub use crate::filter::AccessFilter;
use crate::tx::{HistoryPage, HistoryScope, SearchPage, Stored, Tx};

/// Who is calling, with the policy settings in force.
#[derive(Debug, Clone)]
pub struct Caller {
    pub subject: Subject,
    pub policy: PolicyConfig,
}

/// Why a write was refused.
#[derive(Debug, Clone)]
pub enum Refusal {
    /// The resource is not visible to the caller: answer exactly as if it did not exist.
    Hidden,
    /// Visible (or new), but the action is not allowed.
    Forbidden(String),
}

/// The proof that a write was decided and permitted, with the facts it was decided on. Only
/// the caller-bound store makes one.
#[derive(Debug)]
pub struct WritePermit {
    facts: ResourceFacts,
}

impl WritePermit {
    /// Whether the decision still covers this version: the same patients and labels.
    fn still_holds(&self, rtype: &str, id: &str, resource: &Value, index: &[IndexEntry]) -> bool {
        let mut labels = label_codes(resource);
        let mut decided = self.facts.labels.clone();
        labels.sort();
        decided.sort();
        self.facts.resource_type == rtype
            && fhir::compartment::patients_of(rtype, id, index) == self.facts.patients
            && labels == decided
    }
}

/// A resource's state as a writer sees it.
#[derive(Debug, Clone)]
pub enum Current {
    Absent,
    /// Exists, but the caller may not see it: treat as absent in answers, but do not reuse the id.
    Hidden,
    Visible(Stored),
}

/// What the request touched, for its AuditEvent.
#[derive(Debug, Clone, Default)]
pub struct AuditTrail {
    /// `Type/id` of each resource read or written.
    pub resources: Vec<String>,
    /// The patients whose records were touched.
    pub patients: Vec<String>,
    /// Some access was granted by break-the-glass.
    pub break_glass: bool,
    /// Some access was refused.
    pub denied: bool,
    /// What the alliance did on its own behalf inside the request (see [`OnBehalf`]).
    pub on_behalf: BTreeSet<OnBehalf>,
    /// What the work did, in words, when it says (jobs, imports).
    pub description: Option<String>,
    /// What `resources` and `patients` hold, for constant-time de-duplication (a bulk write
    /// touches hundreds of thousands of resources).
    seen: BTreeSet<String>,
}

impl AuditTrail {
    /// Forgets the resources touched, keeping the patients (a bulk export's AuditEvent names
    /// the patients, and its memory stays bounded by them).
    pub fn keep_patients_only(&mut self) {
        self.resources.clear();
        self.seen.retain(|k| k.starts_with("patient:"));
    }

    /// Records a resource touched and the patients it belongs to (each once).
    pub fn add(&mut self, rtype: &str, id: &str, patients: &[String]) {
        let r = format!("{rtype}/{id}");
        if self.seen.insert(r.clone()) {
            self.resources.push(r);
        }
        for p in patients {
            if self.seen.insert(format!("patient:{p}")) {
                self.patients.push(p.clone());
            }
        }
    }
}

/// The actions the alliance takes on its own behalf inside a request, with system rights —
/// the documented exceptions to "all data access goes through the caller's view". Each use is
/// named with its reason and recorded in the request's AuditEvent (a `subtype` coding).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum OnBehalf {
    /// Reading the Encounters and services a resource references to label it, and relabelling
    /// what references an Encounter of minor-consented care.
    Labelling,
    /// Comparing a written Patient with its candidates, keeping the Person links and the
    /// identity register in step, estimating the `$match` model from every Patient.
    Linkage,
    /// Offering a freed slot to another family's waitlist request.
    WaitlistOffer,
    /// Deciding who a message may go to, writing the messages, delivering them.
    Notifications,
    /// Matching what a transaction wrote against the active subscriptions.
    Subscriptions,
    /// The care finder's directory snapshot and free-slot lists (directory data, not patient
    /// data; the caller's scopes are checked first).
    Directory,
    /// Keeping a video visit's room token.
    VideoRooms,
    /// Recording a break-the-glass grant (and that the patient exists).
    BreakGlass,
    /// Keeping a referral in step: the Provenance of each step, the business status an
    /// appointment sets, the service-level marks.
    Referrals,
    /// Keeping a Slot in step with the Appointment that takes or gives it up (the Appointment's
    /// write is what is decided: a family books a child's visit without keeping the directory).
    Slots,
    /// An alliance administrator's change to a console account or an API client (decided by
    /// `care::access::decide_accounts`).
    Accounts,
    /// Recording the transition element a written resource completes (a young person's own
    /// readiness assessment records the element on its Task).
    Transition,
    /// Applying a hospital's HL7 v2 message: its register, the hospital's own record of a
    /// patient it could not place, and the alerts it sends.
    HospitalEvents,
    /// The register of Bulk Data export jobs: a caller's own jobs, and the worker taking them.
    BulkExport,
}

impl OnBehalf {
    /// The code recorded in the AuditEvent.
    pub fn code(self) -> &'static str {
        match self {
            OnBehalf::Labelling => "labelling",
            OnBehalf::Linkage => "linkage",
            OnBehalf::WaitlistOffer => "waitlist-offer",
            OnBehalf::Notifications => "notifications",
            OnBehalf::Subscriptions => "subscriptions",
            OnBehalf::Directory => "directory",
            OnBehalf::VideoRooms => "video-rooms",
            OnBehalf::BreakGlass => "break-glass",
            OnBehalf::Referrals => "referrals",
            OnBehalf::Slots => "slots",
            OnBehalf::Accounts => "accounts",
            OnBehalf::Transition => "transition",
            OnBehalf::HospitalEvents => "hospital-events",
            OnBehalf::BulkExport => "bulk-export",
        }
    }
}

/// A transaction bound to a caller.
pub struct CallerTx<'a, 'c> {
    tx: &'a mut Tx<'c>,
    caller: &'a Caller,
    view: AccessView,
    filter: Option<AccessFilter>,
    pub trail: AuditTrail,
}

/// The codes of a resource's `meta.security`.
pub fn label_codes(resource: &Value) -> Vec<String> {
    fhir::json::security_codes(resource)
}

impl<'a, 'c> CallerTx<'a, 'c> {
    /// Binds a transaction to a caller: loads the facts and computes the view.
    pub fn bind(tx: &'a mut Tx<'c>, caller: &'a Caller) -> Result<CallerTx<'a, 'c>, StoreError> {
        let ctx = load_context(tx, &caller.subject)?;
        let view = view(&caller.subject, &ctx, &caller.policy);
        let filter = filter_for(&view);
        let trail = AuditTrail::default();
        Ok(CallerTx {
            tx,
            caller,
            view,
            filter,
            trail,
        })
    }

    pub fn caller(&self) -> &Caller {
        self.caller
    }

    /// Records a touched resource; touching a patient reached by break-the-glass flags the trail.
    fn note(&mut self, rtype: &str, id: &str, patients: &[String]) {
        if patients.iter().any(|p| {
            self.view
                .patients
                .iter()
                .any(|a| a.break_glass && a.patient_id == *p)
        }) {
            self.trail.break_glass = true;
        }
        self.trail.add(rtype, id, patients);
    }

    pub fn view(&self) -> &AccessView {
        &self.view
    }

    pub fn now(&self) -> i64 {
        self.tx.now()
    }

    /// Fails once the unit's time budget has run out ([`Tx::check_budget`]).
    pub fn check_budget(&self) -> Result<(), StoreError> {
        self.tx.check_budget()
    }

    pub fn new_id(&self) -> String {
        self.tx.new_id()
    }

    /// The transaction with the system's rights, for something the alliance does on its own
    /// behalf (`why`), recorded in this request's audit trail. The only way past the caller's
    /// view; the reasons are [`OnBehalf`]'s documented list.
    pub fn on_behalf(&mut self, why: OnBehalf) -> &mut Tx<'c> {
        self.trail.on_behalf.insert(why);
        self.tx
    }

    /// Appends the request's AuditEvent in this transaction (sealed into the chain once it
    /// has committed); returns its id.
    pub fn append_audit(&mut self, event: &mut Value) -> Result<String, StoreError> {
        self.tx.append_audit(event)
    }

    /// Whether the caller may see (or, with `decision`, decide) an identity review pair of
    /// these Patients (`care::access::decide_identity_review`); with no patients, whether the
    /// caller may use the review queue at all.
    pub fn identity_review_decision(
        &mut self,
        patients: &[&str],
        decision: bool,
    ) -> Result<Decision, StoreError> {
        let patients: Vec<String> = patients.iter().map(|p| p.to_string()).collect();
        let facts = ResourceFacts {
            resource_type: "Patient".into(),
            relationships: self.relationships(&patients)?,
            patients,
            ..Default::default()
        };
        Ok(care::access::decide_identity_review_with(
            &self.view,
            &self.caller.subject,
            decision,
            &facts,
        ))
    }

    /// Whether the scopes allow an action on a type at all (a type-level 403, not a hiding).
    pub fn scope_allows(&self, resource_type: &str, action: Action) -> Result<(), String> {
        if self.caller.subject.scopes.allows(resource_type, action) {
            Ok(())
        } else {
            Err(format!(
                "the granted scopes ({}) do not allow this on {resource_type}",
                self.caller.subject.scopes.to_scope_string()
            ))
        }
    }

    /// Whether the caller may see a stored resource: the pure policy (`permits`) on the
    /// resource's facts, which the SQL filter mirrors. A few small indexed reads, the same for a
    /// visible and a hidden resource.
    fn visible(&mut self, s: &Stored) -> Result<bool, StoreError> {
        Ok(self.visible_facts(s)?.0)
    }

    /// [`Self::visible`], with the facts it had to read to decide (none when the caller's view
    /// decides without them), for the caller to reuse.
    fn visible_facts(&mut self, s: &Stored) -> Result<(bool, Option<ResourceFacts>), StoreError> {
        if self.filter.is_none() {
            return Ok((true, None));
        }
        if self.view.everything {
            return Ok((self.view.reads_type(&s.resource_type), None));
        }
        let facts = self.stored_facts(s)?;
        Ok((
            care::access::permits(&self.view, &facts).is_permit(),
            Some(facts),
        ))
    }

    /// The facts `visible_facts` read, or read now.
    fn facts_of(
        &mut self,
        s: &Stored,
        read: Option<ResourceFacts>,
    ) -> Result<ResourceFacts, StoreError> {
        match read {
            Some(f) => Ok(f),
            None => self.stored_facts(s),
        }
    }

    /// The compartment patients of a stored resource: from the facts already read, or read now.
    fn patients_from(
        &mut self,
        rid: i64,
        read: Option<ResourceFacts>,
    ) -> Result<Vec<String>, StoreError> {
        match read {
            Some(f) => Ok(f.patients),
            None => self.patients_of_rid(rid),
        }
    }

    /// The facts of a stored version: its compartments, labels (from the index rows when the
    /// version is a deletion) and its patients' care relationships.
    fn stored_facts(&mut self, s: &Stored) -> Result<ResourceFacts, StoreError> {
        let patients = self.patients_of_rid(s.rid)?;
        let labels = match s
            .body
            .as_deref()
            .and_then(|b| serde_json::from_str::<Value>(b).ok())
        {
            Some(v) => label_codes(&v),
            None => self
                .tx
                .conn()
                .query(
                    "SELECT code FROM idx_token WHERE rid = ? AND param = '_security'",
                    &[s.rid.into()],
                )?
                .into_iter()
                .filter_map(|r| r.into_iter().next().and_then(SqlValue::into_string))
                .collect(),
        };
        let relationships = self.relationships(&patients)?;
        Ok(ResourceFacts {
            resource_type: s.resource_type.clone(),
            patients,
            labels,
            relationships,
            registration: None,
        })
    }

    fn patients_of_rid(&mut self, rid: i64) -> Result<Vec<String>, StoreError> {
        let rows = self.tx.conn().query(
            "SELECT patient_id FROM compartments WHERE rid = ? ORDER BY patient_id",
            &[rid.into()],
        )?;
        Ok(rows
            .into_iter()
            .filter_map(|r| r.into_iter().next().and_then(SqlValue::into_string))
            .collect())
    }

    /// The compartment patients of many resources at once.
    pub fn patients_of_rids(
        &mut self,
        rids: &[i64],
    ) -> Result<std::collections::HashMap<i64, Vec<String>>, StoreError> {
        let mut out: std::collections::HashMap<i64, Vec<String>> = std::collections::HashMap::new();
        for chunk in rids.chunks(500) {
            if chunk.is_empty() {
                continue;
            }
            let sql = format!(
                "SELECT rid, patient_id FROM compartments WHERE rid IN ({}) ORDER BY patient_id",
                placeholders(chunk.len())
            );
            let params: Vec<SqlValue> = chunk.iter().map(|r| SqlValue::Int(*r)).collect();
            for row in self.tx.conn().query(&sql, &params)? {
                let mut it = row.into_iter();
                if let (Some(rid), Some(SqlValue::Text(p))) =
                    (it.next().and_then(|v| v.as_i64()), it.next())
                {
                    out.entry(rid).or_default().push(p);
                }
            }
        }
        Ok(out)
    }

    /// The current version if the caller may see it; `None` when absent or hidden.
    pub fn current(
        &mut self,
        rtype: &str,
        id: &str,
        lock: bool,
    ) -> Result<Option<Stored>, StoreError> {
        if rtype == "AuditEvent" {
            return self.audit_event(id);
        }
        let Some(s) = self.tx.current(rtype, id, lock)? else {
            return Ok(None);
        };
        let (seen, facts) = self.visible_facts(&s)?;
        if !seen {
            self.trail.denied = true;
            self.trail.add(rtype, id, &[]);
            return Ok(None);
        }
        let patients = self.patients_from(s.rid, facts)?;
        self.note(rtype, id, &patients);
        Ok(Some(self.shown(s)))
    }

    /// The current version for an update or delete, telling hidden apart from absent.
    pub fn current_for_write(&mut self, rtype: &str, id: &str) -> Result<Current, StoreError> {
        if rtype == "AuditEvent" {
            self.trail.denied = true;
            return Err(StoreError::Forbidden(
                "AuditEvents are written by the server only".into(),
            ));
        }
        let Some(s) = self.tx.current(rtype, id, true)? else {
            return Ok(Current::Absent);
        };
        if !self.visible(&s)? {
            self.trail.denied = true;
            self.trail.add(rtype, id, &[]);
            return Ok(Current::Hidden);
        }
        Ok(Current::Visible(s))
    }

    /// One version, if the caller may see the resource (and, for a limited view, that version
    /// carries no withheld label).
    pub fn version(
        &mut self,
        rtype: &str,
        id: &str,
        version: i64,
    ) -> Result<Option<Stored>, StoreError> {
        if rtype == "AuditEvent" {
            // an AuditEvent has one version
            let event = self.audit_event(id)?;
            return Ok(event.filter(|_| version == 1));
        }
        let Some(current) = self.tx.current(rtype, id, false)? else {
            return Ok(None);
        };
        let (seen, facts) = self.visible_facts(&current)?;
        if !seen {
            self.trail.denied = true;
            return Ok(None);
        }
        let found = self.tx.version(rtype, id, version)?;
        let patients = self.patients_from(current.rid, facts)?;
        self.note(rtype, id, &patients);
        match found {
            Some(v) if self.version_visible(&v, &patients)? => Ok(Some(self.shown(v))),
            _ => Ok(None),
        }
    }

    /// The current version decides visibility (by SQL); an older version may have carried a
    /// label the current one does not, and is hidden if the view withholds that label.
    fn version_visible(&mut self, v: &Stored, patients: &[String]) -> Result<bool, StoreError> {
        if self.view.everything {
            return Ok(true);
        }
        let Some(body) = &v.body else { return Ok(true) };
        let Ok(value) = serde_json::from_str::<Value>(body) else {
            return Ok(false);
        };
        let labels = label_codes(&value);
        if labels.is_empty() {
            return Ok(true);
        }
        let facts = ResourceFacts {
            resource_type: v.resource_type.clone(),
            patients: patients.to_vec(),
            labels,
            relationships: self.relationships(patients)?,
            registration: None,
        };
        Ok(care::access::permits(&self.view, &facts).is_permit())
    }

    pub fn search(&mut self, req: &SearchRequest) -> Result<SearchPage, StoreError> {
        if let AuditAccess::Patients(own) = &self.view.audit
            && !self.view.everything
        {
            accounting::search_allowed(req, own).map_err(StoreError::Forbidden)?;
        }
        if req.resource_type == "AuditEvent" {
            return self.search_audit(req);
        }
        if accounting::mentions_audit(req) {
            return Err(StoreError::BadSearch(
                "the audit trail is searched on its own (AuditEvent?entity=…, agent=, patient=, date=), not through _has, chains or _include of other searches".into(),
            ));
        }
        let mut page = crate::search::run_filtered(self.tx, req, self.filter.as_ref())?;
        page.matches = std::mem::take(&mut page.matches)
            .into_iter()
            .map(|m| self.shown(m))
            .collect();
        page.included = std::mem::take(&mut page.included)
            .into_iter()
            .map(|m| self.shown(m))
            .collect();
        let rids: Vec<i64> = page
            .matches
            .iter()
            .chain(&page.included)
            .map(|m| m.rid)
            .collect();
        let mut patients = self.patients_of_rids(&rids)?;
        for m in page.matches.iter().chain(&page.included) {
            let p = patients.remove(&m.rid).unwrap_or_default();
            self.note(&m.resource_type, &m.id, &p);
        }
        Ok(page)
    }

    /// A page of an organisation's referral worklist, under the caller's view (a referral
    /// whose Task the caller may not read is not on it); each referral is a Task read.
    pub fn referral_worklist(
        &mut self,
        q: &crate::referrals::WorklistQuery,
    ) -> Result<crate::referrals::WorklistPage, StoreError> {
        let page = crate::referrals::worklist(self.tx.conn(), q, self.filter.as_ref())?;
        for item in &page.items {
            self.note(
                "Task",
                &item.task_id,
                std::slice::from_ref(&item.patient_id),
            );
        }
        Ok(page)
    }

    /// The referrals written in `[from_ms, to_ms)` that `organization` sent or received (all
    /// of them for `None`), for the measures — aggregates over the organisation's own
    /// referrals, which `care::access::decide_organization_reports` opens to those who work
    /// there (the caller of this has asked it); the trail records the query, not each referral.
    pub fn referral_records(
        &mut self,
        from_ms: i64,
        to_ms: i64,
        organization: Option<&str>,
    ) -> Result<Vec<care::referral::metrics::ReferralRecord>, StoreError> {
        if organization.is_none() && !self.view.everything {
            return Err(StoreError::Forbidden(
                "the alliance-wide measures are for administrators".into(),
            ));
        }
        crate::referrals::records(self.tx.conn(), from_ms, to_ms, organization)
    }

    /// The measures' extracts (`store::measures`), after the reporting decision: alliance-wide
    /// only for those who see everything.
    fn measures_allowed(&self, organization: Option<&str>) -> Result<(), StoreError> {
        if organization.is_none() && !self.view.everything {
            return Err(StoreError::Forbidden(
                "the alliance-wide measures are for administrators".into(),
            ));
        }
        Ok(())
    }

    /// The JSON of the Appointments starting in `[from_ms, to_ms)`, for the measures.
    pub fn measure_appointments(
        &mut self,
        from_ms: i64,
        to_ms: i64,
        organization: Option<&str>,
    ) -> Result<Vec<String>, StoreError> {
        self.measures_allowed(organization)?;
        crate::measures::appointments(self.tx.conn(), from_ms, to_ms)
    }

    /// Every Patient's birth date and home postal code, for the measures' age bands and
    /// distances.
    pub fn measure_patients(
        &mut self,
        organization: Option<&str>,
    ) -> Result<crate::measures::PatientFacts, StoreError> {
        self.measures_allowed(organization)?;
        crate::measures::patients(self.tx.conn())
    }

    /// Each schedule's next free slots, for the third next available appointment.
    pub fn measure_free_slots(
        &mut self,
        from_ms: i64,
        organization: Option<&str>,
    ) -> Result<Vec<(String, i64)>, StoreError> {
        self.measures_allowed(organization)?;
        crate::measures::next_free_slots(self.tx.conn(), from_ms, 3)
    }

    /// The directory's resources of a type (services, sites, schedules), for the measures.
    pub fn measure_directory(
        &mut self,
        rtype: &str,
        organization: Option<&str>,
    ) -> Result<Vec<(String, String)>, StoreError> {
        self.measures_allowed(organization)?;
        if !["HealthcareService", "Location", "Organization", "Schedule"].contains(&rtype) {
            return Err(StoreError::Forbidden(format!(
                "{rtype} is not a directory type"
            )));
        }
        crate::measures::all_of_type(self.tx.conn(), rtype)
    }

    pub fn history(
        &mut self,
        scope: &HistoryScope,
        since: Option<i64>,
        count: usize,
        cursor: Option<&str>,
    ) -> Result<HistoryPage, StoreError> {
        match scope {
            HistoryScope::Instance { resource_type, id } if resource_type == "AuditEvent" => {
                let entries = self
                    .audit_event(id)?
                    .map(|version| crate::tx::HistoryEntry {
                        method: crate::tx::Method::Create,
                        version,
                    })
                    .into_iter()
                    .collect::<Vec<_>>();
                return Ok(HistoryPage {
                    total: Some(entries.len() as i64),
                    entries,
                    next_cursor: None,
                });
            }
            HistoryScope::Type(t) if t == "AuditEvent" => {
                return Err(StoreError::BadSearch(
                    "AuditEvents have no history but themselves: search AuditEvent?date=… instead"
                        .into(),
                ));
            }
            _ => {}
        }
        let mut page =
            self.tx
                .history_filtered(scope, since, count, cursor, self.filter.as_ref())?;
        if !self.view.everything {
            let rids: Vec<i64> = page.entries.iter().map(|e| e.version.rid).collect();
            let of = self.patients_of_rids(&rids)?;
            let mut kept = Vec::with_capacity(page.entries.len());
            for e in page.entries {
                // the compartments are the resource's (one rid per resource): read once each
                let patients = of.get(&e.version.rid).cloned().unwrap_or_default();
                if self.version_visible(&e.version, &patients)? {
                    self.note(&e.version.resource_type, &e.version.id, &patients);
                    kept.push(e);
                }
            }
            page.entries = kept;
        }
        for e in &mut page.entries {
            let version = e.version.clone();
            e.version = self.shown(version);
        }
        Ok(page)
    }

    /// An AuditEvent from the audit store, if the caller's view opens it.
    fn audit_event(&mut self, id: &str) -> Result<Option<Stored>, StoreError> {
        let scope = care::access::audit_view(&self.view);
        match crate::audit::search::event(self.tx, id, &scope)? {
            Some(record) => {
                self.note("AuditEvent", id, &record.patients);
                Ok(Some(self.shown(record.stored)))
            }
            None => {
                if scope != AuditAccess::All
                    && crate::audit::search::event(self.tx, id, &AuditAccess::All)?.is_some()
                {
                    self.trail.denied = true;
                    self.trail.add("AuditEvent", id, &[]);
                }
                Ok(None)
            }
        }
    }

    /// An `AuditEvent?…` search, served by the audit store under the caller's view.
    fn search_audit(&mut self, req: &SearchRequest) -> Result<SearchPage, StoreError> {
        let scope = care::access::audit_view(&self.view);
        let page = crate::audit::search::search(self.tx, req, &scope)?;
        let mut matches = Vec::with_capacity(page.records.len());
        for record in page.records {
            self.note("AuditEvent", &record.stored.id, &record.patients);
            matches.push(self.shown(record.stored));
        }
        Ok(SearchPage {
            matches,
            included: Vec::new(),
            next_cursor: page.next_cursor,
            total: page.total,
        })
    }

    /// A version as this caller is shown it: a video visit's join link (the `virtualService`
    /// extension of an Appointment) only for the visit's participants, the patient and the
    /// patient's proxies (`care::booking::may_see_join_link`); everyone else who may read the
    /// appointment sees it without the link.
    fn shown(&self, mut s: Stored) -> Stored {
        if s.resource_type == "AuditEvent" {
            return self.accounting(s);
        }
        if s.resource_type != "Appointment"
            || !s
                .body
                .as_deref()
                .is_some_and(|b| b.contains(care::booking::VIRTUAL_SERVICE))
        {
            return s;
        }
        let Some(Ok(mut value)) = s.body.as_deref().map(serde_json::from_str::<Value>) else {
            return s;
        };
        let participants: Vec<String> = value
            .get("participant")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|p| p.pointer("/actor/reference").and_then(Value::as_str))
            .map(str::to_string)
            .collect();
        let caller: Vec<String> = self
            .caller
            .subject
            .fhir_users
            .iter()
            .map(|(t, id)| format!("{t}/{id}"))
            .collect();
        let own: Vec<&str> = self
            .view
            .patients
            .iter()
            .filter(|p| !p.break_glass)
            .map(|p| p.patient_id.as_str())
            .collect();
        if care::booking::may_see_join_link(&caller, &own, &participants) {
            return s;
        }
        if let Some(exts) = value.get_mut("extension").and_then(Value::as_array_mut) {
            exts.retain(|e| {
                e.get("url").and_then(Value::as_str) != Some(care::booking::VIRTUAL_SERVICE)
            });
            if exts.is_empty()
                && let Value::Object(o) = &mut value
            {
                o.remove("extension");
            }
        }
        s.body = Some(value.to_string());
        s
    }

    /// An AuditEvent as a patient reading the accounting of their own record is shown it: who
    /// (the agent), when, what was done, why (purpose) and their own entity — never the other
    /// patients a search returned, other resources, the query or the outcome text. Auditors,
    /// administrators and backend services see the whole event.
    fn accounting(&self, mut s: Stored) -> Stored {
        let AuditAccess::Patients(own) = &self.view.audit else {
            return s;
        };
        if self.view.everything {
            return s;
        }
        let Some(Ok(mut event)) = s.body.as_deref().map(serde_json::from_str::<Value>) else {
            return s;
        };
        accounting::patient_view(&mut event, own);
        s.body = Some(event.to_string());
        s
    }

    /// The facts `decide` needs about a resource version that is about to be written: its
    /// patients and labels, and the care relationships recorded **before** the write — never
    /// the ones this resource would create (a write never grants the access it is decided
    /// by). `fresh` is a creation under an id never used: a Patient created so, with no record
    /// filed under its id yet, is a registration with its managing organisation.
    fn facts_for(
        &mut self,
        rtype: &str,
        id: &str,
        resource: &Value,
        index: &[IndexEntry],
        fresh: bool,
    ) -> Result<ResourceFacts, StoreError> {
        let patients = fhir::compartment::patients_of(rtype, id, index);
        let labels = label_codes(resource);
        if self.writes_everything() {
            // administrators and backend services: the decision needs no care relationships
            return Ok(ResourceFacts {
                resource_type: rtype.to_string(),
                patients,
                labels,
                relationships: Vec::new(),
                registration: None,
            });
        }
        let relationships = self.relationships(&patients)?;
        let registration = if fresh && rtype == "Patient" {
            let filed = self.tx.conn().query(
                "SELECT 1 FROM compartments WHERE patient_id = ? LIMIT 1",
                &[id.into()],
            )?;
            if filed.is_empty() {
                care::relationships::registered_with(resource)
            } else {
                None
            }
        } else {
            None
        };
        Ok(ResourceFacts {
            resource_type: rtype.to_string(),
            patients,
            labels,
            relationships,
            registration,
        })
    }

    /// The care relationships `(patient, organisation)` recorded for these patients.
    fn relationships(&mut self, patients: &[String]) -> Result<Vec<(String, String)>, StoreError> {
        if patients.is_empty() || self.view.care_organizations.is_empty() {
            return Ok(Vec::new());
        }
        let rows = self.tx.conn().query(
            &format!(
                "SELECT DISTINCT patient_id, organization_id FROM care_relationships WHERE patient_id IN ({})",
                placeholders(patients.len())
            ),
            &text_values(patients),
        )?;
        Ok(crate::db::text_pairs(rows))
    }

    /// Whether the caller may write anything its scopes allow (administrators and backend
    /// services): no per-resource facts are needed then.
    fn writes_everything(&self) -> bool {
        self.view.everything
    }

    fn check_write(&mut self, action: Action, facts: &ResourceFacts) -> Result<(), Refusal> {
        match care::access::decide_with(&self.view, &self.caller.subject, action, facts) {
            Decision::Permit => Ok(()),
            Decision::Deny(why) => {
                self.trail.denied = true;
                Err(Refusal::Forbidden(why))
            }
        }
    }

    /// Decides whether the caller may create this resource, without writing anything: the
    /// answer a write rule's side effects must wait for.
    pub fn permit_create(
        &mut self,
        rtype: &str,
        id: &str,
        resource: &Value,
        index: &[IndexEntry],
    ) -> Result<Result<WritePermit, Refusal>, StoreError> {
        let facts = self.facts_for(rtype, id, resource, index, true)?;
        Ok(self
            .check_write(Action::Create, &facts)
            .map(|()| WritePermit { facts }))
    }

    /// Stores a new resource the caller was permitted to create. Should the write rules have
    /// changed whom it concerns or its labels since, it is decided again.
    pub fn create_permitted(
        &mut self,
        permit: WritePermit,
        rtype: &str,
        id: &str,
        resource: &mut Value,
        index: &[IndexEntry],
    ) -> Result<Result<Stored, Refusal>, StoreError> {
        let facts = if permit.still_holds(rtype, id, resource, index) {
            permit.facts
        } else {
            match self.permit_create(rtype, id, resource, index)? {
                Ok(p) => p.facts,
                Err(r) => return Ok(Err(r)),
            }
        };
        let stored = self.tx.create(rtype, id, resource, index)?;
        self.note(rtype, id, &facts.patients);
        Ok(Ok(self.shown(stored)))
    }

    /// Checks and stores a new resource.
    pub fn create(
        &mut self,
        rtype: &str,
        id: &str,
        resource: &mut Value,
        index: &[IndexEntry],
    ) -> Result<Result<Stored, Refusal>, StoreError> {
        match self.permit_create(rtype, id, resource, index)? {
            Ok(permit) => self.create_permitted(permit, rtype, id, resource, index),
            Err(r) => Ok(Err(r)),
        }
    }

    /// Checks and stores many new resources (ids not in use) on the bulk path; one answer each,
    /// in order. Nothing is stored unless every one is permitted.
    pub fn create_many(
        &mut self,
        items: &mut [crate::tx::NewResource<'_>],
    ) -> Result<Result<Vec<Stored>, (usize, Refusal)>, StoreError> {
        let mut all_facts = Vec::with_capacity(items.len());
        for (i, it) in items.iter().enumerate() {
            let facts = self.facts_for(it.resource_type, &it.id, it.resource, it.index, true)?;
            if let Err(r) = self.check_write(Action::Create, &facts) {
                return Ok(Err((i, r)));
            }
            all_facts.push(facts);
        }
        let stored = self.tx.create_many(items)?;
        for (s, facts) in stored.iter().zip(&all_facts) {
            self.note(&s.resource_type, &s.id, &facts.patients);
        }
        Ok(Ok(stored))
    }

    /// Which of `ids` (of one type) exist, deleted or not.
    pub fn existing(
        &mut self,
        rtype: &str,
        ids: &[&str],
    ) -> Result<std::collections::HashMap<String, i64>, StoreError> {
        self.tx.existing(rtype, ids)
    }

    /// Decides whether the caller may replace `previous` (a version it can see, or a
    /// deletion) by this resource, without writing anything.
    pub fn permit_update(
        &mut self,
        previous: &Stored,
        resource: &Value,
        index: &[IndexEntry],
    ) -> Result<Result<WritePermit, Refusal>, StoreError> {
        let mut read = None;
        if !previous.deleted {
            let (seen, facts) = self.visible_facts(previous)?;
            if !seen {
                return Ok(Err(Refusal::Hidden));
            }
            read = facts;
        }
        if !previous.deleted && !self.writes_everything() {
            // the version being replaced is decided too: one may not change a resource that
            // concerns a patient one may not write for
            let before = self.facts_of(previous, read)?;
            if let Err(r) = self.check_write(Action::Update, &before) {
                return Ok(Err(r));
            }
        }
        let facts = self.facts_for(
            &previous.resource_type,
            &previous.id,
            resource,
            index,
            false,
        )?;
        if let Err(r) = self.check_write(Action::Update, &facts) {
            return Ok(Err(r));
        }
        if !self.may_label() && !previous.deleted {
            // adding a label only narrows who may see; removing one is for coordinators
            let old = previous
                .body
                .as_deref()
                .and_then(|b| serde_json::from_str::<Value>(b).ok())
                .map(|v| label_codes(&v))
                .unwrap_or_default();
            if old.iter().any(|l| !facts.labels.contains(l)) {
                self.trail.denied = true;
                return Ok(Err(Refusal::Forbidden(
                    "only coordinators and administrators remove security labels".into(),
                )));
            }
        }
        Ok(Ok(WritePermit { facts }))
    }

    /// Stores the next version the caller was permitted to write (decided again should the
    /// write rules have changed whom it concerns or its labels).
    pub fn update_permitted(
        &mut self,
        permit: WritePermit,
        previous: &Stored,
        resource: &mut Value,
        index: &[IndexEntry],
    ) -> Result<Result<Stored, Refusal>, StoreError> {
        let facts = if permit.still_holds(&previous.resource_type, &previous.id, resource, index) {
            permit.facts
        } else {
            match self.permit_update(previous, resource, index)? {
                Ok(p) => p.facts,
                Err(r) => return Ok(Err(r)),
            }
        };
        let stored = self.tx.update(previous, resource, index)?;
        self.note(&previous.resource_type, &previous.id, &facts.patients);
        Ok(Ok(self.shown(stored)))
    }

    /// Checks and stores the next version of a resource the caller can see.
    pub fn update(
        &mut self,
        previous: &Stored,
        resource: &mut Value,
        index: &[IndexEntry],
    ) -> Result<Result<Stored, Refusal>, StoreError> {
        match self.permit_update(previous, resource, index)? {
            Ok(permit) => self.update_permitted(permit, previous, resource, index),
            Err(r) => Ok(Err(r)),
        }
    }

    /// Decides whether the caller may delete `previous`, without writing anything.
    pub fn permit_delete(
        &mut self,
        previous: &Stored,
    ) -> Result<Result<WritePermit, Refusal>, StoreError> {
        let (seen, read) = self.visible_facts(previous)?;
        if !seen {
            return Ok(Err(Refusal::Hidden));
        }
        let facts = self.facts_of(previous, read)?;
        Ok(self
            .check_write(Action::Delete, &facts)
            .map(|()| WritePermit { facts }))
    }

    /// Records a deletion the caller was permitted.
    pub fn delete_permitted(
        &mut self,
        permit: WritePermit,
        previous: &Stored,
    ) -> Result<Stored, StoreError> {
        let stored = self.tx.delete(previous)?;
        self.note(
            &previous.resource_type,
            &previous.id,
            &permit.facts.patients,
        );
        Ok(stored)
    }

    /// Checks and records a deletion.
    pub fn delete(&mut self, previous: &Stored) -> Result<Result<Stored, Refusal>, StoreError> {
        match self.permit_delete(previous)? {
            Ok(permit) => self.delete_permitted(permit, previous).map(Ok),
            Err(r) => Ok(Err(r)),
        }
    }

    /// Whether the caller may set or change `meta.security`.
    pub fn may_label(&self) -> bool {
        let s = &self.caller.subject;
        s.has(Role::Coordinator) || s.has(Role::AllianceAdmin) || s.is_backend_service()
    }

    pub fn lock_condition(&mut self, key: &str) -> Result<(), StoreError> {
        self.tx.lock_condition(key)
    }

    pub fn savepoint<R, E: From<StoreError>>(
        &mut self,
        f: impl FnOnce(&mut CallerTx<'a, 'c>) -> Result<R, E>,
    ) -> Result<R, E> {
        let name = self.tx.begin_savepoint().map_err(E::from)?;
        let result = f(self);
        self.tx
            .end_savepoint(&name, result.is_ok())
            .map_err(E::from)?;
        result
    }
}
