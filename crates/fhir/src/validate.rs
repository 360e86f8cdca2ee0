//! Structural validation of a resource against the R4 element model: known properties only,
//! arrays where the cardinality is `*`, required elements present, every primitive value
//! lexically valid, and every `code` with a required binding one of its value set's codes. Problems are reported with a FHIRPath-style location (`Patient.birthDate`).

use serde_json::{Map, Value};

use crate::definitions::{ChildDef, ChildType, Definitions, Primitive, definitions};
use crate::outcome::{Issue, IssueType};
use crate::primitive::{check_primitive, describe};

/// The most issues reported for one resource; the rest are summarised.
const MAX_ISSUES: usize = 50;

/// How large one resource (or Bundle) may be: beyond these it is refused (`too-costly`,
/// answered 422) before anything is indexed or stored — one resource must not hold the single
/// writer for long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResourceLimits {
    /// Items in one array of a resource.
    pub array_items: usize,
    /// Search index entries one resource may need.
    pub index_entries: usize,
    /// Entries of one batch or transaction Bundle.
    pub bundle_entries: usize,
}

impl Default for ResourceLimits {
    fn default() -> Self {
        ResourceLimits {
            array_items: 10_000,
            index_entries: 50_000,
            bundle_entries: 10_000,
        }
    }
}

static RESOURCE_LIMITS: std::sync::OnceLock<ResourceLimits> = std::sync::OnceLock::new();

/// Sets the process's resource limits, once, before the first resource is validated (the
/// server's configuration); false when they were already set or used.
pub fn set_resource_limits(limits: ResourceLimits) -> bool {
    RESOURCE_LIMITS.set(limits).is_ok()
}

/// The process's resource limits (the defaults unless the configuration set others).
pub fn resource_limits() -> &'static ResourceLimits {
    RESOURCE_LIMITS.get_or_init(ResourceLimits::default)
}

/// Validates a resource; on success returns its `resourceType`.
pub fn validate_resource(resource: &Value) -> Result<&str, Vec<Issue>> {
    let mut v = Validator {
        defs: definitions(),
        issues: Vec::new(),
    };
    let rt = v.resource(resource, None);
    if v.issues.is_empty() {
        Ok(rt.unwrap_or_default())
    } else {
        Err(v.issues)
    }
}

struct Validator {
    defs: &'static Definitions,
    issues: Vec<Issue>,
}

impl Validator {
    fn push(&mut self, issue: Issue) {
        if self.issues.len() < MAX_ISSUES {
            self.issues.push(issue);
        }
    }

