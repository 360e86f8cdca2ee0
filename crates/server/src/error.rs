//! The one error type of the HTTP edge: an HTTP status and the OperationOutcome issues to send.
//! Every lower-level error is mapped here, once.

use fhir::{Issue, IssueType};
use store::StoreError;

/// A failed request: status plus issues.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: u16,
    pub issues: Vec<Issue>,
    /// Headers the answer carries (`Allow` on a 405).
    pub headers: Vec<(&'static str, String)>,
}

impl ApiError {
    pub fn new(status: u16, code: IssueType, diagnostics: impl Into<String>) -> ApiError {
        ApiError {
            status,
            issues: vec![Issue::error(code, diagnostics)],
            headers: Vec::new(),
        }
    }

    pub fn with_issues(status: u16, issues: Vec<Issue>) -> ApiError {
        ApiError {
            status,
            issues,
            headers: Vec::new(),
        }
    }

    /// A resource refused by validation: 422 when it is too large to take (an array or an
    /// index beyond its limit), else 400.
    pub fn invalid(issues: Vec<Issue>) -> ApiError {
        let status = if issues.iter().any(|i| i.code == IssueType::TooCostly) {
            422
        } else {
            400
        };
        ApiError::with_issues(status, issues)
    }

    /// A 405: `method` is not allowed here; `allow` lists the methods that are.
    pub fn method_not_allowed(allow: &str, diagnostics: impl Into<String>) -> ApiError {
        let mut e = ApiError::new(405, IssueType::NotSupported, diagnostics);
        e.headers.push(("Allow", allow.to_string()));
        e
    }

    pub fn bad_request(code: IssueType, diagnostics: impl Into<String>) -> ApiError {
        ApiError::new(400, code, diagnostics)
    }

    pub fn not_found(diagnostics: impl Into<String>) -> ApiError {
        ApiError::new(404, IssueType::NotFound, diagnostics)
    }

    /// Adds a location to the first issue.
    pub fn at(mut self, expression: impl Into<String>) -> ApiError {
        if let Some(first) = self.issues.first_mut() {
            first.expression = Some(expression.into());
        }
        self
    }

    /// Prefixes every diagnostic (e.g. with the bundle entry it came from).
    pub fn context(mut self, prefix: &str) -> ApiError {
        for i in &mut self.issues {
            i.diagnostics = format!("{prefix}: {}", i.diagnostics);
        }
        self
    }
}

/// The diagnostics of every issue, joined (for command-line messages).
impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let text: Vec<&str> = self.issues.iter().map(|i| i.diagnostics.as_str()).collect();
        f.write_str(&text.join("; "))
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match &e {
            StoreError::Conflict(_) => ApiError::new(
                409,
                IssueType::Conflict,
                "another request changed the same data at the same time; retry the request",
            ),
            StoreError::Forbidden(why) => ApiError::new(403, IssueType::Forbidden, why.clone()),
            StoreError::BadSearch(why) => ApiError::new(400, IssueType::NotSupported, why.clone()),
            StoreError::CallerDisabled(_) => ApiError::new(401, IssueType::Login, e.to_string()),
            StoreError::BadCursor(why) => ApiError::new(
                400,
                IssueType::Invalid,
                format!("invalid paging link: {why}"),
            ),
            StoreError::OverBudget => {
                let mut e = ApiError::new(
                    503,
                    IssueType::Timeout,
                    "the request ran out of its time budget and was rolled back: nothing was written; retry later, or split it (smaller Bundles, narrower searches)",
                );
                e.headers.push(("Retry-After", "5".to_string()));
                e
            }
            StoreError::Unavailable(_) => {
                tracing::error!(error = %e, "database unavailable");
                ApiError::new(
                    503,
                    IssueType::Transient,
                    "the database is unavailable; retry later",
                )
            }
            StoreError::Sql(msg) if too_large_for_the_database(msg) => {
                tracing::warn!(error = %e, "a request too large for the database");
                ApiError::new(
                    400,
                    IssueType::TooCostly,
                    "the request is too large for the database to run (too many search terms, values or nested conditions); narrow it or split it into several requests",
                )
            }
            _ => {
                tracing::error!(error = %e, "storage error");
                ApiError::new(
                    500,
                    IssueType::Exception,
                    "internal storage error; the request was not applied",
                )
            }
        }
    }
}

/// Whether a database error says the statement was too large — the shape of the request, not a
/// fault of the server (the limits keep requests below these; this is the guard behind them).
fn too_large_for_the_database(msg: &str) -> bool {
    const SAYS: &[&str] = &[
        // SQLite
        "Expression tree is too large",
        "too many SQL variables",
        "string or blob too big",
        "too many terms in compound SELECT",
        "parser stack overflow",
        "LIKE or GLOB pattern too complex",
        // PostgreSQL
        "stack depth limit exceeded",
        "number of parameters must be between",
        "target lists can have at most",
    ];
    SAYS.iter().any(|s| msg.contains(s))
}

impl ApiError {
    /// The answer for a resource that is absent — or hidden from the caller, which must look
    /// the same.
    pub fn not_known(rt: &str, id: &str) -> ApiError {
        ApiError::not_found(format!("{rt}/{id} is not known"))
    }

    /// The answer for a write the caller-bound store refused: a hidden resource answers as an
    /// absent one, a forbidden write is a 403 with the reason.
    pub fn refused(r: store::Refusal, rt: &str, id: &str) -> ApiError {
        match r {
            store::Refusal::Hidden => ApiError::not_known(rt, id),
            store::Refusal::Forbidden(why) => ApiError::new(403, IssueType::Forbidden, why),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_too_large_are_the_request_s_fault() {
        let e = ApiError::from(StoreError::Sql(
            "Expression tree is too large (maximum depth 1000)".into(),
        ));
        assert_eq!((e.status, e.issues[0].code), (400, IssueType::TooCostly));
        let e = ApiError::from(StoreError::Sql("disk I/O error".into()));
        assert_eq!(e.status, 500);
    }
}
