//! SMART on FHIR scopes (v2 `system/Patient.rs`, `user/*.cruds`; v1 `patient/*.read` and
//! `.write` are accepted too), parsed once and asked which actions they allow on which types.

use std::fmt;

/// Whose data a scope speaks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScopeContext {
    /// `patient/`: the compartment of the patient in context.
    Patient,
    /// `user/`: whatever the user may see.
    User,
    /// `system/`: a backend service.
    System,
}

/// What a request does, as SMART v2 letters name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Create,
    Read,
    Update,
    Delete,
    Search,
}

impl Action {
    fn letter(self) -> char {
        match self {
            Action::Create => 'c',
            Action::Read => 'r',
            Action::Update => 'u',
            Action::Delete => 'd',
            Action::Search => 's',
        }
    }

    pub fn is_write(self) -> bool {
        matches!(self, Action::Create | Action::Update | Action::Delete)
    }
}

/// One resource scope: `user/Task.cruds`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    pub context: ScopeContext,
    /// `None` for `*`.
    pub resource_type: Option<String>,
    /// Allowed actions as SMART v2 letters, in order `cruds`.
    pub actions: String,
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ctx = match self.context {
            ScopeContext::Patient => "patient",
            ScopeContext::User => "user",
            ScopeContext::System => "system",
        };
        write!(
            f,
            "{ctx}/{}.{}",
            self.resource_type.as_deref().unwrap_or("*"),
            self.actions
        )
    }
}

/// A scope string that is not a SMART resource scope this server grants.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScopeError {
    #[error(
        "'{0}' is not a SMART scope (like system/Patient.rs, user/*.cruds or patient/Observation.read)"
    )]
    Malformed(String),
    /// SMART v2 granular scopes (`system/Observation.rs?category=vital-signs`) are refused
    /// rather than widened to the whole type.
    #[error(
        "'{0}' is a granular scope (with ?param=value), which this server does not grant: ask for the whole type (like {1}) and filter with a search"
    )]
    Granular(String, String),
}

impl Scope {
    /// Parses one resource scope. Non-resource scopes (`openid`, `fhirUser`, `launch/patient`,
    /// `offline_access`) return `Ok(None)`.
    pub fn parse(s: &str) -> Result<Option<Scope>, ScopeError> {
        if matches!(
            s,
            "openid" | "fhirUser" | "profile" | "offline_access" | "online_access"
        ) || s.starts_with("launch")
        {
            return Ok(None);
        }
        let err = || ScopeError::Malformed(s.to_string());
        let (ctx, rest) = s.split_once('/').ok_or_else(err)?;
        let context = match ctx {
            "patient" => ScopeContext::Patient,
            "user" => ScopeContext::User,
            "system" => ScopeContext::System,
            _ => return Err(err()),
        };
        let (rt, perms) = rest.split_once('.').ok_or_else(err)?;
        if let Some((whole, _)) = s.split_once('?') {
            return Err(ScopeError::Granular(s.to_string(), whole.to_string()));
        }
        let resource_type = match rt {
            "*" => None,
            t if !t.is_empty()
                && t.chars().all(|c| c.is_ascii_alphabetic())
                && t.starts_with(|c: char| c.is_ascii_uppercase()) =>
            {
                Some(t.to_string())
            }
            _ => return Err(err()),
        };
        let actions = match perms {
            "read" => "rs".to_string(),
            "write" => "cud".to_string(),
            "*" => "cruds".to_string(),
            p => {
                // v2: a subset of c r u d s, in that order
                let order = "cruds";
                let mut last = None;
                for ch in p.chars() {
                    let pos = order.find(ch).ok_or_else(err)?;
                    if last.is_some_and(|l| pos <= l) {
                        return Err(err());
                    }
                    last = Some(pos);
                }
                if p.is_empty() {
                    return Err(err());
                }
                p.to_string()
            }
        };
        Ok(Some(Scope {
            context,
            resource_type,
            actions,
        }))
    }

    fn allows(&self, resource_type: &str, action: Action) -> bool {
        self.resource_type
            .as_deref()
            .is_none_or(|t| t == resource_type)
            && self.actions.contains(action.letter())
    }
}

/// A set of granted scopes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scopes {
    pub scopes: Vec<Scope>,
}

impl Scopes {
    /// Parses a space-separated scope string.
    pub fn parse(s: &str) -> Result<Scopes, ScopeError> {
        let mut scopes = Vec::new();
        for part in s.split_whitespace() {
            if let Some(scope) = Scope::parse(part)? {
                scopes.push(scope);
            }
        }
        Ok(Scopes { scopes })
    }

