//! `GET /fhir/metadata`: the CapabilityStatement, generated from the same registry the router
//! uses, so it lists exactly the types, interactions and search parameters that work.

use fhir::search::Registry;
use serde_json::{Value, json};

/// The interactions every supported type answers.
const TYPE_INTERACTIONS: &[&str] = &[
    "read",
    "vread",
    "update",
    "delete",
    "history-instance",
    "history-type",
    "create",
    "search-type",
];

/// The alliance's extensions: (URL, resource types, meaning).
pub use care::profile::EXTENSIONS;

pub fn capability_statement(
    registry: &Registry,
    base_url: &str,
    limits: &fhir::search::SearchLimits,
) -> Value {
    let resources: Vec<Value> = registry
        .resource_types()
        .map(|rt| {
            // the audit trail is a store of its own, searched by its compact index
            let audit = rt == "AuditEvent";
            let params: Vec<Value> = registry
                .params(rt)
                .filter(|p| !audit || store::audit::search::PARAMETERS.contains(&p.code.as_str()))
                .map(|p| {
                    json!({
                        "name": p.code,
                        "definition": p.url,
                        "type": p.kind.code(),
                        "documentation": p.expression_text,
                    })
                })
                .collect();
            let includes: Vec<String> = (!audit)
                .then(|| "*".to_string())
                .into_iter()
                .chain(
                    registry
                        .params(rt)
                        .filter(|p| !audit && p.kind == fhir::search::ParamType::Reference)
                        .map(|p| format!("{rt}:{}", p.code)),
                )
                .collect();
            let revincludes: Vec<String> = registry
                .resource_types()
                .filter(|src| *src != "AuditEvent" && !audit)
                .flat_map(|src| {
                    registry
                        .params(src)
                        .filter(|p| {
                            p.kind == fhir::search::ParamType::Reference
                                && (p.targets.is_empty() || p.targets.iter().any(|t| t == rt))
                        })
                        .map(move |p| format!("{src}:{}", p.code))
                })
                .collect();
            // AuditEvents are written by the server only
            let interactions: Vec<Value> = TYPE_INTERACTIONS
                .iter()
                .filter(|i| {
                    !audit || matches!(**i, "read" | "vread" | "history-instance" | "search-type")
                })
                .map(|i| json!({"code": i}))
                .collect();
            let mut entry = json!({
                "type": rt,
                "profile": format!("http://hl7.org/fhir/StructureDefinition/{rt}"),
                "interaction": interactions,
                "versioning": "versioned-update",
                "readHistory": true,
                "updateCreate": true,
                "conditionalCreate": true,
                "conditionalRead": "not-supported",
                "conditionalUpdate": true,
                "conditionalDelete": "single",
                "searchInclude": includes,
                "searchRevInclude": revincludes,
                "searchParam": params,
            });
            if let Value::Object(o) = &mut entry {
                // FHIR JSON has no empty arrays
                o.retain(|_, v| v.as_array().is_none_or(|a| !a.is_empty()));
            }
            if audit {
                entry["documentation"] = json!(format!(
                    "The audit trail: written by the server only (IHE BALP events, hash-chained, kept in a store of its own); read by id, or searched by {} in the order recorded (_sort=date or -date), without _include, chains or _has.",
                    store::audit::search::PARAMETERS.join(", ")
                ));
            }
            let extensions: Vec<&(&str, &str, &str)> =
                EXTENSIONS.iter().filter(|(_, on, _)| on.split(',').any(|t| t == rt)).collect();
            if !extensions.is_empty() {
                entry["documentation"] = json!(format!(
                    "Alliance extensions: {}",
                    extensions
                        .iter()
                        .map(|(url, _, what)| format!("{url} ({what})"))
                        .collect::<Vec<_>>()
                        .join("; ")
                ));
            }
            // the operations, from the one registry the router uses
            let operations: Vec<Value> = super::ops::of_type(rt)
                .map(|op| {
                    json!({"name": op.code, "definition": op.definition, "documentation": op.documentation})
                })
                .collect();
            let mut operations = operations;
            let export = match rt {
                "Patient" => Some(("patient-export", "export (Bulk Data Access IG: every patient's compartment the caller may read; GET or POST with Prefer: respond-async)")),
                "Group" => Some(("group-export", "export (Bulk Data Access IG: the compartments of the group's members; GET or POST with Prefer: respond-async)")),
                _ => None,
            };
            if let Some((def, doc)) = export {
                operations.push(json!({"name": "export", "definition": format!("http://hl7.org/fhir/uv/bulkdata/OperationDefinition/{def}"), "documentation": doc}));
            }
            if !operations.is_empty() {
                entry["operation"] = Value::Array(operations);
            }
            entry
        })
        .collect();
    json!({
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": "2026-11-28",
        "publisher": "Continuum",
        "kind": "instance",
        "software": {"name": "Continuum", "version": env!("CARGO_PKG_VERSION")},
        "implementation": {"description": "Continuum care-coordination server", "url": base_url},
        "instantiates": ["http://hl7.org/fhir/uv/bulkdata/CapabilityStatement/bulk-data"],
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json", "json"],
        "rest": [{
            "mode": "server",
            "security": security(base_url),
            "documentation": format!("Search: string (default prefix, :exact, :contains), token (system|code, |code, system|, :not, :text), reference (id, Type/id, absolute URL, :Type), date/number/quantity with prefixes eq ne gt lt ge le sa eb over partial dates and periods, uri (:below, :above), composite (first$second), :missing on every type; chained parameters (up to 3 links, e.g. subject:Patient.name) and _has reverse chains; _include and _revinclude (with :iterate, one more level); _sort on several parameters, _id and _lastUpdated (- for descending); Location?near=lat|lng|distance|unit ordered by distance; _id, _lastUpdated, _count (max 1000), _total=none|estimate|accurate (fhirpy's _totalMethod is a synonym; without it a total is given when the first page holds every match), _summary, _elements; cursor paging via next links that neither repeats nor skips under concurrent writes. Unknown parameters are an error unless 'Prefer: handling=lenient'. Every result is filtered by the caller's access rights, totals and includes included. {}",
            limits_text(limits)),
            "resource": resources,
            "interaction": [
                {"code": "transaction"},
                {"code": "batch"},
                {"code": "history-system"},
            ],
            "operation": [{
                "name": "export",
                "definition": "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/export",
                "documentation": "Bulk Data export (Bulk Data Access IG 2.0.0) of everything the caller may read: GET or POST [base]/$export with Prefer: respond-async; _type, _since, _typeFilter, _outputFormat (application/fhir+ndjson, application/ndjson, ndjson). Answered 202 with Content-Location, the status URL: 202 with X-Progress and Retry-After while it runs, 200 with the manifest when done, DELETE to cancel. Files are NDJSON, downloaded with the same access token; every resource in them passed the caller's access rights.",
            }],
        }],
    })
}

