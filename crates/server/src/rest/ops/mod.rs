//! The FHIR operations, each declared once in its own module and registered in
//! [`OPERATIONS`]: its name and route (`$code` at the system, type or instance level; POST),
//! whether it writes, its CapabilityStatement entry, and its handler, which reads its
//! `Parameters` and calls the application layer. The router ([`super::interaction`]), the
//! CapabilityStatement and the audit read this one registry: adding an operation is one new
//! module here and one line in [`OPERATIONS`].

mod book;
mod break_glass;
mod find;
pub(crate) mod find_care;
mod match_patient;
mod refer;
mod transfer_package;

use serde_json::Value;
use store::CallerTx;

use super::execute::Outcome;
use crate::app::Ctx;
use crate::error::ApiError;

/// Where an operation is invoked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// `POST /fhir/$code`.
    System,
    /// `POST /fhir/Type/$code`.
    Type,
    /// `POST /fhir/Type/{id}/$code`.
    Instance,
}

/// What an operation's handler is given.
#[derive(Debug, Clone)]
pub struct Input {
    /// The resource id, for an instance-level operation.
    pub id: Option<String>,
    /// The `Parameters` body, structurally valid.
    pub params: Value,
}

/// One FHIR operation.
pub struct Operation {
    /// The interaction name in the audit trail, logs and metrics (`find-care`).
    pub name: &'static str,
    /// The name after the `$` in the URL.
    pub code: &'static str,
    /// The resource type it is invoked on (`None` at the system level).
    pub resource_type: Option<&'static str>,
    pub level: Level,
    /// Whether it may change data (a read-write transaction; audited inside it).
    pub writes: bool,
    /// The canonical URL of its OperationDefinition.
    pub definition: &'static str,
    /// What it takes and answers, for the CapabilityStatement.
    pub documentation: &'static str,
    /// The 400 when the body is missing or not a Parameters resource.
    pub usage: &'static str,
    pub run: fn(&mut CallerTx, &Ctx, Input) -> Result<Outcome, ApiError>,
    /// For a writing operation, the refusals reading alone can tell (a slot already taken):
    /// run first as a read-only unit, so that a race's losers are answered without the writer.
    /// Its refusal is the request's answer and its one AuditEvent; when it passes, it leaves no
    /// event and `run` decides again in the write transaction.
    pub precheck: Option<Precheck>,
}

/// An operation's [`Operation::precheck`].
pub type Precheck = fn(&mut CallerTx, &Ctx, &Input) -> Result<(), ApiError>;

impl std::fmt::Debug for Operation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Operation(${})", self.code)
    }
}

/// Every operation the server offers.
pub const OPERATIONS: &[&Operation] = &[
    &find_care::FIND_CARE,
    &refer::REFER,
    &find::FIND,
    &book::HOLD,
    &book::BOOK,
    &match_patient::MATCH,
    &break_glass::BREAK_GLASS,
    &transfer_package::TRANSFER_PACKAGE,
];

/// The operation invoked as `$code` on `resource_type` (`None`: the system) at `level`.
pub fn lookup(resource_type: Option<&str>, code: &str, level: Level) -> Option<&'static Operation> {
    OPERATIONS
        .iter()
        .copied()
        .find(|op| op.code == code && op.resource_type == resource_type && op.level == level)
}

/// The operations of one resource type, for its CapabilityStatement entry.
pub fn of_type(resource_type: &str) -> impl Iterator<Item = &'static Operation> + '_ {
    OPERATIONS
        .iter()
        .copied()
        .filter(move |op| op.resource_type == Some(resource_type))
}
