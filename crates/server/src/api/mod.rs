//! The alliance's JSON API beside FHIR (`/api/…`): what is not a FHIR interaction or
//! operation, run through the same unit of work (authentication by the HTTP layer, one
//! transaction bound to the caller, one AuditEvent).

pub mod identity_reviews;
pub mod measures;
pub mod referrals;
pub mod subscriptions;
pub mod transition;
