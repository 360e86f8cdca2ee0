//! The caller-bound store. Every request reads and writes through a [`CallerTx`]: it loads the
//! facts the policy needs about the caller, asks `care::access` for the caller's view, and
//! turns that view into one SQL filter that every read applies — a read by id, a search, its
//! total, its pages and history — so a hidden resource is indistinguishable from an absent
//! one. Writes are decided by `care::access::decide` on the resource's facts.

use care::access::{
    AccessView, Action, AuditAccess, BirthDate, BreakGlass, ConsentRule, Context, DIRECTORY_TYPES,
    Decision, PolicyConfig, ProxyLink, ResourceFacts, Role, Subject, decide, view,
};
use fhir::search::{IndexEntry, SearchRequest};
use serde_json::Value;
use std::collections::BTreeSet;

use crate::db::SqlValue;
use crate::error::StoreError;
use crate::tx::{HistoryPage, HistoryScope, SearchPage, Stored, Tx};

/// Who is calling, with the policy settings in force.
#[derive(Debug, Clone)]
pub struct Caller {
    pub subject: Subject,
    pub policy: PolicyConfig,
}

/// A SQL condition on a `resources` row; `{r}` in the text stands for the row's alias.
#[derive(Debug, Clone, Default)]
pub struct AccessFilter {
    pub sql: String,
    pub params: Vec<SqlValue>,
}

impl AccessFilter {
    /// The condition for the `resources` row aliased `alias`.
    pub fn on(&self, alias: &str) -> String {
        self.sql.replace("{r}", alias)
    }
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
    /// What `resources` and `patients` hold, for constant-time de-duplication (a bulk write
    /// touches hundreds of thousands of resources).
    seen: BTreeSet<String>,
}

