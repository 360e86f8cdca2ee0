//! The caller's view as SQL: one condition on a `resources` row that every search, include,
//! revinclude, `_has`, chain and history page applies. Its shape mirrors
//! `care::access::permits` clause by clause (the policy matrix plays both).

use care::access::{AccessView, DIRECTORY_TYPES};

use crate::db::SqlValue;
use crate::filter::AccessFilter;

pub(super) fn placeholders(n: usize) -> String {
    vec!["?"; n].join(", ")
}

pub(super) fn text_values(items: &[impl AsRef<str>]) -> Vec<SqlValue> {
    items
        .iter()
        .map(|s| SqlValue::Text(s.as_ref().to_string()))
        .collect()
}

/// Turns a view into SQL. The shape mirrors `care::access::permits` clause by clause.
pub fn filter_for(view: &AccessView) -> Option<AccessFilter> {
    let types = view.types.as_ref().map(|types| {
        if types.is_empty() {
            AccessFilter {
                sql: "1 = 0".into(),
                params: Vec::new(),
            }
        } else {
            AccessFilter {
                sql: format!("{{r}}.rtype IN ({})", placeholders(types.len())),
                params: text_values(types),
            }
        }
    });
    if view.everything {
        return types;
    }
    let mut parts: Vec<String> = Vec::new();
    let mut params: Vec<SqlValue> = Vec::new();
    if view.directory {
        parts.push(format!(
            "{{r}}.rtype IN ({})",
            placeholders(DIRECTORY_TYPES.len())
        ));
        params.extend(text_values(DIRECTORY_TYPES));
    }
    // AuditEvents are not resource rows: the audit store filters them by
    // `care::access::audit_view`
    let mut grants: Vec<String> = Vec::new();
    let mut grant_params: Vec<SqlValue> = Vec::new();
    if !view.care_organizations.is_empty() {
        grants.push(format!(
            // correlated: two index probes per row the query reaches, not the whole set of
            // the organisation's patients' resources built for every query
            "EXISTS (SELECT 1 FROM compartments acc_c JOIN care_relationships acc_cr ON acc_cr.patient_id = acc_c.patient_id WHERE acc_c.rid = {{r}}.rid AND acc_cr.organization_id IN ({}))",
            placeholders(view.care_organizations.len())
        ));
        grant_params.extend(text_values(&view.care_organizations));
    }
    // patients grouped by what is withheld from them (nothing: the whole compartment)
    let mut groups: Vec<(&[String], Vec<&str>)> = Vec::new();
    for p in &view.patients {
        match groups.iter_mut().find(|(w, _)| *w == p.withheld.as_slice()) {
            Some((_, ids)) => ids.push(p.patient_id.as_str()),
            None => groups.push((p.withheld.as_slice(), vec![p.patient_id.as_str()])),
        }
    }
    for (withheld, ids) in groups {
        if withheld.is_empty() {
            grants.push(format!(
                "{{r}}.rid IN (SELECT rid FROM compartments WHERE patient_id IN ({}))",
                placeholders(ids.len())
            ));
            grant_params.extend(text_values(&ids));
        } else {
            grants.push(format!(
                "({{r}}.rid IN (SELECT rid FROM compartments WHERE patient_id IN ({})) AND {{r}}.rid NOT IN (SELECT rid FROM idx_token WHERE param = '_security' AND code IN ({})))",
                placeholders(ids.len()),
                placeholders(withheld.len())
            ));
            grant_params.extend(text_values(&ids));
            grant_params.extend(text_values(withheld));
        }
    }
    if !grants.is_empty() {
        let mut cond = format!(
            "({{r}}.rtype NOT IN ({}) AND ({})",
            placeholders(DIRECTORY_TYPES.len()),
            grants.join(" OR ")
        );
        params.extend(text_values(DIRECTORY_TYPES));
        params.extend(grant_params);
        if !view.denied_patients.is_empty() {
            cond.push_str(&format!(
                " AND {{r}}.rid NOT IN (SELECT rid FROM compartments WHERE patient_id IN ({}))",
                placeholders(view.denied_patients.len())
            ));
            params.extend(text_values(&view.denied_patients));
        }
        for (patient, labels) in &view.withheld {
            cond.push_str(&format!(
                " AND NOT ({{r}}.rid IN (SELECT rid FROM compartments WHERE patient_id = ?) AND {{r}}.rid IN (SELECT rid FROM idx_token WHERE param = '_security' AND code IN ({})))",
                placeholders(labels.len())
            ));
            params.push(SqlValue::Text(patient.clone()));
            params.extend(text_values(labels));
        }
        cond.push(')');
        parts.push(cond);
    }
    if parts.is_empty() {
        return Some(AccessFilter {
            sql: "1 = 0".into(),
            params,
        });
    }
    let mut sql = format!("({})", parts.join(" OR "));
    if let Some(t) = types {
        sql = format!("({} AND {sql})", t.sql);
        let mut all = t.params;
        all.extend(params);
        params = all;
    }
    Some(AccessFilter { sql, params })
}
