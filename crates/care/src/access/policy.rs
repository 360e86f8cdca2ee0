//! The access policy: who may do what with which resource. One pure module, one entry point
//! for single decisions ([`decide`]) and one for what a caller may see ([`view`]), which the
//! store turns into the SQL filter of every read — so a search, its total, its pages and a read
//! by id all agree with `decide`.
//!
//! Rules (domain-rules.md, "Access, proxy and confidentiality"):
//! - alliance administrators and backend services (`system/` scopes, no role) see everything;
//! - coordinators and clinicians see the compartments of patients with a care relationship with
//!   their organisation (open referral, appointment, care team, registration), or of a patient
//!   they broke the glass for (reason required, time-limited, flagged);
//! - **a write never grants the access it is decided by**: a write is decided on the care
//!   relationships recorded *before* it. A relationship is established only by an act of someone
//!   who already cares for the patient — the patient's own organisation referring to another
//!   (the receiver then cares for the patient), booking into another organisation's schedule,
//!   adding a care-team member — or by registering a new patient (a Patient created with the
//!   caller's organisation as `managingOrganization`, under an id no record uses), or by
//!   break-the-glass. A Task, ServiceRequest, Encounter, CareTeam or Appointment that names the
//!   caller's own organisation does not, by itself, open a patient the caller does not already
//!   care for;
//! - a resource that touches several patients is written only if the caller may write for
//!   **each** of them (a message about an unrelated child addressed to one's own patient is
//!   refused);
//! - a patient sees their own record from a configurable age (12);
//! - a proxy (parent/guardian, a RelatedPerson) sees everything of a child under 12, nothing
//!   labelled sensitive (ETH PSY SEX HIV STD SDV BH SUD) or restricted (R, V) from 12 to 17, and
//!   nothing from the 18th birthday unless the patient permits it by Consent or a guardianship
//!   is recorded;
//! - Consent provisions naming the caller are applied before these defaults: a deny hides the
//!   patient (or the labels it names); a permit grants access — to the whole record when it
//!   names no `securityLabel`, else to the record without sensitive or restricted resources
//!   except those whose every withheld label the permit names (a permit for N opens normal
//!   records only; a permit for PSY and R opens mental-health records too);
//! - auditors read the audit trail; patients read the accounting of their own record (the
//!   store shows them only their own entity, the agent, time, action and purpose);
//! - SMART scopes are intersected with all of it: a type the scopes do not allow reading is
//!   absent from every answer — includes, revincludes, `_has`, chains and history too.

use super::age::{BirthDate, age_on};
use super::scopes::{Action, ScopeContext, Scopes};

/// Sensitivity codes (v3 ActCode) that withhold a resource from a 12–17-year-old's proxy.
pub const SENSITIVE_CODES: &[&str] = &["ETH", "PSY", "SEX", "HIV", "STD", "SDV", "BH", "SUD"];
/// Confidentiality codes (v3 Confidentiality) that do the same.
pub const RESTRICTED_CONFIDENTIALITY: &[&str] = &["R", "V"];
pub const ACT_CODE_SYSTEM: &str = "http://terminology.hl7.org/CodeSystem/v3-ActCode";
pub const CONFIDENTIALITY_SYSTEM: &str = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality";

/// Every label code that a limited proxy view hides.
pub fn withheld_from_limited_proxies() -> Vec<&'static str> {
    SENSITIVE_CODES
        .iter()
        .chain(RESTRICTED_CONFIDENTIALITY)
        .copied()
        .collect()
}

/// Resource types every signed-in caller may read: the alliance directory.
pub const DIRECTORY_TYPES: &[&str] = &[
    "Endpoint",
    "HealthcareService",
    "Location",
    "Medication",
    "Organization",
    "Practitioner",
    "PractitionerRole",
    "Questionnaire",
    "Schedule",
    "Slot",
];

/// A role, bound to an organisation where it applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    AllianceAdmin,
    Coordinator,
    Clinician,
    ReferringClinician,
    Patient,
    Proxy,
    Auditor,
}

