//! Identity linkage as Patients are written: a Patient resource as the record linkage compares
//! it (`care::identity::Record`); a Person resource linking the records for the pairs graded
//! certain, the review queue for probable and possible ones, and the register
//! (`identity_review`) that records each — so that a link can be undone and a rejected pair is
//! never proposed again; and the batch run over every Patient after a bulk load.

use care::identity::Record;
use care::identity::{Grade, LinkConfig, Thresholds, prepare, score_pair};
use fhir::search::extract;
use serde_json::{Value, json};
use store::CallerTx;

use super::Ctx;
use super::resources::{Reader, all_of, body, search_request};
use crate::error::ApiError;

/// Identifier systems that name one person wherever they appear (a shared value links two
/// records deterministically). Medical record numbers name one patient within their own
/// system, so an identifier typed `MR` (v2-0203) — the birth hospital's MRN on a newborn's
/// records among them — links too, by system and value.
pub const PERSON_IDENTIFIER_SYSTEMS: &[&str] = &[
    "http://hl7.org/fhir/sid/us-ssn",
    "http://hl7.org/fhir/sid/us-medicare",
    "http://hl7.org/fhir/sid/us-mbi",
];

/// `system|value` of an Identifier, when it has both.
fn identifier_key(i: &Value) -> Option<String> {
    let system = i.get("system").and_then(Value::as_str)?;
    let value = i.get("value").and_then(Value::as_str)?;
    Some(format!("{system}|{value}"))
}

/// Whether an Identifier is typed a medical record number.
fn is_mrn(i: &Value) -> bool {
    i.pointer("/type/coding")
        .and_then(Value::as_array)
        .is_some_and(|c| {
            c.iter().any(|c| {
                c.get("code").and_then(Value::as_str) == Some("MR")
                    && c.get("system").and_then(Value::as_str)
                        == Some("http://terminology.hl7.org/CodeSystem/v2-0203")
            })
        })
}

