//! Access control: SMART scopes, the roles of the alliance, and the one policy that decides
//! what a caller may read and change.

pub mod age;
pub mod policy;
pub mod scopes;

pub use age::{BirthDate, age_on};
pub use policy::{
    AccessView, AuditAccess, BreakGlass, ConsentRule, Context, DIRECTORY_TYPES, Decision,
    FAMILY_WRITE_TYPES, Grant, Level, PatientAccess, PolicyConfig, ProxyLink, ResourceFacts, Role,
    Subject, audit_view, break_glass_reason_ok, decide, decide_accounts, decide_break_glass,
    decide_family_answer, decide_identity_review, decide_identity_review_with,
    decide_organization_reports, decide_with, is_family, permits, reports_in_full, view,
};
pub use scopes::{Action, Scope, ScopeContext, ScopeError, Scopes};

#[cfg(test)]
mod matrix_tests;