impl Role {
    pub const ALL: [Role; 7] = [
        Role::AllianceAdmin,
        Role::Coordinator,
        Role::Clinician,
        Role::ReferringClinician,
        Role::Patient,
        Role::Proxy,
        Role::Auditor,
    ];

    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::AllianceAdmin => "alliance-admin",
            Role::Coordinator => "coordinator",
            Role::Clinician => "clinician",
            Role::ReferringClinician => "referring-clinician",
            Role::Patient => "patient",
            Role::Proxy => "proxy",
            Role::Auditor => "auditor",
        }
    }

    /// Whether the role is held on behalf of an organisation.
    pub fn needs_organization(self) -> bool {
        matches!(
            self,
            Role::Coordinator | Role::Clinician | Role::ReferringClinician
        )
    }

    fn cares(self) -> bool {
        self.needs_organization()
    }

    /// The FHIR resource types a holder of the role may be (`--fhir-user`), and whether the
    /// role needs one: a patient is their Patient, a proxy the RelatedPerson(s) the policy
    /// follows to the child; the others may name the Practitioner they are.
    pub fn identity(self) -> (&'static [&'static str], bool) {
        match self {
            Role::Patient => (&["Patient"], true),
            Role::Proxy => (&["RelatedPerson"], true),
            Role::AllianceAdmin
            | Role::Coordinator
            | Role::Clinician
            | Role::ReferringClinician
            | Role::Auditor => (&["Practitioner", "PractitionerRole"], false),
        }
    }
}

/// A role held, with its organisation (an Organization id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub role: Role,
    pub organization: Option<String>,
}

/// Who is asking.
#[derive(Debug, Clone)]
pub struct Subject {
    /// The user or client id, for the audit trail.
    pub id: String,
    pub grants: Vec<Grant>,
    /// The FHIR resources the caller is (`Practitioner/…`, `Patient/…`, `RelatedPerson/…`; a
    /// parent of two children is two RelatedPersons).
    pub fhir_users: Vec<(String, String)>,
    pub scopes: Scopes,
}

impl Subject {
    pub fn has(&self, role: Role) -> bool {
        self.grants.iter().any(|g| g.role == role)
    }

    /// A backend service: an API client with `system/` scopes and no role.
    pub fn is_backend_service(&self) -> bool {
        self.grants.is_empty() && self.scopes.has_system()
    }

    /// The ids of the caller's FHIR resources of one type.
    pub fn fhir_ids(&self, resource_type: &str) -> Vec<String> {
        self.fhir_users
            .iter()
            .filter(|(t, _)| t == resource_type)
            .map(|(_, id)| id.clone())
            .collect()
    }

    /// The organisations the caller provides care for.
    pub fn care_organizations(&self) -> Vec<String> {
        let mut orgs: Vec<String> = self
            .grants
            .iter()
            .filter(|g| g.role.cares())
            .filter_map(|g| g.organization.clone())
            .collect();
        orgs.sort();
        orgs.dedup();
        orgs
    }

    fn unrestricted(&self) -> bool {
        self.has(Role::AllianceAdmin) || self.is_backend_service()
    }
}

/// Ages and durations an alliance may change.
#[derive(Debug, Clone)]
pub struct PolicyConfig {
    /// A proxy sees everything of a child younger than this.
    pub proxy_full_until: i32,
    /// A proxy's access ends on this birthday (unless consented or a guardian).
    pub proxy_ends_at: i32,
    /// A patient sees their own record from this age.
    pub patient_self_from: i32,
    /// From this birthday a young person's questionnaires are theirs to answer: a parent no
    /// longer answers them for the young person.
    pub proxy_answers_until: i32,
    /// How long break-the-glass access lasts.
    pub break_glass_minutes: i64,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig {
            proxy_full_until: 12,
            proxy_ends_at: 18,
            patient_self_from: 12,
            proxy_answers_until: 16,
            break_glass_minutes: 60,
        }
    }
}

/// A patient the caller is a proxy for.
#[derive(Debug, Clone)]
pub struct ProxyLink {
    pub patient_id: String,
    pub birth_date: Option<BirthDate>,
    /// A legal guardianship or conservatorship is recorded (it outlives the 18th birthday).
    pub guardianship: bool,
}