    /// Everything, for console users (their role decides) and administrators.
    pub fn all_user() -> Scopes {
        Scopes {
            scopes: vec![Scope {
                context: ScopeContext::User,
                resource_type: None,
                actions: "cruds".into(),
            }],
        }
    }

    /// Whether any scope allows `action` on `resource_type`.
    pub fn allows(&self, resource_type: &str, action: Action) -> bool {
        self.scopes.iter().any(|s| s.allows(resource_type, action))
    }

    /// Whether any scope of this context allows `action` on `resource_type`.
    pub fn allows_in(&self, context: ScopeContext, resource_type: &str, action: Action) -> bool {
        self.scopes
            .iter()
            .any(|s| s.context == context && s.allows(resource_type, action))
    }

    /// The resource types some scope lets the holder read or search; `None` when a wildcard
    /// scope does (every type).
    pub fn readable_types(&self) -> Option<Vec<String>> {
        let reads = |s: &&Scope| s.actions.contains('r') || s.actions.contains('s');
        if self
            .scopes
            .iter()
            .filter(reads)
            .any(|s| s.resource_type.is_none())
        {
            return None;
        }
        let mut types: Vec<String> = self
            .scopes
            .iter()
            .filter(reads)
            .filter_map(|s| s.resource_type.clone())
            .collect();
        types.sort();
        types.dedup();
        Some(types)
    }

    /// Whether any scope is a `system/` scope.
    pub fn has_system(&self) -> bool {
        self.scopes
            .iter()
            .any(|s| s.context == ScopeContext::System)
    }

    /// Whether every scope of `self` is granted by `granted` (a token may ask for less than the
    /// client was given, never more).
    pub fn within(&self, granted: &Scopes) -> bool {
        self.scopes.iter().all(|s| {
            granted.scopes.iter().any(|g| {
                g.context == s.context
                    && (g.resource_type.is_none() || g.resource_type == s.resource_type)
                    && s.actions.chars().all(|c| g.actions.contains(c))
            })
        })
    }

    pub fn to_scope_string(&self) -> String {
        self.scopes
            .iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>()
            .join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_v1_and_v2() {
        let s = Scopes::parse(
            "openid fhirUser system/Patient.rs user/Task.cruds patient/*.read launch/patient",
        )
        .unwrap();
        assert_eq!(s.scopes.len(), 3);
        assert!(s.allows("Patient", Action::Read));
        assert!(s.allows("Patient", Action::Search));
        assert!(!s.allows_in(ScopeContext::System, "Patient", Action::Update));
        assert!(s.allows("Task", Action::Delete));
        assert!(s.allows_in(ScopeContext::Patient, "Observation", Action::Search));
        assert!(!s.allows("Observation", Action::Create));
        assert_eq!(
            Scope::parse("user/*.write").unwrap().unwrap().actions,
            "cud"
        );
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "Patient.read",
            "user/patient.read",
            "system/Patient.sr",
            "system/Patient.x",
            "admin/*.*",
            "user/Patient.",
        ] {
            assert!(Scope::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn granular_scopes_are_refused_not_widened() {
        let e = Scope::parse("system/Observation.rs?category=vital-signs").unwrap_err();
        assert!(matches!(e, ScopeError::Granular(..)), "{e}");
        assert!(e.to_string().contains("system/Observation.rs"), "{e}");
        assert!(Scopes::parse("system/Patient.rs patient/Condition.rs?category=x").is_err());
    }

    #[test]
    fn readable_types_follow_the_scopes() {
        let s = Scopes::parse("system/Patient.rs system/Task.c user/Condition.s").unwrap();
        assert_eq!(
            s.readable_types(),
            Some(vec!["Condition".to_string(), "Patient".to_string()])
        );
        assert_eq!(Scopes::parse("user/*.rs").unwrap().readable_types(), None);
        assert_eq!(
            Scopes::parse("system/*.c system/Patient.r")
                .unwrap()
                .readable_types(),
            Some(vec!["Patient".to_string()])
        );
    }

    #[test]
    fn requested_within_granted() {
        let granted = Scopes::parse("system/Patient.rs system/Observation.cruds").unwrap();
        assert!(Scopes::parse("system/Patient.r").unwrap().within(&granted));
        assert!(
            Scopes::parse("system/Observation.cud")
                .unwrap()
                .within(&granted)
        );
        assert!(!Scopes::parse("system/Patient.u").unwrap().within(&granted));
        assert!(!Scopes::parse("system/*.r").unwrap().within(&granted));
        assert!(!Scopes::parse("user/Patient.r").unwrap().within(&granted));
    }
}
