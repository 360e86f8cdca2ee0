//! FHIR R4 for Continuum: the element model, structural validation, OperationOutcome, the
//! FHIRPath subset of search definitions, search index extraction and query parsing, and the
//! accessors every crate reads FHIR JSON with (`json`).
//! Pure code: no I/O, no clock.

pub mod compartment;
pub mod definitions;
pub mod fhirpath;
pub mod json;
pub mod outcome;
pub mod primitive;
pub mod search;
pub mod summary;
pub mod validate;

pub use outcome::{Issue, IssueType, Severity, operation_outcome};
pub use validate::validate_resource;

/// The resource types Continuum stores and serves at `/fhir` (product.md C0, plus the clinical
/// types a care-coordination record needs).
pub const SUPPORTED_RESOURCE_TYPES: &[&str] = &[
    "AllergyIntolerance",
    "Appointment",
    "AppointmentResponse",
    "AuditEvent",
    "Bundle",
    "CarePlan",
    "CareTeam",
    "Communication",
    "CommunicationRequest",
    "Composition",
    "Condition",
    "Consent",
    "Coverage",
    "DiagnosticReport",
    "DocumentReference",
    "Encounter",
    "Endpoint",
    "FamilyMemberHistory",
    "Flag",
    "Goal",
    "Group",
    "HealthcareService",
    "Immunization",
    "List",
    "Location",
    "Medication",
    "MedicationRequest",
    "MedicationStatement",
    "Observation",
    "Organization",
    "Patient",
    "Person",
    "Practitioner",
    "PractitionerRole",
    "Procedure",
    "Provenance",
    "Questionnaire",
    "QuestionnaireResponse",
    "RelatedPerson",
    "RiskAssessment",
    "Schedule",
    "ServiceRequest",
    "Slot",
    "Subscription",
    "Task",
];