/// A Consent provision that names the caller (or its organisation) as actor.
#[derive(Debug, Clone)]
pub struct ConsentRule {
    pub patient_id: String,
    pub permit: bool,
    /// The labels the provision is about; empty means the whole record.
    pub labels: Vec<String>,
    /// Validity in epoch milliseconds; open when `None`.
    pub start_ms: Option<i64>,
    pub end_ms: Option<i64>,
}

/// Break-the-glass access the caller holds.
#[derive(Debug, Clone)]
pub struct BreakGlass {
    pub patient_id: String,
    pub expires_ms: i64,
}

/// The facts about the caller that the rules need, loaded at the start of a request.
#[derive(Debug, Clone, Default)]
pub struct Context {
    pub now_ms: i64,
    /// The caller's own Patient record and birth date (role patient).
    pub own_patient: Option<(String, Option<BirthDate>)>,
    pub proxy_for: Vec<ProxyLink>,
    pub consents: Vec<ConsentRule>,
    pub break_glass: Vec<BreakGlass>,
}

/// How much of one patient's compartment is visible.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Nothing labelled sensitive or restricted.
    WithoutSensitive,
    Full,
}

impl Level {
    /// The labels this level withholds.
    pub fn withheld(self) -> Vec<String> {
        match self {
            Level::Full => Vec::new(),
            Level::WithoutSensitive => {
                let mut l: Vec<String> = withheld_from_limited_proxies()
                    .into_iter()
                    .map(str::to_string)
                    .collect();
                l.sort();
                l
            }
        }
    }
}

/// Access to one patient's compartment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatientAccess {
    pub patient_id: String,
    /// Labels whose resources stay hidden (sorted; empty: the whole compartment).
    pub withheld: Vec<String>,
    /// Granted by break-the-glass: every access is flagged in the audit trail.
    pub break_glass: bool,
}

impl PatientAccess {
    pub fn is_full(&self) -> bool {
        self.withheld.is_empty()
    }
}

/// Who may read the audit trail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuditAccess {
    None,
    All,
    /// The accounting of these patients' records.
    Patients(Vec<String>),
}

/// What a caller may read. The store turns it into SQL; [`permits`] applies it to one resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessView {
    /// Every patient's records (administrators, backend services) — within `types`.
    pub everything: bool,
    /// The resource types the scopes let the caller read or search; `None`: every type.
    pub types: Option<Vec<String>>,
    /// The directory types.
    pub directory: bool,
    /// Full access to the compartments of patients with a care relationship with these.
    pub care_organizations: Vec<String>,
    /// Access to these patients' compartments.
    pub patients: Vec<PatientAccess>,
    /// Patients hidden whatever else grants them (Consent deny).
    pub denied_patients: Vec<String>,
    /// Labels hidden for one patient (Consent deny with labels).
    pub withheld: Vec<(String, Vec<String>)>,
    pub audit: AuditAccess,
    /// The patients a family member acts for on scheduling (book, cancel, the waitlist): a
    /// proxy's children while the proxy right lasts (to 18, or by guardianship), a patient's
    /// own record from [`PolicyConfig::patient_self_from`]. A Consent that lets a parent
    /// *see* an adult's record does not let them act for the adult.
    pub acts_for: Vec<String>,
    /// The patients whose own questionnaires (the transition readiness assessment) the caller
    /// may answer: their own from [`PolicyConfig::patient_self_from`], a child's while younger
    /// than [`PolicyConfig::proxy_answers_until`] (a guardian's beyond).
    pub answers_for: Vec<String>,
}

impl AccessView {
    fn nothing() -> AccessView {
        AccessView {
            everything: false,
            types: None,
            directory: false,
            care_organizations: Vec::new(),
            patients: Vec::new(),
            denied_patients: Vec::new(),
            withheld: Vec::new(),
            audit: AuditAccess::None,
            acts_for: Vec::new(),
            answers_for: Vec::new(),
        }
    }

    fn grant(&mut self, patient_id: &str, level: Level, break_glass: bool) {
        self.grant_withholding(patient_id, level.withheld(), break_glass)
    }

