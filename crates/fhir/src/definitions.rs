//! The FHIR R4 element model (which JSON properties each resource and datatype has, their types
//! and cardinalities), loaded once from `data/fhir-r4/elements.json`.
//!
//! The data file is derived from the official R4 StructureDefinitions by
//! `scripts/gen-fhir-definitions.py`; see `data/fhir-r4/PROVENANCE.md`. The required bindings
//! of `code` elements and the codes of their value sets come from `data/fhir-r4/bindings.json`.

use std::collections::HashMap;
use std::sync::OnceLock;

use serde::Deserialize;

const ELEMENTS_JSON: &str = include_str!("../../../data/fhir-r4/elements.json");
const BINDINGS_JSON: &str = include_str!("../../../data/fhir-r4/bindings.json");

/// The FHIR primitive datatypes, each with its own lexical rules (see `primitive.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Primitive {
    Base64Binary,
    Boolean,
    Canonical,
    Code,
    Date,
    DateTime,
    Decimal,
    Id,
    Instant,
    Integer,
    Markdown,
    Oid,
    PositiveInt,
    String,
    Time,
    UnsignedInt,
    Uri,
    Url,
    Uuid,
    Xhtml,
}

impl Primitive {
    pub fn from_name(name: &str) -> Option<Primitive> {
        Some(match name {
            "base64Binary" => Primitive::Base64Binary,
            "boolean" => Primitive::Boolean,
            "canonical" => Primitive::Canonical,
            "code" => Primitive::Code,
            "date" => Primitive::Date,
            "dateTime" => Primitive::DateTime,
            "decimal" => Primitive::Decimal,
            "id" => Primitive::Id,
            "instant" => Primitive::Instant,
            "integer" => Primitive::Integer,
            "markdown" => Primitive::Markdown,
            "oid" => Primitive::Oid,
            "positiveInt" => Primitive::PositiveInt,
            "string" => Primitive::String,
            "time" => Primitive::Time,
            "unsignedInt" => Primitive::UnsignedInt,
            "uri" => Primitive::Uri,
            "url" => Primitive::Url,
            "uuid" => Primitive::Uuid,
            "xhtml" => Primitive::Xhtml,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Primitive::Base64Binary => "base64Binary",
            Primitive::Boolean => "boolean",
            Primitive::Canonical => "canonical",
            Primitive::Code => "code",
            Primitive::Date => "date",
            Primitive::DateTime => "dateTime",
            Primitive::Decimal => "decimal",
            Primitive::Id => "id",
            Primitive::Instant => "instant",
            Primitive::Integer => "integer",
            Primitive::Markdown => "markdown",
            Primitive::Oid => "oid",
            Primitive::PositiveInt => "positiveInt",
            Primitive::String => "string",
            Primitive::Time => "time",
            Primitive::UnsignedInt => "unsignedInt",
            Primitive::Uri => "uri",
            Primitive::Url => "url",
            Primitive::Uuid => "uuid",
            Primitive::Xhtml => "xhtml",
        }
    }
}

/// What a JSON property holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChildType {
    /// A primitive value (and its `_name` companion for id/extensions).
    Primitive(Primitive),
    /// An object whose properties are described by the node with this key: a datatype name
    /// (`HumanName`) or a backbone path (`Patient.contact`).
    Complex { node: String, fhir_type: String },
    /// Any resource, discriminated by its `resourceType` (`contained`, `Bundle.entry.resource`).
    Resource,
}

impl ChildType {
    /// The FHIR type name of the value (`HumanName`, `BackboneElement`, `date`, `Resource`).
    pub fn fhir_type(&self) -> &str {
        match self {
            ChildType::Primitive(p) => p.name(),
            ChildType::Complex { fhir_type, .. } => fhir_type,
            ChildType::Resource => "Resource",
        }
    }
}

/// One JSON property of an object: `birthDate`, or `valueQuantity` for the choice `value[x]`.
#[derive(Debug, Clone)]
pub struct ChildDef {
    /// The element's name in the definition (`value[x]` for choices).
    pub element: String,
    pub min: u32,
    pub many: bool,
    pub ty: ChildType,
    /// Part of the `_summary=true` view.
    pub summary: bool,
    /// For a `code` with a required binding: the value set its codes must come from (an index
    /// for [`Definitions::value_set`]).
    pub binding: Option<usize>,
}