/// The fields of a Patient that linkage compares: the official (else first) name, the home
/// (else first) address, the first phone, birth date, gender, multiple birth, person-level
/// identifiers and MRNs, and a newborn's mother's identifier.
pub fn patient_record(id: &str, patient: &Value) -> Record {
    let str_of = |v: Option<&Value>| v.and_then(Value::as_str).unwrap_or("").to_string();
    let pick = |key: &str, preferred: &str| -> Option<&Value> {
        let list = patient.get(key)?.as_array()?;
        list.iter()
            .find(|n| n.get("use").and_then(Value::as_str) == Some(preferred))
            .or_else(|| list.first())
    };
    let name = pick("name", "official");
    let given_names: Vec<&str> = name
        .and_then(|n| n.get("given"))
        .and_then(Value::as_array)
        .map(|g| g.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let family = str_of(name.and_then(|n| n.get("family")));
    let address = pick("address", "home");
    let lines: Vec<&str> = address
        .and_then(|a| a.get("line"))
        .and_then(Value::as_array)
        .map(|l| l.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    // "12 Main Street" → street number 12, line "Main Street"
    let first = lines.first().copied().unwrap_or("");
    let (number, street) = match first.split_once(' ') {
        Some((n, rest)) if n.chars().all(|c| c.is_ascii_digit()) && !n.is_empty() => {
            (n.to_string(), rest.to_string())
        }
        _ => (String::new(), first.to_string()),
    };
    let phone = patient
        .get("telecom")
        .and_then(Value::as_array)
        .and_then(|t| {
            t.iter()
                .find(|c| c.get("system").and_then(Value::as_str) == Some("phone"))
        })
        .and_then(|c| c.get("value"))
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let identifiers = patient
        .get("identifier")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|i| {
            is_mrn(i)
                || i.get("system")
                    .and_then(Value::as_str)
                    .is_some_and(|s| PERSON_IDENTIFIER_SYSTEMS.contains(&s))
        })
        .filter_map(identifier_key)
        .collect();
    let mother_identifiers = fhir::json::extensions(patient, care::profile::MOTHER_IDENTIFIER)
        .filter_map(|e| e.get("valueIdentifier"))
        .filter_map(identifier_key)
        .collect();
    let birth_order = patient
        .get("multipleBirthInteger")
        .and_then(Value::as_u64)
        .and_then(|n| u8::try_from(n).ok());
    let multiple_birth = birth_order.is_some_and(|n| n >= 1)
        || patient.get("multipleBirthBoolean").and_then(Value::as_bool) == Some(true);
    Record {
        id: id.to_string(),
        given: given_names.first().copied().unwrap_or("").to_string(),
        middle: given_names.get(1..).unwrap_or_default().join(" "),
        family,
        birth_date: str_of(patient.get("birthDate")),
        street_number: number,
        address_1: street,
        address_2: lines.get(1).copied().unwrap_or("").to_string(),
        locality: str_of(address.and_then(|a| a.get("city"))),
        postcode: str_of(address.and_then(|a| a.get("postalCode"))),
        state: str_of(address.and_then(|a| a.get("state"))),
        phone,
        sex: str_of(patient.get("gender")),
        identifiers,
        birth_order,
        multiple_birth,
        mother_identifiers,
    }
}

/// Links every Patient against every other, as the system, in one audited transaction (after a
/// bulk load, which does not link as it writes).
pub async fn link_all_patients(api: &super::App) -> Result<LinkReport, ApiError> {
    api.system_job("identity:link-all", |tx, ctx| {
        let report = link_all(tx, ctx)?;
        let described = format!(
            "identity linkage over {} patients: {} linked, {} for review",
            report.patients, report.linked, report.for_review
        );
        Ok((report, Some(described)))
    })
    .await
}

// /// Linkage as Patients are written: a Person resource linking the records (`Person.link`) for
// /// the pairs graded certain, the review queue for probable and possible ones, and the register
// /// (`identity_review`) that records each — so that a link can be undone and a rejected pair is
// /// never proposed again.

/// Candidates read per search when a Patient is written.
const PER_SEARCH: usize = 100;

/// The Patients linked with `start`, directly or through others (the register's linked
/// pairs), `start` included, sorted.
fn cluster(tx: &mut CallerTx, start: &str) -> Result<Vec<String>, ApiError> {
    let mut seen = vec![start.to_string()];
    let mut next = vec![start.to_string()];
    while let Some(id) = next.pop() {
        for p in tx
            .on_behalf(store::OnBehalf::Linkage)
            .identity_partners(&id)?
        {
            if !seen.contains(&p) {
                seen.push(p.clone());
                next.push(p);
            }
        }
    }
    seen.sort();
    Ok(seen)
}

/// The Person resources that link `Patient/id`.
fn persons_of(tx: &mut CallerTx, ctx: &Ctx, id: &str) -> Result<Vec<store::Stored>, ApiError> {
    let req = search_request(
        ctx.registry,
        "Person",
        &[("link", format!("Patient/{id}")), ("_count", "50".into())],
    )?;
    Ok(tx.on_behalf(store::OnBehalf::Linkage).search(&req)?.matches)
}

/// Makes the Person resources agree with the register around `id`: one Person links every
/// record of the cluster `id` belongs to (`link.target`, assurance `level3`); a record
/// linked with nobody is in no Person; a Person left with fewer than two records is
/// deleted. Written with the system's rights, in this transaction.
pub(crate) fn sync_person(tx: &mut CallerTx, ctx: &Ctx, id: &str) -> Result<(), ApiError> {
    let members = cluster(tx, id)?;
    let mut persons: Vec<store::Stored> = Vec::new();
    for m in &members {
        for p in persons_of(tx, ctx, m)? {
            if !persons.iter().any(|x| x.id == p.id) {
                persons.push(p);
            }
        }
    }
    let targets = |p: &Value| -> Vec<String> {
        p.get("link")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|l| l.pointer("/target/reference").and_then(Value::as_str))
            .filter_map(|r| r.strip_prefix("Patient/"))
            .map(str::to_string)
            .collect()
    };
    let mut keep: Option<store::Stored> = None;
    if members.len() >= 2 {
        keep = persons.first().cloned();
        let mut person = keep.as_ref().map(body).unwrap_or_else(|| {
            json!({"resourceType": "Person", "active": true,
                "meta": {"tag": [{"system": care::profile::IDENTITY,
                    "code": "linked-records", "display": "Records of one person, linked by Continuum"}]}})
        });
        let wanted: Vec<Value> = members
            .iter()
            .map(
                |m| json!({"target": {"reference": format!("Patient/{m}")}, "assurance": "level3"}),
            )
            .collect();
        if person.get("link") != Some(&Value::Array(wanted.clone())) {
            person["link"] = Value::Array(wanted);
            let index = extract(fhir::search::registry(), &person);
            let stored = match &keep {
                Some(prev) => {
                    tx.on_behalf(store::OnBehalf::Linkage)
                        .update(prev, &mut person, &index)?
                }
                None => {
                    let pid = tx.new_id();
                    tx.on_behalf(store::OnBehalf::Linkage).create(
                        "Person",
                        &pid,
                        &mut person,
                        &index,
                    )?
                }
            };
            tx.trail.add("Person", &stored.id, &members);
        }
    }
    // every other Person loses this cluster's records
    for p in persons {
        if keep.as_ref().is_some_and(|k| k.id == p.id) {
            continue;
        }
        let mut person = body(&p);
        let left: Vec<String> = targets(&person)
            .into_iter()
            .filter(|t| !members.contains(t))
            .collect();
        if left.len() < 2 {
            tx.on_behalf(store::OnBehalf::Linkage).delete(&p)?;
        } else {
            person["link"] = Value::Array(
                left.iter()
                    .map(|m| json!({"target": {"reference": format!("Patient/{m}")}, "assurance": "level3"}))
                    .collect(),
            );
            let index = extract(fhir::search::registry(), &person);
            tx.on_behalf(store::OnBehalf::Linkage)
                .update(&p, &mut person, &index)?;
        }
        tx.trail.add("Person", &p.id, &members);
    }
    Ok(())
}