    /// Grants a patient's compartment but the resources carrying one of `withheld`; two grants
    /// of one patient withhold only what both withhold.
    fn grant_withholding(
        &mut self,
        patient_id: &str,
        mut withheld: Vec<String>,
        break_glass: bool,
    ) {
        withheld.sort();
        withheld.dedup();
        match self
            .patients
            .iter_mut()
            .find(|p| p.patient_id == patient_id)
        {
            Some(p) => {
                p.withheld.retain(|l| withheld.contains(l));
                p.break_glass |= break_glass && withheld.is_empty();
            }
            None => self.patients.push(PatientAccess {
                patient_id: patient_id.to_string(),
                break_glass: break_glass && withheld.is_empty(),
                withheld,
            }),
        }
    }

    /// Whether the scopes let the caller read resources of this type at all.
    pub fn reads_type(&self, resource_type: &str) -> bool {
        self.types
            .as_ref()
            .is_none_or(|t| t.iter().any(|x| x == resource_type))
    }
}

/// What the rules need to know about one resource.
#[derive(Debug, Clone, Default)]
pub struct ResourceFacts {
    pub resource_type: String,
    /// The patients whose compartment holds it.
    pub patients: Vec<String>,
    /// Security label codes from `meta.security`.
    pub labels: Vec<String>,
    /// The care relationships `(patient, organisation)` of those patients as recorded before
    /// the action — never the ones the resource being written would create.
    pub relationships: Vec<(String, String)>,
    /// For the creation of a Patient under an id no record uses: the organisation it is
    /// registered with (`managingOrganization`), the one relationship a write brings along.
    pub registration: Option<String>,
}

impl ResourceFacts {
    /// The facts about one of the patients only (a write is decided per patient).
    fn for_patient(&self, patient: &str) -> ResourceFacts {
        ResourceFacts {
            resource_type: self.resource_type.clone(),
            patients: vec![patient.to_string()],
            labels: self.labels.clone(),
            relationships: self
                .relationships
                .iter()
                .filter(|(p, _)| p == patient)
                .cloned()
                .collect(),
            registration: self.registration.clone(),
        }
    }
}

/// A decision, with the reason when it is a denial.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Permit,
    Deny(String),
}

impl Decision {
    pub fn is_permit(&self) -> bool {
        *self == Decision::Permit
    }
}

fn consent_in_force(c: &ConsentRule, now: i64) -> bool {
    c.start_ms.is_none_or(|s| s <= now) && c.end_ms.is_none_or(|e| now <= e)
}

