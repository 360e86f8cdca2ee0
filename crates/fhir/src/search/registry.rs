//! The search parameters of each supported resource type, from the official R4 definitions
//! (`data/fhir-r4/search-parameters.json`), compiled once.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use serde::Deserialize;

use crate::SUPPORTED_RESOURCE_TYPES;
use crate::fhirpath::{self, Expr};

const SEARCH_PARAMETERS_JSON: &str =
    include_str!("../../../../data/fhir-r4/search-parameters.json");

/// `SearchParameter.type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ParamType {
    Number,
    Date,
    String,
    Token,
    Reference,
    Composite,
    Quantity,
    Uri,
    Special,
}

impl ParamType {
    pub fn code(self) -> &'static str {
        match self {
            ParamType::Number => "number",
            ParamType::Date => "date",
            ParamType::String => "string",
            ParamType::Token => "token",
            ParamType::Reference => "reference",
            ParamType::Composite => "composite",
            ParamType::Quantity => "quantity",
            ParamType::Uri => "uri",
            ParamType::Special => "special",
        }
    }
}

/// One row of the definitions file.
#[derive(Debug, Clone, Deserialize)]
pub struct ParamDefinition {
    pub code: String,
    #[serde(rename = "type")]
    pub kind: ParamType,
    pub base: Vec<String>,
    pub expression: String,
    pub url: String,
    #[serde(default)]
    pub target: Vec<String>,
    #[serde(default)]
    pub component: Vec<ComponentDefinition>,
}

/// One component of a composite parameter: another parameter, and where it is read relative to
/// the composite's own expression.
#[derive(Debug, Clone, Deserialize)]
pub struct ComponentDefinition {
    pub definition: String,
    pub expression: String,
}

#[derive(Deserialize)]
struct ParamsFile {
    parameters: Vec<ParamDefinition>,
}

/// Every R4 search parameter definition, as shipped.
pub fn all_definitions() -> &'static [ParamDefinition] {
    static ALL: OnceLock<Vec<ParamDefinition>> = OnceLock::new();
    ALL.get_or_init(|| {
        let file: ParamsFile = serde_json::from_str(SEARCH_PARAMETERS_JSON)
            .expect("data/fhir-r4/search-parameters.json is valid");
        file.parameters
    })
}

/// How a parameter is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Column {
    /// From the extracted index rows of its type.
    Index,
    /// `_id`: the resource's id column.
    Id,
    /// `_lastUpdated`: the resource's last-updated column.
    LastUpdated,
}

/// A search parameter of one resource type, ready to use.
#[derive(Debug)]
pub struct SearchParam {
    pub code: String,
    pub kind: ParamType,
    pub url: String,
    pub expression_text: String,
    pub expression: Expr,
    /// The resource types a reference parameter may point at.
    pub targets: Vec<String>,
    pub column: Column,
    /// The two parts of a composite parameter (`code` and `value-quantity` of
    /// `code-value-quantity`).
    pub components: Vec<CompositePart>,
    /// A date parameter whose expression selects at most one date, dateTime, instant or
    /// Period of a resource of this type (`Patient.birthDate`): every resource has at most
    /// one index row for it, so several conditions on it may be tested on the same row.
    pub single_valued: bool,
}

/// One part of a composite parameter.
#[derive(Debug)]
pub struct CompositePart {
    pub code: String,
    pub kind: ParamType,
    /// Relative to the item the composite's expression selects.
    pub expression: Expr,
}

/// Whether a composite's two parts are of types Continuum indexes together: a token or
/// reference, then a token, quantity, date or string.
fn composite_supported(parts: &[CompositePart]) -> bool {
    matches!(parts, [a, b]
        if matches!(a.kind, ParamType::Token | ParamType::Reference)
            && matches!(b.kind, ParamType::Token | ParamType::Quantity | ParamType::Date | ParamType::String))
}

/// Parameter codes that R4 defines for a supported type but whose matching Continuum does not
/// implement yet; they are neither indexed nor listed in the CapabilityStatement.
const NOT_YET: &[&str] = &["phonetic"];

