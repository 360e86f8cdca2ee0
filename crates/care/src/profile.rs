//! The alliance's own FHIR definitions, by URL: the extensions it reads and writes and the
//! code systems it codes with. One list, so a URL is spelled once; the README and the
//! CapabilityStatement describe each extension.

/// The canonical base of Continuum's definitions.
pub const CANONICAL_BASE: &str = "http://continuum-alliance.org/fhir";

/// HealthcareService: the ages served, a `valueRange` in years (`a`).
pub const AGE_RANGE: &str = "http://continuum-alliance.org/fhir/StructureDefinition/age-range";
/// HealthcareService, Schedule, PractitionerRole: how visits happen, `valueCode` `in-person` |
/// `video` (repeating).
pub const MODALITY: &str = "http://continuum-alliance.org/fhir/StructureDefinition/modality";
/// HealthcareService: whether new patients are taken, `valueBoolean` (default true).
pub const ACCEPTING: &str =
    "http://continuum-alliance.org/fhir/StructureDefinition/accepting-new-patients";
/// PractitionerRole: a US state (USPS code) where the clinician is licensed, `valueCode`
/// (repeating).
pub const LICENSED_STATE: &str =
    "http://continuum-alliance.org/fhir/StructureDefinition/licensed-state";
/// Schedule: the length of each generated slot in minutes, `valueInteger`.
pub const SLOT_MINUTES: &str =
    "http://continuum-alliance.org/fhir/StructureDefinition/slot-minutes";
/// Slot: when a hold lapses, `valueInstant`.
pub const HOLD_EXPIRES: &str =
    "http://continuum-alliance.org/fhir/StructureDefinition/hold-expires";
/// Slot: the Appointment holding it, `valueReference`.
pub const HELD_BY: &str = "http://continuum-alliance.org/fhir/StructureDefinition/held-by";
/// Appointment: until when a waitlist offer is held, `valueInstant`.
pub const WAITLIST_OFFER: &str =
    "http://continuum-alliance.org/fhir/StructureDefinition/waitlist-offer";
/// Encounter: care a minor consented to alone, `valueCode` = a v3 ActCode sensitivity.
pub const MINOR_CONSENTED_CARE: &str =
    "http://continuum-alliance.org/fhir/StructureDefinition/minor-consented-care";
/// HealthcareService: care in this service is sensitive, `valueCode` = a v3 ActCode
/// sensitivity; what is booked in it is labelled so.
pub const SERVICE_SENSITIVITY: &str =
    "http://continuum-alliance.org/fhir/StructureDefinition/service-sensitivity";
/// Patient (a newborn): the mother's identifier, `valueIdentifier` (HL7 v2 PID-21); with the
/// birth date it names the child of a single birth, wherever the child is registered.
pub const MOTHER_IDENTIFIER: &str =
    "http://continuum-alliance.org/fhir/StructureDefinition/mother-identifier";
/// Task (a referral): a milestone it reached and when — sub-extensions `milestone`
/// (`valueCode` accepted | booked | seen | reported | closed) and `at` (`valueInstant`); kept by
/// the server.
pub const REFERRAL_MILESTONE: &str =
    "http://continuum-alliance.org/fhir/StructureDefinition/referral-milestone";
/// Task (a referral): when a milestone is due under the service level of its priority —
/// sub-extensions `milestone` (`valueCode` accepted | booked | seen) and `by` (`valueInstant`);
/// set by the server when the referral is written.
pub const REFERRAL_DUE: &str =
    "http://continuum-alliance.org/fhir/StructureDefinition/referral-due";
/// Task.businessStatus: HL7 BSeR's Task business status codes.
pub const BSER_BUSINESS_STATUS: &str =
    "http://hl7.org/fhir/us/bser/CodeSystem/TaskBusinessStatusCS";
/// Task.code: which of the alliance's kinds of task a Task is; a Task coded with a kind other
/// than `referral` is not a referral (a Task without one is).
pub const TASK_KIND: &str = "http://continuum-alliance.org/fhir/CodeSystem/task-kind";
/// Provenance.activity: the referral step it records.
pub const REFERRAL_STEP: &str = "http://continuum-alliance.org/fhir/CodeSystem/referral-step";
/// The transition elements (`care::transition::Element::code`): a Task with this code, for the
/// young person, `completed`, records that the element was done (on its `executionPeriod.end`,
/// else `lastModified`, else `authoredOn`).
pub const TRANSITION_ELEMENT: &str =
    "http://continuum-alliance.org/fhir/CodeSystem/transition-element";