/// What `subject` may read, given the facts in `ctx`.
pub fn view(subject: &Subject, ctx: &Context, config: &PolicyConfig) -> AccessView {
    let mut v = AccessView::nothing();
    v.types = subject.scopes.readable_types();
    if subject.unrestricted() {
        v.everything = true;
        v.directory = true;
        v.audit = AuditAccess::All;
        return v;
    }
    let patient_scope_only = !subject.scopes.scopes.is_empty()
        && subject
            .scopes
            .scopes
            .iter()
            .all(|s| s.context == ScopeContext::Patient);
    if !subject.grants.is_empty() {
        v.directory = true;
    }
    if subject.has(Role::Auditor) {
        v.audit = AuditAccess::All;
    }
    if !patient_scope_only {
        v.care_organizations = subject.care_organizations();
        // break the glass: full access, flagged, until it expires
        if subject.grants.iter().any(|g| g.role.cares()) {
            for bg in ctx.break_glass.iter().filter(|b| b.expires_ms > ctx.now_ms) {
                v.grant(&bg.patient_id, Level::Full, true);
            }
        }
    }
    if subject.has(Role::Patient)
        && let Some((pid, birth)) = &ctx.own_patient
    {
        let old_enough = birth.is_none_or(|b| age_on(b, ctx.now_ms) >= config.patient_self_from);
        if old_enough {
            v.grant(pid, Level::Full, false);
            v.acts_for.push(pid.clone());
            v.answers_for.push(pid.clone());
            v.audit = match std::mem::replace(&mut v.audit, AuditAccess::None) {
                AuditAccess::All => AuditAccess::All,
                AuditAccess::Patients(mut ids) => {
                    ids.push(pid.clone());
                    AuditAccess::Patients(ids)
                }
                AuditAccess::None => AuditAccess::Patients(vec![pid.clone()]),
            };
        }
    }
    if subject.has(Role::Proxy) {
        for link in &ctx.proxy_for {
            // an unknown birth date is treated as a teenager's: nothing sensitive
            let level = match link.birth_date.map(|b| age_on(b, ctx.now_ms)) {
                Some(age) if age < config.proxy_full_until => Some(Level::Full),
                Some(age) if age < config.proxy_ends_at => Some(Level::WithoutSensitive),
                Some(_) if link.guardianship => Some(Level::Full),
                Some(_) => None,
                None => Some(Level::WithoutSensitive),
            };
            if let Some(level) = level {
                v.grant(&link.patient_id, level, false);
            }
            // a parent acts for a child under 18 (a guardian beyond); for someone whose age
            // is not known, only a guardian does
            let acts = match link.birth_date.map(|b| age_on(b, ctx.now_ms)) {
                Some(age) => age < config.proxy_ends_at || link.guardianship,
                None => link.guardianship,
            };
            if acts {
                v.acts_for.push(link.patient_id.clone());
            }
            let answers = match link.birth_date.map(|b| age_on(b, ctx.now_ms)) {
                Some(age) => age < config.proxy_answers_until || link.guardianship,
                None => link.guardianship,
            };
            if answers {
                v.answers_for.push(link.patient_id.clone());
            }
        }
    }
    // Consent provisions come before the defaults above
    for c in ctx
        .consents
        .iter()
        .filter(|c| consent_in_force(c, ctx.now_ms))
    {
        match (c.permit, c.labels.is_empty()) {
            (true, true) => v.grant(&c.patient_id, Level::Full, false),
            (true, false) => {
                // a permit limited to labels opens what carries only those of the withheld labels
                let withheld = Level::WithoutSensitive
                    .withheld()
                    .into_iter()
                    .filter(|l| !c.labels.contains(l))
                    .collect();
                v.grant_withholding(&c.patient_id, withheld, false)
            }
            (false, true) => v.denied_patients.push(c.patient_id.clone()),
            (false, false) => v.withheld.push((c.patient_id.clone(), c.labels.clone())),
        }
    }
    v.denied_patients.sort();
    v.denied_patients.dedup();
    v.acts_for.sort();
    v.acts_for.dedup();
    v.answers_for.sort();
    v.answers_for.dedup();
    v
}

/// Whether a view admits a resource. The store's SQL filter implements exactly this.
/// Which AuditEvents a view opens: none when the scopes do not let the caller read AuditEvents,
/// all for those who see everything and auditors, a patient's own accounting otherwise. The
/// audit store filters by it; [`permits`] decides one event by it.
pub fn audit_view(v: &AccessView) -> AuditAccess {
    if !v.reads_type("AuditEvent") {
        return AuditAccess::None;
    }
    if v.everything {
        return AuditAccess::All;
    }
    v.audit.clone()
}

pub fn permits(v: &AccessView, r: &ResourceFacts) -> Decision {
    if !v.reads_type(&r.resource_type) {
        return Decision::Deny(format!(
            "the granted scopes do not allow reading {}",
            r.resource_type
        ));
    }
    if v.everything {
        return Decision::Permit;
    }
    if r.resource_type == "AuditEvent" {
        return match &audit_view(v) {
            AuditAccess::All => Decision::Permit,
            AuditAccess::Patients(ids) if r.patients.iter().any(|p| ids.contains(p)) => {
                Decision::Permit
            }
            _ => Decision::Deny(
                "the audit trail is for auditors, and for patients about their own record".into(),
            ),
        };
    }
    if DIRECTORY_TYPES.contains(&r.resource_type.as_str()) {
        return if v.directory {
            Decision::Permit
        } else {
            Decision::Deny("the directory is for alliance users".into())
        };
    }
    if r.patients.is_empty() {
        return Decision::Deny(format!(
            "this {} belongs to no patient the caller may see",
            r.resource_type
        ));
    }
    if r.patients.iter().any(|p| v.denied_patients.contains(p)) {
        return Decision::Deny("a Consent withholds this patient's record from the caller".into());
    }
    if v.withheld
        .iter()
        .any(|(p, labels)| r.patients.contains(p) && r.labels.iter().any(|l| labels.contains(l)))
    {
        return Decision::Deny(
            "a Consent withholds resources with this label from the caller".into(),
        );
    }
    let related = r
        .relationships
        .iter()
        .any(|(p, o)| r.patients.contains(p) && v.care_organizations.contains(o))
        || r.resource_type == "Patient"
            && r.registration
                .as_ref()
                .is_some_and(|o| v.care_organizations.contains(o));
    if related {
        return Decision::Permit;
    }
    for p in &v.patients {
        if r.patients.contains(&p.patient_id) && !r.labels.iter().any(|l| p.withheld.contains(l)) {
            return Decision::Permit;
        }
    }
    if v.patients
        .iter()
        .any(|p| r.patients.contains(&p.patient_id))
    {
        return Decision::Deny("this resource is labelled sensitive and is not shared with a proxy of a 12–17-year-old".into());
    }
    Decision::Deny("no care relationship, consent or proxy right covers this patient".into())
}