/// Grades a pair and records it: certain → linked both ways; probable or possible →
/// waiting for review. Pairs already in the register are left as they are.
fn record(
    tx: &mut CallerTx,
    a: &str,
    b: &str,
    probability: f64,
    grade: Grade,
) -> Result<bool, ApiError> {
    if grade < Grade::Possible
        || tx
            .on_behalf(store::OnBehalf::Linkage)
            .identity_pair(a, b)?
            .is_some()
    {
        return Ok(false);
    }
    let certain = grade == Grade::Certain;
    let id = tx.new_id();
    tx.on_behalf(store::OnBehalf::Linkage).identity_pair_add(
        &id,
        a,
        b,
        probability,
        grade.code(),
        if certain { "linked" } else { "pending" },
    )?;
    if certain {
        tx.on_behalf(store::OnBehalf::Linkage)
            .identity_pair_decide(&id, "linked", "automatic")?;
    }
    Ok(certain)
}

/// Runs linkage for a Patient about to be written (the resource itself is stored as the
/// client sent it; links live in Person resources).
pub(crate) fn on_write(
    tx: &mut CallerTx,
    ctx: &Ctx,
    id: &str,
    patient: &Value,
) -> Result<(), ApiError> {
    let record_of = patient_record(id, patient);
    if record_of.birth_date.is_empty()
        || (record_of.given.is_empty() && record_of.family.is_empty())
    {
        return Ok(());
    }
    let wanted = prepare(&record_of);
    let mut searches: Vec<(&str, String)> = vec![("birthdate", record_of.birth_date.clone())];
    if !record_of.family.is_empty() {
        searches.push(("family", record_of.family.clone()));
    }
    for i in &record_of.identifiers {
        searches.push(("identifier", i.clone()));
    }
    let mut seen: Vec<String> = Vec::new();
    let model = super::matching::current_model(ctx);
    let thresholds = Thresholds::default();
    for (param, value) in searches {
        let Ok(req) = search_request(
            ctx.registry,
            "Patient",
            &[(param, value), ("_count", PER_SEARCH.to_string())],
        ) else {
            continue;
        };
        for s in tx.on_behalf(store::OnBehalf::Linkage).search(&req)?.matches {
            if s.id == id || seen.contains(&s.id) {
                continue;
            }
            seen.push(s.id.clone());
            let other = prepare(&patient_record(&s.id, &body(&s)));
            let (_, p, grade) = score_pair(&model, &thresholds, &wanted, &other);
            if record(tx, id, &s.id, p, grade)? {
                sync_person(tx, ctx, id)?;
            }
        }
    }
    Ok(())
}