/// The codes of a value set a `code` element is bound to (required strength).
#[derive(Debug)]
pub struct ValueSet {
    pub url: String,
    pub name: String,
    /// Sorted.
    pub codes: Vec<String>,
}

impl ValueSet {
    pub fn contains(&self, code: &str) -> bool {
        self.codes
            .binary_search_by(|c| c.as_str().cmp(code))
            .is_ok()
    }
}

/// The properties of one kind of object.
#[derive(Debug, Default)]
pub struct NodeDef {
    pub children: HashMap<String, ChildDef>,
    /// Elements with `min >= 1`, by element name, with the JSON keys that satisfy each.
    pub required: Vec<(String, Vec<String>)>,
}

/// How a type is defined.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Primitive,
    Complex,
    Resource,
    Abstract,
}

/// The whole R4 element model.
#[derive(Debug)]
pub struct Definitions {
    nodes: HashMap<String, NodeDef>,
    kinds: HashMap<String, Kind>,
    value_sets: Vec<ValueSet>,
}

/// One element row of the data file: path, min, max, types, isSummary.
type ElementRow = (String, u32, String, Vec<String>, u8);

#[derive(Deserialize)]
struct ElementsFile {
    kinds: HashMap<String, String>,
    elements: HashMap<String, Vec<ElementRow>>,
}

#[derive(Deserialize)]
struct BindingsFile {
    /// Element path (`Patient.contact.gender`) → value set URL.
    elements: HashMap<String, String>,
    #[serde(rename = "valueSets")]
    value_sets: HashMap<String, ValueSetRow>,
}

#[derive(Deserialize)]
struct ValueSetRow {
    name: String,
    codes: Vec<String>,
}

/// The R4 definitions, parsed on first use.
pub fn definitions() -> &'static Definitions {
    static DEFS: OnceLock<Definitions> = OnceLock::new();
    DEFS.get_or_init(|| Definitions::parse(ELEMENTS_JSON, BINDINGS_JSON))
}

impl Definitions {
    fn parse(text: &str, bindings: &str) -> Definitions {
        let file: ElementsFile =
            serde_json::from_str(text).expect("data/fhir-r4/elements.json is valid");
        let bindings: BindingsFile =
            serde_json::from_str(bindings).expect("data/fhir-r4/bindings.json is valid");
        let mut value_sets: Vec<ValueSet> = bindings
            .value_sets
            .into_iter()
            .map(|(url, row)| {
                let mut codes = row.codes;
                codes.sort_unstable();
                ValueSet {
                    url,
                    name: row.name,
                    codes,
                }
            })
            .collect();
        value_sets.sort_by(|a, b| a.url.cmp(&b.url));
        let binding_of = |type_name: &str, path: &str| {
            let url = bindings.elements.get(&format!("{type_name}.{path}"))?;
            value_sets.binary_search_by(|v| v.url.cmp(url)).ok()
        };
        let kinds: HashMap<String, Kind> = file
            .kinds
            .iter()
            .map(|(name, kind)| {
                let kind = match kind.as_str() {
                    "primitive-type" => Kind::Primitive,
                    "complex-type" => Kind::Complex,
                    "resource" => Kind::Resource,
                    _ => Kind::Abstract,
                };
                (name.clone(), kind)
            })
            .collect();
        let mut nodes: HashMap<String, NodeDef> = HashMap::new();
        for (type_name, rows) in &file.elements {
            if kinds.get(type_name) == Some(&Kind::Primitive) {
                continue;
            }
            nodes.entry(type_name.clone()).or_default();
            for (path, min, max, types, summary) in rows {
                let (parent, name) = match path.rsplit_once('.') {
                    Some((parent, name)) => (format!("{type_name}.{parent}"), name),
                    None => (type_name.clone(), path.as_str()),
                };
                let many = max != "1" && max != "0";
                if max == "0" {
                    continue;
                }
                let node = nodes.entry(parent).or_default();
                let mut keys = Vec::new();
                if let Some(stem) = name.strip_suffix("[x]") {
                    for t in types {
                        let key = format!("{stem}{}", upper_first(t));
                        let ty = child_type(&kinds, type_name, path, t);
                        keys.push(key.clone());
                        node.children.insert(
                            key,
                            ChildDef {
                                element: name.to_string(),
                                min: *min,
                                many,
                                ty,
                                summary: *summary == 1,
                                binding: None,
                            },
                        );
                    }
                } else {
                    let t = types.first().map(String::as_str).unwrap_or("string");
                    let ty = child_type(&kinds, type_name, path, t);
                    keys.push(name.to_string());
                    node.children.insert(
                        name.to_string(),
                        ChildDef {
                            element: name.to_string(),
                            min: *min,
                            many,
                            ty,
                            summary: *summary == 1,
                            binding: binding_of(type_name, path),
                        },
                    );
                }
                if *min > 0 {
                    node.required.push((name.to_string(), keys));
                }
            }
        }
        Definitions {
            nodes,
            kinds,
            value_sets,
        }
    }