/// The one decision: may `subject` do `action` on the resource described by `facts`?
/// For updates, call it for the stored version and for the new one.
pub fn decide(
    subject: &Subject,
    action: Action,
    facts: &ResourceFacts,
    ctx: &Context,
    config: &PolicyConfig,
) -> Decision {
    decide_with(&view(subject, ctx, config), subject, action, facts)
}

/// [`decide`] with the caller's view already built (`view(subject, ctx, config)`), for a
/// caller that decides many resources.
pub fn decide_with(
    v: &AccessView,
    subject: &Subject,
    action: Action,
    facts: &ResourceFacts,
) -> Decision {
    if !subject.scopes.allows(&facts.resource_type, action) {
        return Decision::Deny(format!(
            "the granted scopes ({}) do not allow {} on {}",
            subject.scopes.to_scope_string(),
            action_name(action),
            facts.resource_type
        ));
    }
    if !action.is_write() {
        return permits(v, facts);
    }
    if facts.resource_type == "AuditEvent" {
        return Decision::Deny("AuditEvents are written by the server only".into());
    }
    if subject.unrestricted() {
        return Decision::Permit;
    }
    if facts.resource_type == "Subscription" {
        return Decision::Deny(
            "subscriptions see every resource: only administrators and backend services may write them"
                .into(),
        );
    }
    let writer = subject.grants.iter().any(|g| g.role.cares());
    if !writer {
        return decide_family_write(v, subject, action, facts);
    }
    if DIRECTORY_TYPES.contains(&facts.resource_type.as_str()) {
        return if subject.has(Role::Coordinator) {
            Decision::Permit
        } else {
            Decision::Deny("only coordinators and administrators change the directory".into())
        };
    }
    if facts.patients.len() <= 1 {
        return permits(v, facts);
    }
    // a resource that touches several patients: the caller must be allowed for each
    for p in &facts.patients {
        if let Decision::Deny(why) = permits(v, &facts.for_patient(p)) {
            return Decision::Deny(format!(
                "this resource also concerns Patient/{p}, whose record the caller may not change ({why})"
            ));
        }
    }
    Decision::Permit
}

/// The resource types a family member (a patient, a proxy) writes: appointments — booking,
/// cancelling, asking for an earlier slot, accepting a waitlist offer. Which changes of an
/// Appointment a family member may make is the booking rule's
/// (`care::booking::family_change`).
pub const FAMILY_WRITE_TYPES: &[&str] = &["Appointment", "QuestionnaireResponse"];

/// Whether the caller writes as a family member (a patient or a proxy, caring for no one).
pub fn is_family(subject: &Subject) -> bool {
    !subject.grants.iter().any(|g| g.role.cares())
        && !subject.unrestricted()
        && (subject.has(Role::Patient) || subject.has(Role::Proxy))
}