    /// Validates a resource object; `path` is where it sits inside an outer resource.
    fn resource<'a>(&mut self, value: &'a Value, path: Option<&str>) -> Option<&'a str> {
        let Value::Object(obj) = value else {
            self.push(
                Issue::error(
                    IssueType::Structure,
                    format!(
                        "a resource must be a JSON object, found {}",
                        describe(value)
                    ),
                )
                .at(path.unwrap_or("$this")),
            );
            return None;
        };
        let rt = match obj.get("resourceType") {
            Some(Value::String(rt)) if self.defs.is_resource_type(rt) => rt.as_str(),
            Some(Value::String(rt)) => {
                self.push(
                    Issue::error(
                        IssueType::Invalid,
                        format!("'{rt}' is not a FHIR R4 resource type"),
                    )
                    .at(path
                        .map(|p| format!("{p}.resourceType"))
                        .unwrap_or("resourceType".into())),
                );
                return None;
            }
            Some(other) => {
                self.push(
                    Issue::error(
                        IssueType::Structure,
                        format!("resourceType must be a string, found {}", describe(other)),
                    )
                    .at(path
                        .map(|p| format!("{p}.resourceType"))
                        .unwrap_or("resourceType".into())),
                );
                return None;
            }
            None => {
                self.push(
                    Issue::error(IssueType::Required, "the resource has no resourceType")
                        .at(path.unwrap_or("$this")),
                );
                return None;
            }
        };
        let here = match path {
            Some(p) => p.to_string(),
            None => rt.to_string(),
        };
        self.object(rt, obj, &here, true);
        Some(rt)
    }

    fn object(&mut self, node: &str, obj: &Map<String, Value>, path: &str, is_resource: bool) {
        let Some(def) = self.defs.node(node) else {
            return;
        };
        for (key, value) in obj {
            if is_resource && key == "resourceType" {
                continue;
            }
            if let Some(base) = key.strip_prefix('_') {
                self.companion(node, obj, base, value, path);
                continue;
            }
            let Some(child) = def.children.get(key) else {
                self.push(
                    Issue::error(IssueType::Structure, format!("unknown element '{key}'"))
                        .at(format!("{path}.{key}")),
                );
                continue;
            };
            let child_path = format!("{path}.{key}");
            if is_resource && key == "id" {
                self.primitive_value(Primitive::Id, value, &child_path);
                continue;
            }
            self.element(
                child,
                value,
                &child_path,
                obj.contains_key(&format!("_{key}")),
            );
        }
        // one value per choice element (`valueString` and `_valueString` are the same choice)
        let mut chosen: Vec<(&str, &str)> = Vec::new();
        for key in obj.keys() {
            let k = key.strip_prefix('_').unwrap_or(key);
            let Some(child) = def.children.get(k) else {
                continue;
            };
            if !child.element.ends_with("[x]") {
                continue;
            }
            match chosen.iter().find(|(element, _)| *element == child.element) {
                Some((_, first)) if *first != k => {
                    self.push(
                        Issue::error(
                            IssueType::Structure,
                            format!(
                                "only one of the choices of '{}' may be given",
                                child.element
                            ),
                        )
                        .at(format!("{path}.{k}")),
                    );
                }
                Some(_) => {}
                None => chosen.push((child.element.as_str(), k)),
            }
        }
        for (element, keys) in &def.required {
            if !keys
                .iter()
                .any(|k| obj.contains_key(k) || obj.contains_key(&format!("_{k}")))
            {
                self.push(
                    Issue::error(
                        IssueType::Required,
                        format!("the required element '{element}' is missing"),
                    )
                    .at(format!("{path}.{}", element.trim_end_matches("[x]"))),
                );
            }
        }
    }

    fn element(&mut self, child: &ChildDef, value: &Value, path: &str, has_companion: bool) {
        if child.many {
            let Value::Array(items) = value else {
                self.push(
                    Issue::error(
                        IssueType::Structure,
                        format!(
                            "'{}' repeats, so it must be a JSON array, found {}",
                            child.element,
                            describe(value)
                        ),
                    )
                    .at(path),
                );
                return;
            };
            if items.is_empty() {
                self.push(
                    Issue::error(
                        IssueType::Structure,
                        "arrays must not be empty; omit the element instead",
                    )
                    .at(path),
                );
            }
            let max = resource_limits().array_items;
            if items.len() > max {
                self.push(
                    Issue::error(
                        IssueType::TooCostly,
                        format!(
                            "'{}' has {} items; at most {max} are accepted in one array",
                            child.element,
                            items.len()
                        ),
                    )
                    .at(path),
                );
                return;
            }
            for (i, item) in items.iter().enumerate() {
                let item_path = format!("{path}[{i}]");
                if item.is_null() && has_companion && matches!(child.ty, ChildType::Primitive(_)) {
                    continue;
                }
                self.single(child, item, &item_path);
            }
        } else {
            if value.is_array() {
                self.push(
                    Issue::error(
                        IssueType::Structure,
                        format!(
                            "'{}' has at most one value, so it must not be an array",
                            child.element
                        ),
                    )
                    .at(path),
                );
                return;
            }
            self.single(child, value, path);
        }
    }

    fn single(&mut self, child: &ChildDef, value: &Value, path: &str) {
        match &child.ty {
            ChildType::Primitive(p) => {
                self.primitive_value(*p, value, path);
                if let (Some(binding), Value::String(code)) = (child.binding, value) {
                    self.bound_code(binding, code, path);
                }
            }
            ChildType::Complex { node, .. } => match value {
                Value::Object(obj) => {
                    if obj.is_empty() {
                        self.push(
                            Issue::error(
                                IssueType::Structure,
                                "objects must not be empty; omit the element instead",
                            )
                            .at(path),
                        );
                    }
                    self.object(node, obj, path, false)
                }
                other => self.push(
                    Issue::error(
                        IssueType::Structure,
                        format!(
                            "'{}' is a {}, so it must be a JSON object, found {}",
                            child.element,
                            child.ty.fhir_type(),
                            describe(other)
                        ),
                    )
                    .at(path),
                ),
            },
            ChildType::Resource => {
                self.resource(value, Some(path));
            }
        }
    }

    fn primitive_value(&mut self, p: Primitive, value: &Value, path: &str) {
        if let Err(why) = check_primitive(p, value) {
            self.push(
                Issue::error(IssueType::Value, format!("{why} (expected {})", p.name())).at(path),
            );
        }
    }

    /// A code of a required binding must be one of the value set's codes.
    fn bound_code(&mut self, binding: usize, code: &str, path: &str) {
        let vs = self.defs.value_set(binding);
        if vs.contains(code) {
            return;
        }
        const LISTED: usize = 12;
        let allowed = if vs.codes.len() <= LISTED {
            format!("one of {}", vs.codes.join(", "))
        } else {
            format!(
                "one of its {} codes ({}, …; see {})",
                vs.codes.len(),
                vs.codes[..LISTED / 2].join(", "),
                vs.url
            )
        };
        self.push(
            Issue::error(
                IssueType::CodeInvalid,
                format!(
                    "'{code}' is not a code of {} ({}): use {allowed}",
                    vs.name, vs.url
                ),
            )
            .at(path),
        );
    }

    /// `_birthDate`: the id and extensions of a primitive element.
    fn companion(
        &mut self,
        node: &str,
        obj: &Map<String, Value>,
        base: &str,
        value: &Value,
        path: &str,
    ) {
        let Some(child) = self.defs.child(node, base) else {
            self.push(
                Issue::error(IssueType::Structure, format!("unknown element '_{base}'"))
                    .at(format!("{path}._{base}")),
            );
            return;
        };
        if !matches!(child.ty, ChildType::Primitive(_)) {
            self.push(
                Issue::error(
                    IssueType::Structure,
                    format!("'_{base}' is only allowed for primitive elements"),
                )
                .at(format!("{path}._{base}")),
            );
            return;
        }
        let here = format!("{path}._{base}");
        let element = |v: &mut Validator, item: &Value, p: &str| match item {
            Value::Object(o) => v.object("Element", o, p, false),
            Value::Null => {}
            other => v.push(
                Issue::error(
                    IssueType::Structure,
                    format!("'_{base}' must hold objects, found {}", describe(other)),
                )
                .at(p),
            ),
        };
        if child.many {
            let Value::Array(items) = value else {
                self.push(
                    Issue::error(IssueType::Structure, format!("'_{base}' must be an array"))
                        .at(here),
                );
                return;
            };
            if let Some(Value::Array(values)) = obj.get(base)
                && values.len() != items.len()
            {
                self.push(
                    Issue::error(
                        IssueType::Structure,
                        format!("'{base}' and '_{base}' must have the same number of items"),
                    )
                    .at(here.clone()),
                );
            }
            for (i, item) in items.iter().enumerate() {
                element(self, item, &format!("{here}[{i}]"));
            }
        } else {
            element(self, value, &here);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn issues(v: Value) -> Vec<(String, String)> {
        match validate_resource(&v) {
            Ok(_) => vec![],
            Err(issues) => issues
                .into_iter()
                .map(|i| (i.code.code().to_string(), i.expression.unwrap_or_default()))
                .collect(),
        }
    }

    #[test]
    fn a_valid_patient_passes() {
        let p = json!({
            "resourceType": "Patient", "id": "p1",
            "name": [{"family": "Rivera", "given": ["Ana", "Sofia"]}],
            "birthDate": "2012-04-05", "active": true,
            "_birthDate": {"extension": [{"url": "http://example.org/x", "valueString": "y"}]},
            "deceasedBoolean": false,
            "contact": [{"name": {"family": "Rivera"}}]
        });
        assert_eq!(issues(p), vec![]);
    }

    #[test]
    fn problems_are_located() {
        assert_eq!(
            issues(json!({"resourceType": "Patient", "birthDate": "2012-02-30"})),
            vec![("value".into(), "Patient.birthDate".into())]
        );
        assert_eq!(
            issues(json!({"resourceType": "Patient", "active": "true"})),
            vec![("value".into(), "Patient.active".into())]
        );
        assert_eq!(
            issues(json!({"resourceType": "Patient", "name": {"family": "x"}})),
            vec![("structure".into(), "Patient.name".into())]
        );
        assert_eq!(
            issues(json!({"resourceType": "Patient", "nickname": "x"})),
            vec![("structure".into(), "Patient.nickname".into())]
        );
        assert_eq!(
            issues(json!({"resourceType": "Observation", "code": {"text": "x"}})),
            vec![("required".into(), "Observation.status".into())]
        );
        assert_eq!(
            issues(json!({"resourceType": "Patient", "id": "a b"})),
            vec![("value".into(), "Patient.id".into())]
        );
        assert_eq!(
            issues(
                json!({"resourceType": "Patient", "contained": [{"resourceType": "Practitioner", "gender": 3}]})
            ),
            vec![("value".into(), "Patient.contained[0].gender".into())]
        );
        assert_eq!(
            issues(
                json!({"resourceType": "Patient", "deceasedBoolean": true, "deceasedDateTime": "2020"})
            ),
            vec![("structure".into(), "Patient.deceasedDateTime".into())]
        );
    }

    #[test]
    fn codes_of_required_bindings_are_checked() {
        // (where, what it says)
        let issues = |v: Value| -> Vec<(String, String)> {
            validate_resource(&v)
                .err()
                .unwrap_or_default()
                .into_iter()
                .inspect(|i| assert_eq!(i.code, IssueType::CodeInvalid))
                .map(|i| (i.expression.unwrap_or_default(), i.diagnostics))
                .collect()
        };
        let got = issues(json!({"resourceType": "Patient", "gender": "f"}));
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(got[0].0, "Patient.gender");
        assert!(
            got[0]
                .1
                .contains("'f' is not a code of AdministrativeGender")
                && got[0].1.contains("female, male, other, unknown"),
            "{}",
            got[0].1
        );
        // inside datatypes, backbones and repeats too
        let got = issues(json!({"resourceType": "Patient",
            "name": [{"use": "formal", "family": "x"}],
            "contact": [{"gender": "F"}],
            "telecom": [{"system": "mobile", "value": "1"}]}));
        let at: Vec<&str> = got.iter().map(|(a, _)| a.as_str()).collect();
        assert_eq!(
            at,
            [
                "Patient.name[0].use",
                "Patient.contact[0].gender",
                "Patient.telecom[0].system"
            ]
        );
        // codes in the value set pass; a large value set names a few and its URL
        assert!(issues(json!({"resourceType": "Patient", "gender": "unknown"})).is_empty());
        let got =
            issues(json!({"resourceType": "Observation", "status": "done", "code": {"text": "x"}}));
        assert!(got[0].1.contains("use one of amended"), "{}", got[0].1);
        let got = issues(
            json!({"resourceType": "Task", "status": "requested", "intent": "order", "priority": "soon"}),
        );
        assert_eq!(got[0].0, "Task.priority");
    }

    #[test]
    fn resource_type_problems() {
        assert_eq!(issues(json!({"resourceType": "Patientt"}))[0].0, "invalid");
        assert_eq!(issues(json!({"id": "x"}))[0].0, "required");
        assert_eq!(issues(json!([1]))[0].0, "structure");
    }
}