/// What a whole-population linkage run did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct LinkReport {
    pub patients: usize,
    pub linked: usize,
    pub for_review: usize,
}

/// Links every Patient against every other (the batch engine, with a model estimated from
/// them), recording and applying the results as [`on_write`] does.
pub(crate) fn link_all(tx: &mut CallerTx, ctx: &Ctx) -> Result<LinkReport, ApiError> {
    let stored = all_of(
        tx,
        ctx.registry,
        "Patient",
        Reader::System(store::OnBehalf::Linkage),
    )?;
    let prepared: Vec<care::identity::Prepared> = stored
        .iter()
        .map(|s| prepare(&patient_record(&s.id, &body(s))))
        .collect();
    let config = LinkConfig {
        report: Grade::Possible,
        ..Default::default()
    };
    let linked = care::identity::link(&prepared, None, &config);
    super::matching::remember_model(ctx, tx.now(), linked.model.clone());
    let mut report = LinkReport {
        patients: stored.len(),
        ..Default::default()
    };
    for l in &linked.links {
        let (a, b) = (&stored[l.left].id, &stored[l.right].id);
        let registered_before = tx
            .on_behalf(store::OnBehalf::Linkage)
            .identity_pair(a, b)?
            .is_some();
        if record(tx, a, b, l.probability, l.grade)? {
            sync_person(tx, ctx, a)?;
            report.linked += 1;
        } else if !registered_before && l.grade >= Grade::Possible {
            report.for_review += 1;
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_patient_becomes_a_record() {
        let p = json!({"resourceType": "Patient",
            "identifier": [{"system": "urn:mrn:cc", "value": "D1"},
                {"system": "http://hl7.org/fhir/sid/us-ssn", "value": "123-45-6789"}],
            "name": [{"use": "nickname", "given": ["Annie"]},
                {"use": "official", "family": "Núñez", "given": ["Ana", "María"]}],
            "telecom": [{"system": "email", "value": "a@example.org"}, {"system": "phone", "value": "860-555-0100"}],
            "gender": "female", "birthDate": "2013-05-02",
            "address": [{"use": "work", "city": "Hartford"},
                {"use": "home", "line": ["12 Ocean Avenue", "Apt 3"], "city": "New London", "state": "CT", "postalCode": "06320"}]});
        let r = patient_record("p1", &p);
        assert_eq!((r.given.as_str(), r.family.as_str()), ("Ana", "Núñez"));
        assert_eq!(r.birth_date, "2013-05-02");
        assert_eq!(
            (r.street_number.as_str(), r.address_1.as_str()),
            ("12", "Ocean Avenue")
        );
        assert_eq!(r.address_2, "Apt 3");
        assert_eq!(
            (r.locality.as_str(), r.postcode.as_str(), r.state.as_str()),
            ("New London", "06320", "CT")
        );
        assert_eq!(r.phone, "860-555-0100");
        assert_eq!(
            r.identifiers,
            vec!["http://hl7.org/fhir/sid/us-ssn|123-45-6789"]
        );
        let empty = patient_record("p2", &json!({"resourceType": "Patient"}));
        assert_eq!(empty.id, "p2");
        assert!(empty.given.is_empty() && empty.identifiers.is_empty());
    }
}