/// Task.businessStatus of an element Task the transition scheduler keeps: `due`, `overdue`
/// (`care::transition::Mark`).
pub const TRANSITION_STATE: &str = "http://continuum-alliance.org/fhir/CodeSystem/transition-state";
/// DocumentReference.type (and the transfer package's Composition.type): the transition
/// documents — `medical-summary`, `emergency-plan`, `transfer-letter`, `transfer-package`.
pub const TRANSITION_DOCUMENT: &str =
    "http://continuum-alliance.org/fhir/CodeSystem/transition-document";
/// QuestionnaireResponse: the readiness assessment's score, set by the server (complex:
/// `total` and each domain, valueInteger 0–100).
pub const READINESS_SCORE: &str =
    "http://continuum-alliance.org/fhir/StructureDefinition/readiness-score";
/// Address: a position (the standard FHIR geolocation extension, not the alliance's own).
pub const GEOLOCATION: &str = "http://hl7.org/fhir/StructureDefinition/geolocation";

/// `meta.tag`: where a resource came from (`illustrative` for the demo).
pub const DATA_ORIGIN: &str = "http://continuum-alliance.org/fhir/CodeSystem/data-origin";
/// HealthcareService.program: the alliance's programmes.
pub const PROGRAM: &str = "http://continuum-alliance.org/fhir/CodeSystem/program";
/// Person `meta.tag`: a Person kept by the identity engine.
pub const IDENTITY: &str = "http://continuum-alliance.org/fhir/CodeSystem/identity";
/// Communication.category: which notification a message is.
pub const NOTIFICATION: &str = "http://continuum-alliance.org/fhir/CodeSystem/notification";
/// Organization.identifier: the HL7 v2 facility name (MSH-4) a hospital sends under.
pub const HL7_FACILITY: &str = "http://continuum-alliance.org/fhir/NamingSystem/hl7-facility";
/// Provenance.entity.what.identifier: an HL7 v2 message received (`sender|MSH-10`).
pub const HL7_MESSAGE: &str = "http://continuum-alliance.org/fhir/NamingSystem/hl7-message";
/// The notification code of hospital event alerts — a Consent denying it (category or
/// provision.purpose… coded so) is a patient's opt-out.
pub const HOSPITAL_EVENTS: &str = "hospital-events";
/// The video service channel of a join link.
pub const VIRTUAL_SERVICE_CHANNEL: &str =
    "http://continuum-alliance.org/fhir/CodeSystem/virtual-service";
/// AuditEvent.subtype: what the alliance did on its own behalf inside a request.
pub const ON_BEHALF: &str = "http://continuum-alliance.org/fhir/CodeSystem/on-behalf";
/// AuditEvent.subtype: the alliance's own interactions (break-the-glass).
pub const AUDIT_SUBTYPE: &str = "http://continuum-alliance.org/fhir/CodeSystem/audit-subtype";

/// The extensions the alliance defines, with where they go and what they hold (for the
/// CapabilityStatement and the README).
pub const EXTENSIONS: &[(&str, &str, &str)] = &[
    (
        REFERRAL_MILESTONE,
        "Task",
        "complex (milestone: valueCode accepted | booked | seen | reported | closed; at: valueInstant), repeating, kept by the server: when a referral reached each milestone",
    ),
    (
        REFERRAL_DUE,
        "Task",
        "complex (milestone: valueCode accepted | booked | seen; by: valueInstant), repeating, set by the server: when each milestone is due under the referral's service level",
    ),
    (
        AGE_RANGE,
        "HealthcareService",
        "valueRange in years (a): the ages served",
    ),
    (
        MODALITY,
        "HealthcareService,Schedule,PractitionerRole",
        "valueCode in-person | video, repeating: how visits happen",
    ),
    (
        ACCEPTING,
        "HealthcareService",
        "valueBoolean: whether new patients are taken (default true)",
    ),
    (
        LICENSED_STATE,
        "PractitionerRole",
        "valueCode, a USPS state code, repeating: where the clinician is licensed",
    ),
    (
        SLOT_MINUTES,
        "Schedule",
        "valueInteger: the length of generated slots in minutes (default 30)",
    ),
    (
        MINOR_CONSENTED_CARE,
        "Encounter",
        "valueCode, a v3 ActCode sensitivity: care a minor consented to alone (labels follow)",
    ),
    (
        MOTHER_IDENTIFIER,
        "Patient",
        "valueIdentifier: a newborn's mother's identifier (HL7 v2 PID-21); identity linkage links a single birth's records by it and the birth date",
    ),
    (
        READINESS_SCORE,
        "QuestionnaireResponse",
        "complex (total, and one per domain — condition, medications, appointments, insurance, self-advocacy, privacy: valueInteger 0–100), set by the server on a completed transition readiness assessment",
    ),
    (
        SERVICE_SENSITIVITY,
        "HealthcareService",
        "valueCode, a v3 ActCode sensitivity: care in this service is sensitive; Appointments booked in it (and their messages) carry that label and R",
    ),
];