/// The search parameters of every supported resource type.
#[derive(Debug)]
pub struct Registry {
    types: BTreeMap<&'static str, BTreeMap<String, SearchParam>>,
}

/// The registry for the supported resource types, built on first use.
pub fn registry() -> &'static Registry {
    static REG: OnceLock<Registry> = OnceLock::new();
    REG.get_or_init(Registry::build)
}

impl Registry {
    fn build() -> Registry {
        let mut types: BTreeMap<&'static str, BTreeMap<String, SearchParam>> = BTreeMap::new();
        for rt in SUPPORTED_RESOURCE_TYPES {
            types.insert(rt, BTreeMap::new());
        }
        for def in all_definitions() {
            if def.expression.is_empty()
                || (def.kind == ParamType::Special && def.code != "near")
                || NOT_YET.contains(&def.code.as_str())
            {
                continue;
            }
            let components: Vec<CompositePart> = def
                .component
                .iter()
                .filter_map(|c| {
                    let target = all_definitions().iter().find(|d| d.url == c.definition)?;
                    Some(CompositePart {
                        code: target.code.clone(),
                        kind: target.kind,
                        expression: fhirpath::compile(&c.expression).ok()?,
                    })
                })
                .collect();
            if def.kind == ParamType::Composite && !composite_supported(&components) {
                continue;
            }
            let compiled = match fhirpath::compile(&def.expression) {
                Ok(e) => e,
                Err(e) => panic!("{e}"),
            };
            for (rt, params) in types.iter_mut() {
                let applies = def
                    .base
                    .iter()
                    .any(|b| b == rt || b == "Resource" || b == "DomainResource");
                if !applies {
                    continue;
                }
                let Some(expression) = specialise(&compiled, rt) else {
                    continue;
                };
                let single_valued = def.kind == ParamType::Date && single_date(&expression, rt);
                let column = match def.code.as_str() {
                    "_id" => Column::Id,
                    "_lastUpdated" => Column::LastUpdated,
                    _ => Column::Index,
                };
                params.insert(
                    def.code.clone(),
                    SearchParam {
                        code: def.code.clone(),
                        kind: def.kind,
                        url: def.url.clone(),
                        expression_text: def.expression.clone(),
                        expression,
                        targets: def.target.clone(),
                        column,
                        components: components
                            .iter()
                            .map(|c| CompositePart {
                                code: c.code.clone(),
                                kind: c.kind,
                                expression: c.expression.clone(),
                            })
                            .collect(),
                        single_valued,
                    },
                );
            }
        }
        Registry { types }
    }

    /// Whether Continuum stores and serves this resource type.
    pub fn supports(&self, resource_type: &str) -> bool {
        self.types.contains_key(resource_type)
    }

    /// A parameter of a type, by code.
    pub fn param(&self, resource_type: &str, code: &str) -> Option<&SearchParam> {
        self.types.get(resource_type)?.get(code)
    }

    /// All parameters of a type, sorted by code.
    pub fn params(&self, resource_type: &str) -> impl Iterator<Item = &SearchParam> {
        self.types
            .get(resource_type)
            .into_iter()
            .flat_map(|m| m.values())
    }

    /// The supported resource types, sorted.
    pub fn resource_types(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.types.keys().copied()
    }
}

/// Keeps the branches of a union that apply to `rt` (`Patient.name | Person.name` → `Patient.name`
/// for a Patient); `None` when none do.
fn specialise(expr: &Expr, rt: &str) -> Option<Expr> {
    match expr {
        Expr::Union(parts) => {
            let kept: Vec<Expr> = parts.iter().filter_map(|p| specialise(p, rt)).collect();
            match kept.len() {
                0 => None,
                1 => kept.into_iter().next(),
                _ => Some(Expr::Union(kept)),
            }
        }
        other => match root_type(other) {
            Some(t) if t != rt && t != "Resource" && t != "DomainResource" => None,
            _ => Some(other.clone()),
        },
    }
}