/// A write by a caller who cares for no one: a family member may create and update the
/// appointments of each patient they act for ([`AccessView::acts_for`]) and may see (a
/// 12–17-year-old's sensitive appointment stays theirs alone), and the questionnaire
/// responses of each patient they answer for ([`AccessView::answers_for`]: a young person's
/// own; a parent's for a child under 16); nothing else, and never a deletion.
fn decide_family_write(
    v: &AccessView,
    subject: &Subject,
    action: Action,
    facts: &ResourceFacts,
) -> Decision {
    let family = is_family(subject);
    if !family || !FAMILY_WRITE_TYPES.contains(&facts.resource_type.as_str()) {
        return Decision::Deny(if family {
            format!(
                "a patient or family member may book, cancel and ask for appointments and answer their own questionnaires, not change a {}",
                facts.resource_type
            )
        } else {
            "this role may read but not change records".into()
        });
    }
    let answering = facts.resource_type == "QuestionnaireResponse";
    if action == Action::Delete {
        return Decision::Deny(if answering {
            "a questionnaire response is not deleted by the family (amend it, or ask the care team to mark it entered in error)".into()
        } else {
            "an appointment is cancelled, not deleted (set its status to cancelled)".into()
        });
    }
    if facts.patients.is_empty() {
        return Decision::Deny(format!(
            "this {} names no patient",
            if answering {
                "questionnaire response"
            } else {
                "appointment"
            }
        ));
    }
    for p in &facts.patients {
        if answering {
            if !v.answers_for.contains(p) {
                return Decision::Deny(if v.acts_for.contains(p) {
                    format!(
                        "Patient/{p}'s questionnaires are their own to answer from 16: a parent cannot fill one in for them"
                    )
                } else {
                    format!(
                        "the caller does not answer for Patient/{p} (a young person answers for themselves from 12, a parent for a child under 16)"
                    )
                });
            }
        } else if !v.acts_for.contains(p) {
            return Decision::Deny(format!(
                "the caller does not act for Patient/{p} (a parent acts for a child until 18, a young person for themselves from 12)"
            ));
        }
        if let Decision::Deny(why) = permits(v, &facts.for_patient(p)) {
            return Decision::Deny(why);
        }
    }
    Decision::Permit
}

fn action_name(a: Action) -> &'static str {
    match a {
        Action::Create => "create",
        Action::Read => "read",
        Action::Update => "update",
        Action::Delete => "delete",
        Action::Search => "search",
    }
}

/// The identity review queue (pairs of Patient records that may be one person): who may see a
/// pair and who may decide it. Coordinators and alliance administrators review (and backend
/// services); the scopes must allow reading Patients, and a decision — which writes the Person
/// resource that links the records — must also allow writing Persons; and a pair is shown only
/// to a caller who may read **both** records (`pair` holds the two Patients' facts).
pub fn decide_identity_review(
    subject: &Subject,
    decision: bool,
    pair: &ResourceFacts,
    ctx: &Context,
    config: &PolicyConfig,
) -> Decision {
    decide_identity_review_with(&view(subject, ctx, config), subject, decision, pair)
}

/// [`decide_identity_review`] with the caller's view already built.
pub fn decide_identity_review_with(
    v: &AccessView,
    subject: &Subject,
    decision: bool,
    pair: &ResourceFacts,
) -> Decision {
    if !(subject.unrestricted() || subject.has(Role::Coordinator)) {
        return Decision::Deny(
            "the identity review queue is for coordinators and alliance administrators".into(),
        );
    }
    let reads = subject.scopes.allows("Patient", Action::Read)
        || subject.scopes.allows("Patient", Action::Search);
    if !reads {
        return Decision::Deny(format!(
            "the granted scopes ({}) do not allow reading Patients, which the review queue shows",
            subject.scopes.to_scope_string()
        ));
    }
    if decision
        && !(subject.scopes.allows("Person", Action::Create)
            && subject.scopes.allows("Person", Action::Update))
    {
        return Decision::Deny(format!(
            "the granted scopes ({}) do not allow writing the Person resource a decision links the records with",
            subject.scopes.to_scope_string()
        ));
    }
    for p in &pair.patients {
        let mut one = pair.for_patient(p);
        one.resource_type = "Patient".into();
        if !permits(v, &one).is_permit() {
            return Decision::Deny(
                "the pair includes a record the caller has no care relationship with".into(),
            );
        }
    }
    Decision::Permit
}