    /// The value set of a binding ([`ChildDef::binding`]).
    pub fn value_set(&self, index: usize) -> &ValueSet {
        &self.value_sets[index]
    }

    /// The kind of a named type, if R4 defines it.
    pub fn kind(&self, type_name: &str) -> Option<Kind> {
        self.kinds.get(type_name).copied()
    }

    /// Whether `name` is a concrete R4 resource type (`Patient`, not `DomainResource`).
    pub fn is_resource_type(&self, name: &str) -> bool {
        self.kind(name) == Some(Kind::Resource)
    }

    /// All concrete resource type names, sorted.
    pub fn resource_types(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self
            .kinds
            .iter()
            .filter(|(_, k)| **k == Kind::Resource)
            .map(|(n, _)| n.as_str())
            .collect();
        v.sort_unstable();
        v
    }

    /// The properties of the object described by `node` (a type name or backbone path).
    pub fn node(&self, node: &str) -> Option<&NodeDef> {
        self.nodes.get(node)
    }

    /// One property of an object.
    pub fn child(&self, node: &str, key: &str) -> Option<&ChildDef> {
        self.nodes.get(node)?.children.get(key)
    }
}

fn child_type(kinds: &HashMap<String, Kind>, owner: &str, path: &str, t: &str) -> ChildType {
    if let Some(reference) = t.strip_prefix('@') {
        return ChildType::Complex {
            node: format!("{owner}.{reference}"),
            fhir_type: "BackboneElement".to_string(),
        };
    }
    if let Some(p) = Primitive::from_name(t) {
        return ChildType::Primitive(p);
    }
    match t {
        "Resource" => ChildType::Resource,
        t if kinds.get(t) == Some(&Kind::Resource) => ChildType::Resource,
        "BackboneElement" | "Element" => ChildType::Complex {
            node: format!("{owner}.{}", path.trim_end_matches("[x]")),
            fhir_type: t.to_string(),
        },
        other => {
            debug_assert!(kinds.contains_key(other), "unknown type {other}");
            ChildType::Complex {
                node: other.to_string(),
                fhir_type: other.to_string(),
            }
        }
    }
}

pub(crate) fn upper_first(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().collect::<String>() + c.as_str(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patient_properties_are_known() {
        let d = definitions();
        assert!(d.is_resource_type("Patient"));
        assert!(!d.is_resource_type("DomainResource"));
        let birth = d.child("Patient", "birthDate").unwrap();
        assert_eq!(birth.ty, ChildType::Primitive(Primitive::Date));
        assert!(!birth.many);
        let name = d.child("Patient", "name").unwrap();
        assert!(name.many);
        assert_eq!(name.ty.fhir_type(), "HumanName");
        let deceased = d.child("Patient", "deceasedDateTime").unwrap();
        assert_eq!(deceased.element, "deceased[x]");
        let contact_name = d.child("Patient.contact", "name").unwrap();
        assert_eq!(contact_name.ty.fhir_type(), "HumanName");
    }

    #[test]
    fn content_references_point_at_their_backbone() {
        let d = definitions();
        let item = d.child("Questionnaire.item", "item").unwrap();
        assert!(
            matches!(&item.ty, ChildType::Complex { node, .. } if node == "Questionnaire.item")
        );
        let status = d.node("Observation").unwrap();
        assert!(status.required.iter().any(|(n, _)| n == "status"));
    }
}