/// Whether `expr`, evaluated on a resource of type `rt`, yields at most one date-like value
/// (date, dateTime, instant or Period; a Timing can hold many events).
fn single_date(expr: &Expr, rt: &str) -> bool {
    /// What a single-valued path has reached: an object described by a node of the element
    /// model, or a choice/leaf whose possible types are listed.
    enum At {
        Node(String),
        Types(Vec<String>),
    }
    fn walk(expr: &Expr, rt: &str) -> Option<At> {
        let defs = crate::definitions::definitions();
        match expr {
            Expr::TypeRoot(t) if t == rt => Some(At::Node(rt.to_string())),
            Expr::Where(inner, _) => walk(inner, rt),
            Expr::As(inner, ty) => match walk(inner, rt)? {
                At::Types(types) if types.iter().any(|t| t == ty) => {
                    Some(At::Types(vec![ty.clone()]))
                }
                At::Node(_) => Some(At::Types(vec![ty.clone()])),
                At::Types(_) => None,
            },
            Expr::Child(inner, name) => {
                let At::Node(node) = walk(inner, rt)? else {
                    return None;
                };
                let def = defs.node(&node)?;
                let choice = format!("{name}[x]");
                let matching: Vec<&crate::definitions::ChildDef> = def
                    .children
                    .iter()
                    .filter(|(key, c)| *key == name || c.element == choice)
                    .map(|(_, c)| c)
                    .collect();
                if matching.is_empty() || matching.iter().any(|c| c.many) {
                    return None;
                }
                if matching.len() == 1
                    && let crate::definitions::ChildType::Complex { node, fhir_type } =
                        &matching[0].ty
                    && fhir_type != "Period"
                {
                    return Some(At::Node(node.clone()));
                }
                Some(At::Types(
                    matching
                        .iter()
                        .map(|c| c.ty.fhir_type().to_string())
                        .collect(),
                ))
            }
            _ => None,
        }
    }
    match walk(expr, rt) {
        Some(At::Types(types)) => types
            .iter()
            .all(|t| matches!(t.as_str(), "date" | "dateTime" | "instant" | "Period")),
        _ => false,
    }
}

fn root_type(expr: &Expr) -> Option<&str> {
    match expr {
        Expr::TypeRoot(t) => Some(t),
        Expr::Child(inner, _)
        | Expr::Where(inner, _)
        | Expr::As(inner, _)
        | Expr::Is(inner, _)
        | Expr::Resolve(inner)
        | Expr::Index(inner, _)
        | Expr::Exists(inner) => root_type(inner),
        Expr::And(a, _) | Expr::Equals(a, _, _) => root_type(a),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patient_parameters_come_from_r4() {
        let r = registry();
        let name = r.param("Patient", "name").unwrap();
        assert_eq!(name.kind, ParamType::String);
        assert_eq!(
            r.param("Patient", "birthdate").unwrap().kind,
            ParamType::Date
        );
        assert_eq!(r.param("Patient", "_id").unwrap().column, Column::Id);
        assert_eq!(r.param("Patient", "_tag").unwrap().kind, ParamType::Token);
        let gp = r.param("Patient", "general-practitioner").unwrap();
        assert!(gp.targets.contains(&"Practitioner".to_string()));
        assert!(r.param("Patient", "phonetic").is_none());
        assert!(r.param("Task", "owner").is_some());
        assert!(!r.supports("Claim"));
    }

    #[test]
    fn single_valued_dates_follow_the_element_model() {
        let r = registry();
        let single = |rt: &str, code: &str| r.param(rt, code).unwrap().single_valued;
        assert!(single("Patient", "birthdate"));
        assert!(single("Appointment", "date"));
        assert!(single("Encounter", "date")); // a Period is one row
        assert!(single("Patient", "death-date")); // (deceased as dateTime)
        assert!(!single("Observation", "date")); // effective[x] may be a Timing
        assert!(!single("Goal", "target-date")); // target is repeating
        assert!(!single("Patient", "name")); // not a date
    }
}