/// Break-the-glass: only clinicians and coordinators (who care for patients on an
/// organisation's behalf) may, with scopes that read Patients, and with a reason of at least
/// ten characters saying why the record is needed now ([`break_glass_reason_ok`]). The grant is
/// time-limited
/// ([`PolicyConfig::break_glass_minutes`]) and flags every access it gives.
pub fn decide_break_glass(subject: &Subject) -> Decision {
    if !subject.grants.iter().any(|g| g.role.cares()) {
        return Decision::Deny("only clinicians and coordinators may break the glass".into());
    }
    if !subject.scopes.allows("Patient", Action::Read) {
        return Decision::Deny(format!(
            "the granted scopes ({}) do not allow this on Patient",
            subject.scopes.to_scope_string()
        ));
    }
    Decision::Permit
}

/// An organisation's referral worklists and measures (`organization`; `None`: the alliance's
/// measures across every organisation): for those who hold a role at that organisation (its
/// worklists still show only the referrals they may read), with scopes that read Tasks; the
/// alliance-wide measures and any organisation's for those who see everything.
pub fn decide_organization_reports(
    subject: &Subject,
    sees_everything: bool,
    organization: Option<&str>,
) -> Decision {
    if !subject.scopes.allows("Task", Action::Read) {
        return Decision::Deny(format!(
            "the granted scopes ({}) do not allow reading Tasks",
            subject.scopes.to_scope_string()
        ));
    }
    if sees_everything {
        return Decision::Permit;
    }
    match organization {
        None => Decision::Deny(
            "the alliance-wide measures are for administrators; name your organization".into(),
        ),
        Some(org)
            if subject
                .grants
                .iter()
                .any(|g| g.role.cares() && g.organization.as_deref() == Some(org)) =>
        {
            Decision::Permit
        }
        Some(org) => Decision::Deny(format!(
            "the referral worklists and measures of Organization/{org} are for those who work there"
        )),
    }
}

/// Whether the measures a caller may read are shown in full: to the alliance's own people (an
/// administrator, or someone holding a care role at a member organisation). Anyone else — a
/// backend service of a research partner, an auditor — gets them as public reporting does, with
/// small cells suppressed (`care::measures::suppress`).
pub fn reports_in_full(subject: &Subject) -> bool {
    subject
        .grants
        .iter()
        .any(|g| g.role == Role::AllianceAdmin || (g.role.cares() && g.organization.is_some()))
}

/// What a family member's questionnaire response may be, beyond whom it is for
/// ([`decide_family_write`]): only the transition readiness assessment (`readiness`), written
/// as the writer — the young person (`Patient/{subject}`) or a RelatedPerson of theirs
/// (`writer`, `None` when the caller is neither) — and never a change to a response someone
/// else (the care team) wrote.
pub fn decide_family_answer(
    readiness: bool,
    writer: Option<&str>,
    previous_author: Option<&str>,
    subject: &str,
) -> Decision {
    if !readiness {
        return Decision::Deny(
            "a family answers the transition readiness assessment, not other questionnaires".into(),
        );
    }
    let Some(writer) = writer else {
        return Decision::Deny(format!(
            "the caller is neither Patient/{subject} nor a related person of theirs"
        ));
    };
    if let Some(a) = previous_author
        && a != writer
        && a != format!("Patient/{subject}")
    {
        return Decision::Deny(format!(
            "this response was written by {a}: it is not the family's to change"
        ));
    }
    Decision::Permit
}

/// The console's accounts (users and API clients): listed and enabled or disabled by alliance
/// administrators only.
pub fn decide_accounts(subject: &Subject) -> Decision {
    if subject.has(Role::AllianceAdmin) {
        Decision::Permit
    } else {
        Decision::Deny("accounts and API clients are managed by alliance administrators".into())
    }
}

/// The fewest characters a break-the-glass reason may have.
pub const BREAK_GLASS_REASON_MIN: usize = 10;

/// Whether a break-the-glass reason says enough (a 400 otherwise, before any access).
pub fn break_glass_reason_ok(reason: &str) -> bool {
    reason.trim().chars().count() >= BREAK_GLASS_REASON_MIN
}