/// The limits every search is held to, in words (also in the README).
fn limits_text(limits: &fhir::search::SearchLimits) -> String {
    let sizes = fhir::validate::resource_limits();
    format!(
        "Limits (400 too-costly beyond them, whatever path the query arrives by: GET, POST _search, conditional headers and URLs, Bundle entries): {} parameters per query, {} values per parameter and {} in all, {} _include/_revinclude, chains of 3 links, _count 1000. Resources (422 too-costly beyond them): {} items in one array, {} search index entries per resource, {} entries per Bundle. A request holding the database past its time budget is rolled back and answered 503 with Retry-After.",
        limits.terms,
        limits.values,
        limits.total_values,
        limits.includes,
        sizes.array_items,
        sizes.index_entries,
        sizes.bundle_entries
    )
}

/// `rest.security`: SMART on FHIR, with the token endpoint in the `oauth-uris` extension (the
/// same as `/.well-known/smart-configuration`). Tokens come from client credentials only; people
/// sign in to the console at `/login`, so there is no OAuth authorize endpoint to list.
fn security(base_url: &str) -> Value {
    let root = base_url.trim_end_matches('/').trim_end_matches("/fhir");
    json!({
        "extension": [{
            "url": "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris",
            "extension": [{"url": "token", "valueUri": format!("{root}/auth/token")}],
        }],
        "cors": false,
        "service": [{
            "coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                "code": "SMART-on-FHIR",
            }],
            "text": "SMART Backend Services (client credentials)",
        }],
        "description": format!(
            "Every endpoint but metadata needs 'Authorization: Bearer <token>'. A token (15 minutes, EdDSA-signed) is issued by POST {root}/auth/token for grant_type=client_credentials with the client's id and secret by HTTP Basic; SMART scopes (system/, user/, patient/) limit what it may read and change. Discovery: {root}/.well-known/smart-configuration; keys: {root}/.well-known/jwks.json."
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_supported_types_and_their_parameters() {
        let cs = capability_statement(
            fhir::search::registry(),
            "http://x/fhir",
            &Default::default(),
        );
        let resources = cs["rest"][0]["resource"].as_array().unwrap();
        assert_eq!(resources.len(), fhir::SUPPORTED_RESOURCE_TYPES.len());
        let patient = resources.iter().find(|r| r["type"] == "Patient").unwrap();
        let names: Vec<&str> = patient["searchParam"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap())
            .collect();
        assert!(
            names.contains(&"birthdate") && names.contains(&"_id") && !names.contains(&"phonetic")
        );
    }

    #[test]
    fn says_how_to_authenticate() {
        let cs = capability_statement(
            fhir::search::registry(),
            "http://x:8080/fhir",
            &Default::default(),
        );
        let security = &cs["rest"][0]["security"];
        assert_eq!(security["service"][0]["coding"][0]["code"], "SMART-on-FHIR");
        let uris = &security["extension"][0];
        assert!(uris["url"].as_str().unwrap().ends_with("/oauth-uris"));
        assert_eq!(uris["extension"][0]["url"], "token");
        assert_eq!(uris["extension"][0]["valueUri"], "http://x:8080/auth/token");
        fhir::validate_resource(&cs).expect("a valid CapabilityStatement");
    }
}