impl AuditTrail {
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

/// A transaction bound to a caller.
pub struct CallerTx<'a, 'c> {
    tx: &'a mut Tx<'c>,
    caller: &'a Caller,
    ctx: Context,
    view: AccessView,
    filter: Option<AccessFilter>,
    pub trail: AuditTrail,
}

fn placeholders(n: usize) -> String {
    vec!["?"; n].join(", ")
}

fn text_values(items: &[impl AsRef<str>]) -> Vec<SqlValue> {
    items
        .iter()
        .map(|s| SqlValue::Text(s.as_ref().to_string()))
        .collect()
}

/// Turns a view into SQL. The shape mirrors `care::access::permits` clause by clause.
pub fn filter_for(view: &AccessView) -> Option<AccessFilter> {
    let types = view.types.as_ref().map(|types| {
        if types.is_empty() {
            AccessFilter {
                sql: "1 = 0".into(),
                params: Vec::new(),
            }
        } else {
            AccessFilter {
                sql: format!("{{r}}.rtype IN ({})", placeholders(types.len())),
                params: text_values(types),
            }
        }
    });
    if view.everything {
        return types;
    }
    let mut parts: Vec<String> = Vec::new();
    let mut params: Vec<SqlValue> = Vec::new();
    if view.directory {
        parts.push(format!(
            "{{r}}.rtype IN ({})",
            placeholders(DIRECTORY_TYPES.len())
        ));
        params.extend(text_values(DIRECTORY_TYPES));
    }
    match &view.audit {
        AuditAccess::All => parts.push("{r}.rtype = 'AuditEvent'".into()),
        AuditAccess::Patients(ids) if !ids.is_empty() => {
            parts.push(format!(
                "({{r}}.rtype = 'AuditEvent' AND {{r}}.rid IN (SELECT rid FROM compartments WHERE patient_id IN ({})))",
                placeholders(ids.len())
            ));
            params.extend(text_values(ids));
        }
        _ => {}
    }
    let mut grants: Vec<String> = Vec::new();
    let mut grant_params: Vec<SqlValue> = Vec::new();
    if !view.care_organizations.is_empty() {
        grants.push(format!(
            "{{r}}.rid IN (SELECT acc_c.rid FROM compartments acc_c JOIN care_relationships acc_cr ON acc_cr.patient_id = acc_c.patient_id WHERE acc_cr.organization_id IN ({}))",
            placeholders(view.care_organizations.len())
        ));
        grant_params.extend(text_values(&view.care_organizations));
    }
    // patients grouped by what is withheld from them (nothing: the whole compartment)
    let mut groups: Vec<(&[String], Vec<&str>)> = Vec::new();
    for p in &view.patients {
        match groups.iter_mut().find(|(w, _)| *w == p.withheld.as_slice()) {
            Some((_, ids)) => ids.push(p.patient_id.as_str()),
            None => groups.push((p.withheld.as_slice(), vec![p.patient_id.as_str()])),
        }
    }
    for (withheld, ids) in groups {
        if withheld.is_empty() {
            grants.push(format!(
                "{{r}}.rid IN (SELECT rid FROM compartments WHERE patient_id IN ({}))",
                placeholders(ids.len())
            ));
            grant_params.extend(text_values(&ids));
        } else {
            grants.push(format!(
                "({{r}}.rid IN (SELECT rid FROM compartments WHERE patient_id IN ({})) AND {{r}}.rid NOT IN (SELECT rid FROM idx_token WHERE param = '_security' AND code IN ({})))",
                placeholders(ids.len()),
                placeholders(withheld.len())
            ));
            grant_params.extend(text_values(&ids));
            grant_params.extend(text_values(withheld));
        }
    }
    if !grants.is_empty() {
        let mut cond = format!(
            "({{r}}.rtype NOT IN ({}) AND {{r}}.rtype <> 'AuditEvent' AND ({})",
            placeholders(DIRECTORY_TYPES.len()),
            grants.join(" OR ")
        );
        params.extend(text_values(DIRECTORY_TYPES));
        params.extend(grant_params);
        if !view.denied_patients.is_empty() {
            cond.push_str(&format!(
                " AND {{r}}.rid NOT IN (SELECT rid FROM compartments WHERE patient_id IN ({}))",
                placeholders(view.denied_patients.len())
            ));
            params.extend(text_values(&view.denied_patients));
        }
        for (patient, labels) in &view.withheld {
            cond.push_str(&format!(
                " AND NOT ({{r}}.rid IN (SELECT rid FROM compartments WHERE patient_id = ?) AND {{r}}.rid IN (SELECT rid FROM idx_token WHERE param = '_security' AND code IN ({})))",
                placeholders(labels.len())
            ));
            params.push(SqlValue::Text(patient.clone()));
            params.extend(text_values(labels));
        }
        cond.push(')');
        parts.push(cond);
    }
    if parts.is_empty() {
        return Some(AccessFilter {
            sql: "1 = 0".into(),
            params,
        });
    }
    let mut sql = format!("({})", parts.join(" OR "));
    if let Some(t) = types {
        sql = format!("({} AND {sql})", t.sql);
        let mut all = t.params;
        all.extend(params);
        params = all;
    }
    Some(AccessFilter { sql, params })
}

fn reference_id(v: &Value, expected_type: &str) -> Option<String> {
    let r = v.get("reference")?.as_str()?;
    let (t, id) = fhir::search::index::split_reference(r)?;
    (t == expected_type).then(|| id.to_string())
}

fn instant_ms(s: &str) -> Option<i64> {
    fhir::primitive::parse_date_time(s, fhir::primitive::Precision::Fraction, true)
        .ok()
        .map(|v| v.range().low)
}

pub fn label_codes(resource: &Value) -> Vec<String> {
    resource
        .get("meta")
        .and_then(|m| m.get("security"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|c| c.get("code").and_then(Value::as_str).map(str::to_string))
        .collect()
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
            ctx,
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

    pub fn new_id(&self) -> String {
        self.tx.new_id()
    }

    /// The raw transaction, for work that is not about reading or writing resources (audit,
    /// identities).
    pub fn raw(&mut self) -> &mut Tx<'c> {
        self.tx
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
        Ok(care::access::decide_identity_review(
            &self.caller.subject,
            decision,
            &facts,
            &self.ctx,
            &self.caller.policy,
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
        if self.filter.is_none() {
            return Ok(true);
        }
        if self.view.everything {
            return Ok(self.view.reads_type(&s.resource_type));
        }
        let facts = self.stored_facts(s)?;
        Ok(care::access::permits(&self.view, &facts).is_permit())
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
    fn patients_of_rids(
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
        let Some(s) = self.tx.current(rtype, id, lock)? else {
            return Ok(None);
        };
        if !self.visible(&s)? {
            self.trail.denied = true;
            self.trail.add(rtype, id, &[]);
            return Ok(None);
        }
        let patients = self.patients_of_rid(s.rid)?;
        self.note(rtype, id, &patients);
        Ok(Some(self.shown(s)))
    }

    /// The current version for an update or delete, telling hidden apart from absent.
    pub fn current_for_write(&mut self, rtype: &str, id: &str) -> Result<Current, StoreError> {
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
        let Some(current) = self.tx.current(rtype, id, false)? else {
            return Ok(None);
        };
        if !self.visible(&current)? {
            self.trail.denied = true;
            return Ok(None);
        }
        let found = self.tx.version(rtype, id, version)?;
        let patients = self.patients_of_rid(current.rid)?;
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
            accounting_search_allowed(req, own).map_err(StoreError::Forbidden)?;
        }
        let mut page = crate::search_sql::run_filtered(self.tx, req, self.filter.as_ref())?;
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

    pub fn history(
        &mut self,
        scope: &HistoryScope,
        since: Option<i64>,
        count: usize,
        cursor: Option<&str>,
    ) -> Result<HistoryPage, StoreError> {
        let mut page =
            self.tx
                .history_filtered(scope, since, count, cursor, self.filter.as_ref())?;
        if !self.view.everything {
            let mut kept = Vec::with_capacity(page.entries.len());
            for e in page.entries {
                let patients = self.patients_of_rid(e.version.rid)?;
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
        let Value::Object(o) = &mut event else {
            return s;
        };
        let mine: Vec<Value> = o
            .get("entity")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter(|e| {
                e.pointer("/what/reference")
                    .and_then(Value::as_str)
                    .and_then(|r| r.strip_prefix("Patient/"))
                    .is_some_and(|id| own.iter().any(|p| p == id))
            })
            .cloned()
            .collect();
        o.remove("outcomeDesc");
        if mine.is_empty() {
            o.remove("entity");
        } else {
            o.insert("entity".into(), Value::Array(mine));
        }
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
        Ok(rows
            .into_iter()
            .filter_map(|r| {
                let mut it = r.into_iter();
                Some((it.next()?.into_string()?, it.next()?.into_string()?))
            })
            .collect())
    }

    /// Whether the caller may write anything its scopes allow (administrators and backend
    /// services): no per-resource facts are needed then.
    fn writes_everything(&self) -> bool {
        self.view.everything
    }

    fn check_write(&mut self, action: Action, facts: &ResourceFacts) -> Result<(), Refusal> {
        match decide(
            &self.caller.subject,
            action,
            facts,
            &self.ctx,
            &self.caller.policy,
        ) {
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
        if !previous.deleted && !self.visible(previous)? {
            return Ok(Err(Refusal::Hidden));
        }
        if !previous.deleted && !self.writes_everything() {
            // the version being replaced is decided too: one may not change a resource that
            // concerns a patient one may not write for
            let before = self.stored_facts(previous)?;
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
        if !self.visible(previous)? {
            return Ok(Err(Refusal::Hidden));
        }
        let facts = self.stored_facts(previous)?;
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

/// What a patient may ask of the accounting of their own record: AuditEvents by time, action,
/// type, outcome, agent and their own record — never by another patient or resource (which
/// would tell whether that patient was returned by the same search as theirs), in a search of
/// AuditEvents or through `_has`, and sorted by time or id only.
fn accounting_search_allowed(req: &SearchRequest, own: &[String]) -> Result<(), String> {
    use fhir::search::{Clause, SearchValue, SortColumn};
    const ALLOWED: &[&str] = &[
        "_id",
        "_lastUpdated",
        "date",
        "action",
        "type",
        "subtype",
        "outcome",
        "agent",
        "agent-name",
        "agent-role",
        "altid",
        "source",
        "site",
    ];
    let refusal = || {
        "the accounting of your record can be searched by date, action, type, outcome, agent and your own record (entity or patient = your Patient)".to_string()
    };
    fn check(
        clause: &Clause,
        on_audit: bool,
        own: &[String],
        refusal: &dyn Fn() -> String,
    ) -> Result<(), String> {
        if let Some(has) = &clause.has {
            check(&has.clause, has.source_type == "AuditEvent", own, refusal)?;
            if has.source_type == "AuditEvent"
                && !matches!(has.reference_param.as_str(), "entity" | "patient" | "agent")
            {
                return Err(refusal());
            }
        }
        if let Some(chain) = &clause.chain {
            for (target, inner) in &chain.targets {
                check(inner, target == "AuditEvent", own, refusal)?;
            }
        }
        if !on_audit || clause.has.is_some() {
            return Ok(());
        }
        match clause.param.as_str() {
            "entity" | "patient" => {
                if clause.chain.is_some() {
                    return Ok(()); // the chained resources are filtered like any other
                }
                let all_own = !clause.values.is_empty()
                    && clause.values.iter().all(|v| match v {
                        SearchValue::Reference { target_type, id } => {
                            target_type.as_deref().is_none_or(|t| t == "Patient")
                                && own.iter().any(|p| p == id)
                        }
                        _ => false,
                    });
                if all_own { Ok(()) } else { Err(refusal()) }
            }
            p if ALLOWED.contains(&p) => Ok(()),
            _ => Err(refusal()),
        }
    }
    let top = req.resource_type == "AuditEvent";
    for clause in &req.clauses {
        check(clause, top, own, &refusal)?;
    }
    if top
        && req
            .sort
            .iter()
            .any(|k| matches!(&k.column, SortColumn::Param { code, .. } if code != "date"))
    {
        return Err(refusal());
    }
    Ok(())
}

/// Whether `caller` would be allowed to read a resource with these facts — the same rules as
/// every read (used to decide who a notification may go to).
pub fn would_see(tx: &mut Tx, caller: &Caller, facts: &ResourceFacts) -> Result<bool, StoreError> {
    let ctx = load_context(tx, &caller.subject)?;
    let v = view(&caller.subject, &ctx, &caller.policy);
    Ok(care::access::permits(&v, facts).is_permit())
}

/// Refuses a caller whose API client or account was disabled after its token was issued: the
/// token is valid until it expires, the right to use it is not.
fn check_enabled(tx: &mut Tx, subject: &Subject) -> Result<(), StoreError> {
    let query = if let Some(id) = subject.id.strip_prefix("client:") {
        Some(("SELECT disabled FROM api_clients WHERE client_id = ?", id))
    } else {
        subject
            .id
            .strip_prefix("user:")
            .map(|name| ("SELECT disabled FROM users WHERE username = ?", name))
    };
    let Some((sql, id)) = query else {
        return Ok(());
    };
    let rows = tx.conn().query(sql, &[id.into()])?;
    let enabled = rows
        .into_iter()
        .next()
        .and_then(|r| r.into_iter().next())
        .and_then(|v| v.as_i64())
        .is_some_and(|d| d == 0);
    if enabled {
        Ok(())
    } else {
        Err(StoreError::CallerDisabled(subject.id.clone()))
    }
}

/// Loads what the policy needs to know about the caller.
fn load_context(tx: &mut Tx, subject: &Subject) -> Result<Context, StoreError> {
    check_enabled(tx, subject)?;
    let now = tx.now();
    let mut ctx = Context {
        now_ms: now,
        ..Default::default()
    };
    if subject.has(Role::Patient)
        && let Some(pid) = subject.fhir_ids("Patient").into_iter().next()
        && let Some(p) = tx.current("Patient", &pid, false)?
        && let Some(body) = p
            .body
            .as_deref()
            .and_then(|b| serde_json::from_str::<Value>(b).ok())
    {
        let birth = body
            .get("birthDate")
            .and_then(Value::as_str)
            .and_then(BirthDate::parse);
        ctx.own_patient = Some((pid, birth));
    }
    if subject.has(Role::Proxy) {
        for rp_id in subject.fhir_ids("RelatedPerson") {
            let Some(rp) = tx.current("RelatedPerson", &rp_id, false)? else {
                continue;
            };
            let Some(rp) = rp
                .body
                .as_deref()
                .and_then(|b| serde_json::from_str::<Value>(b).ok())
            else {
                continue;
            };
            if rp.get("active").and_then(Value::as_bool) == Some(false) {
                continue;
            }
            if let Some(end) = rp
                .pointer("/period/end")
                .and_then(Value::as_str)
                .and_then(instant_ms)
                && end < now
            {
                continue;
            }
            let Some(patient_id) = rp.get("patient").and_then(|p| reference_id(p, "Patient"))
            else {
                continue;
            };
            let guardianship = rp
                .get("relationship")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .flat_map(|cc| {
                    cc.get("coding")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                })
                .any(|c| {
                    matches!(
                        c.get("code").and_then(Value::as_str),
                        Some("GUARD" | "POWATT" | "DPOWATT" | "HPOWATT")
                    )
                });
            let birth = tx
                .current("Patient", &patient_id, false)?
                .and_then(|p| p.body)
                .and_then(|b| serde_json::from_str::<Value>(&b).ok())
                .and_then(|b| {
                    b.get("birthDate")
                        .and_then(Value::as_str)
                        .and_then(BirthDate::parse)
                });
            ctx.proxy_for.push(ProxyLink {
                patient_id,
                birth_date: birth,
                guardianship,
            });
        }
    }
    ctx.consents = load_consents(tx, subject)?;
    // only clinicians and coordinators can break the glass
    if subject.grants.iter().any(|g| g.role.needs_organization()) {
        let rows = tx.conn().query(
            "SELECT patient_id, expires_at FROM break_glass WHERE subject = ? AND expires_at > ?",
            &[subject.id.as_str().into(), now.into()],
        )?;
        for r in rows {
            let mut it = r.into_iter();
            if let (Some(SqlValue::Text(p)), Some(exp)) =
                (it.next(), it.next().and_then(|v| v.as_i64()))
            {
                ctx.break_glass.push(BreakGlass {
                    patient_id: p,
                    expires_ms: exp,
                });
            }
        }
    }
    Ok(ctx)
}

/// Active Consents whose provisions name the caller (one of its FHIR identities or
/// organisations) as actor, flattened into rules.
fn load_consents(tx: &mut Tx, subject: &Subject) -> Result<Vec<ConsentRule>, StoreError> {
    let mut actors: Vec<(String, String)> = subject.fhir_users.clone();
    for o in subject.care_organizations() {
        actors.push(("Organization".into(), o));
    }
    if actors.is_empty() {
        return Ok(Vec::new());
    }
    let mut sql = String::from(
        "SELECT r.body FROM resources r WHERE r.rtype = 'Consent' AND r.deleted = 0 AND r.rid IN (SELECT rid FROM idx_reference WHERE rtype = 'Consent' AND param = 'actor' AND (",
    );
    let mut params = Vec::new();
    for (i, (t, id)) in actors.iter().enumerate() {
        if i > 0 {
            sql.push_str(" OR ");
        }
        sql.push_str("(target_type = ? AND target_id = ?)");
        params.push(SqlValue::Text(t.clone()));
        params.push(SqlValue::Text(id.clone()));
    }
    sql.push_str("))");
    let rows = tx.conn().query(&sql, &params)?;
    let mut out = Vec::new();
    for r in rows {
        let Some(body) = r.into_iter().next().and_then(SqlValue::into_string) else {
            continue;
        };
        let Ok(consent) = serde_json::from_str::<Value>(&body) else {
            continue;
        };
        if consent.get("status").and_then(Value::as_str) != Some("active") {
            continue;
        }
        let Some(patient_id) = consent
            .get("patient")
            .and_then(|p| reference_id(p, "Patient"))
        else {
            continue;
        };
        let mut stack: Vec<(&Value, bool)> = consent
            .get("provision")
            .map(|p| vec![(p, true)])
            .unwrap_or_default();
        while let Some((prov, inherited_permit)) = stack.pop() {
            let permit = match prov.get("type").and_then(Value::as_str) {
                Some("permit") => true,
                Some("deny") => false,
                _ => inherited_permit,
            };
            let names_actor = prov
                .get("actor")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|a| a.get("reference"))
                .filter_map(|r| r.get("reference").and_then(Value::as_str))
                .filter_map(fhir::search::index::split_reference)
                .any(|(t, id)| actors.iter().any(|(at, aid)| at == t && aid == id));
            if names_actor {
                let labels = prov
                    .get("securityLabel")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(|c| c.get("code").and_then(Value::as_str).map(str::to_string))
                    .collect();
                out.push(ConsentRule {
                    patient_id: patient_id.clone(),
                    permit,
                    labels,
                    start_ms: prov
                        .pointer("/period/start")
                        .and_then(Value::as_str)
                        .and_then(instant_ms),
                    end_ms: prov
                        .pointer("/period/end")
                        .and_then(Value::as_str)
                        .and_then(|e| {
                            fhir::primitive::parse_date_time(
                                e,
                                fhir::primitive::Precision::Fraction,
                                true,
                            )
                            .ok()
                            .map(|v| v.range().high)
                        }),
                });
            }
            for nested in prov
                .get("provision")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                stack.push((nested, permit));
            }
        }
    }
    Ok(out)
}
