//! The demo's clinical life (illustrative, deterministic): encounters at both organisations,
//! conditions with the age they began at (pediatric-onset conditions in young adults among
//! them), allergies, care teams, minor-consented sensitive care for some adolescents, a young
//! woman who at 18 lets her mother see her normal records, and a young adult with a guardian —
//! so the access rules, break-the-glass and the transition have something to show.

use rand::{Rng, RngCore};
use serde_json::{Value, json};

use super::tag;
use care::profile as ext;

const SNOMED: &str = "http://snomed.info/sct";
const ICD10: &str = "http://hl7.org/fhir/sid/icd-10-cm";
const ROLE_CODE: &str = "http://terminology.hl7.org/CodeSystem/v3-RoleCode";
const DAY: i64 = 86_400_000;

/// Conditions that begin in childhood: (system, code, display, youngest onset age, oldest).
const CHILDHOOD: &[(&str, &str, &str, u32, u32)] = &[
    (SNOMED, "195967001", "Asthma", 2, 10),
    (
        SNOMED,
        "406506008",
        "Attention deficit hyperactivity disorder",
        5,
        11,
    ),
    (SNOMED, "24079001", "Atopic dermatitis", 0, 4),
    (SNOMED, "65363002", "Otitis media", 0, 5),
];

/// Pediatric-onset conditions the transition follows into adult care.
const PEDIATRIC_ONSET: &[(&str, &str, &str, u32, u32)] = &[
    (SNOMED, "13213009", "Congenital heart disease", 0, 0),
    (SNOMED, "46635009", "Diabetes mellitus type 1", 4, 14),
    (SNOMED, "190905008", "Cystic fibrosis", 0, 1),
    (ICD10, "Z94.0", "Kidney transplant status", 3, 15),
];

/// Allergies: (SNOMED code, display, category, criticality).
const ALLERGIES: &[(&str, &str, &str, &str)] = &[
    ("91935009", "Allergy to peanut", "food", "high"),
    ("91936005", "Allergy to penicillin", "medication", "high"),
    ("300916003", "Latex allergy", "environment", "low"),
    ("419474003", "Allergy to mold", "environment", "low"),
];

/// What minors may consent to alone in Connecticut, as the demo marks it.
const MINOR_CONSENTED: &[(&str, &str)] = &[
    ("PSY", "Outpatient mental health visit"),
    ("SUD", "Substance use counselling"),
    ("STD", "Sexually transmitted infection testing"),
];

/// A patient the generator made, as the clinical data needs it.
pub(super) struct Person<'a> {
    pub id: &'a str,
    pub birth_ms: i64,
    pub org: &'a str,
    pub has_parent: bool,
}

/// Adds the clinical resources for `people` to `out`; `clinicians` are (Practitioner id,
/// Organization id) pairs.
pub(super) fn add(
    out: &mut Vec<Value>,
    rng: &mut impl RngCore,
    people: &[Person],
    clinicians: &[(String, String)],
    now_ms: i64,
) {
    let clinician_of = |org: &str, k: usize| -> Option<&str> {
        let at: Vec<&(String, String)> = clinicians.iter().filter(|(_, o)| o == org).collect();
        (!at.is_empty()).then(|| at[k % at.len()].0.as_str())
    };
    for (n, p) in people.iter().enumerate() {
        let age_days = (now_ms - p.birth_ms) / DAY;
        let age = (age_days / 365) as u32;
        let other = if p.org == "cc" { "hhc" } else { "cc" };
        // visits over the last two years (none before birth): most at the patient's own
        // organisation, some with a specialist at the other
        let visits = [0, 1, 1, 2, 2, 3][rng.random_range(0..6)];
        for k in 0..visits {
            let org = if rng.random_range(0..12) == 0 {
                other
            } else {
                p.org
            };
            let ago = rng.random_range(3..730).min(age_days.max(4) - 1);
            let kind = match (age < 18, org == p.org) {
                (true, true) => "Well-child visit",
                (false, true) => "Office visit",
                _ => "Specialist consultation",
            };
            out.push(encounter(
                &format!("demo-enc-{n}-{k}"),
                p.id,
                org,
                clinician_of(org, n + k),
                now_ms - ago * DAY,
                kind,
            ));
        }
        if age >= 2 && rng.random_range(0..10) == 0 {
            let c = CHILDHOOD[rng.random_range(0..CHILDHOOD.len())];
            let onset = rng.random_range(c.3..=c.4).min(age);
            out.push(condition(&format!("demo-cc-{n}"), p.id, c, onset, None));
        }
        // a few young people live with a condition that began in childhood
        if age >= 8 && rng.random_range(0..25) == 0 {
            let c = PEDIATRIC_ONSET[rng.random_range(0..PEDIATRIC_ONSET.len())];
            let onset = rng.random_range(c.3..=c.4).min(age);
            out.push(condition(&format!("demo-po-{n}"), p.id, c, onset, None));
            let mut members = vec![member(&format!("Patient/{}", p.id))];
            if p.has_parent {
                members.push(member(&format!("RelatedPerson/demo-parent-{n}")));
            }
            if let Some(dr) = clinician_of(p.org, n) {
                members.push(member(&format!("Practitioner/{dr}")));
            }
            out.push(
                json!({"resourceType": "CareTeam", "id": format!("demo-team-{n}"), "meta": tag(),
                "status": "active", "name": format!("{} care team", c.2),
                "subject": {"reference": format!("Patient/{}", p.id)},
                "participant": members,
                "managingOrganization": [{"reference": format!("Organization/{}", p.org)}]}),
            );
        }
        if rng.random_range(0..14) == 0 {
            let (code, display, category, criticality) =
                ALLERGIES[rng.random_range(0..ALLERGIES.len())];
            out.push(json!({"resourceType": "AllergyIntolerance", "id": format!("demo-allergy-{n}"), "meta": tag(),
                "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical", "code": "active"}]},
                "verificationStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification", "code": "confirmed"}]},
                "type": "allergy", "category": [category], "criticality": criticality,
                "code": {"coding": [{"system": SNOMED, "code": code, "display": display}], "text": display},
                "patient": {"reference": format!("Patient/{}", p.id)}}));
        }
        // care a 13–17-year-old consented to alone: the visit and what was recorded in it carry
        // the sensitivity label and R, so the parent's view leaves them out
        if (13..18).contains(&age) && rng.random_range(0..30) == 0 {
            let (code, what) = MINOR_CONSENTED[n % MINOR_CONSENTED.len()];
            sensitive_visit(
                out,
                &format!("demo-sens-{n}"),
                p.id,
                p.org,
                code,
                what,
                now_ms - rng.random_range(5..200) * DAY,
            );
        }
    }
}

fn encounter(
    id: &str,
    patient: &str,
    org: &str,
    clinician: Option<&str>,
    start_ms: i64,
    kind: &str,
) -> Value {
    let start =
        fhir::primitive::format_instant(start_ms - start_ms.rem_euclid(DAY) + 14 * 3_600_000);
    let end = fhir::primitive::format_instant(
        start_ms - start_ms.rem_euclid(DAY) + 14 * 3_600_000 + 1_800_000,
    );
    let mut e = json!({"resourceType": "Encounter", "id": id, "meta": tag(),
        "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB", "display": "ambulatory"},
        "type": [{"text": kind}],
        "subject": {"reference": format!("Patient/{patient}")},
        "period": {"start": start, "end": end},
        "serviceProvider": {"reference": format!("Organization/{org}")}});
    if let Some(dr) = clinician {
        e["participant"] = json!([{"individual": {"reference": format!("Practitioner/{dr}")}}]);
    }
    e
}

fn condition(
    id: &str,
    patient: &str,
    c: (&str, &str, &str, u32, u32),
    onset: u32,
    encounter: Option<&str>,
) -> Value {
    let mut v = json!({"resourceType": "Condition", "id": id, "meta": tag(),
        "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]},
        "verificationStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-ver-status", "code": "confirmed"}]},
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-category", "code": "problem-list-item"}]}],
        "code": {"coding": [{"system": c.0, "code": c.1, "display": c.2}], "text": c.2},
        "subject": {"reference": format!("Patient/{patient}")},
        "onsetAge": {"value": onset, "unit": "a", "system": "http://unitsofmeasure.org", "code": "a"}});
    if let Some(e) = encounter {
        v["encounter"] = json!({"reference": format!("Encounter/{e}")});
    }
    v
}

fn member(reference: &str) -> Value {
    json!({"member": {"reference": reference}})
}

/// A visit a minor consented to alone, flagged, with a note of it recorded in it; both carry
/// the labels the flag calls for (as the server's labelling rule would give them).
pub(super) fn sensitive_visit(
    out: &mut Vec<Value>,
    id: &str,
    patient: &str,
    org: &str,
    code: &str,
    what: &str,
    at_ms: i64,
) {
    let mut e = encounter(id, patient, org, None, at_ms, what);
    e["extension"] = json!([{"url": ext::MINOR_CONSENTED_CARE, "valueCode": code}]);
    let labels = care::labels::minor_consented_labels(&e);
    care::labels::add_labels(&mut e, &labels);
    let mut note = json!({"resourceType": "Observation", "id": format!("{id}-note"), "meta": tag(),
        "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "social-history"}]}],
        "code": {"text": format!("{what}: visit note")},
        "subject": {"reference": format!("Patient/{patient}")},
        "encounter": {"reference": format!("Encounter/{id}")},
        "effectiveDateTime": e["period"]["start"].clone(),
        "valueString": "Seen alone at the patient's request; follow-up arranged (illustrative)."});
    care::labels::add_labels(&mut note, &labels);
    out.push(e);
    out.push(note);
}

/// The people the README's access examples name.
pub(super) fn named_people(out: &mut Vec<Value>, clinicians: &[(String, String)], now_ms: i64) {
    let date = |ms: i64| {
        let (y, m, d) = care::slots::civil_from_days(ms.div_euclid(DAY));
        format!("{y:04}-{m:02}-{d:02}")
    };
    let cc_dr = clinicians
        .iter()
        .find(|(_, o)| o == "cc")
        .map(|(p, _)| p.as_str());
    let hhc_dr = clinicians
        .iter()
        .find(|(_, o)| o == "hhc")
        .map(|(p, _)| p.as_str());
    // Maya Okafor turned 18 forty days ago: at 16 she was seen alone for her mental health; on
    // her 18th birthday she let her mother see her normal records (not that care)
    let maya_birth = now_ms - (18 * 36525 / 100 + 40) * DAY;
    let maya_birth = maya_birth - maya_birth.rem_euclid(DAY);
    let eighteenth = {
        let (y, m, d) = care::slots::civil_from_days(maya_birth.div_euclid(DAY));
        // born on 29 February: the 18th birthday is kept on the 28th
        care::access::age::day_ms(
            y + 18,
            m as u8,
            if (m, d) == (2, 29) { 28 } else { d as u8 },
        )
    };
    out.push(json!({"resourceType": "Patient", "id": "demo-maya", "meta": tag(),
        "identifier": [{"system": "urn:mrn:cc", "value": "D-MAYA"}],
        "name": [{"family": "Okafor", "given": ["Maya"]}], "gender": "female",
        "birthDate": date(maya_birth),
        "address": [{"use": "home", "line": ["7 Elm Street"], "city": "Hartford", "state": "CT", "postalCode": "06106", "country": "US"}],
        "managingOrganization": {"reference": "Organization/cc"}}));
    out.push(
        json!({"resourceType": "RelatedPerson", "id": "demo-maya-mother", "meta": tag(),
        "active": true, "patient": {"reference": "Patient/demo-maya"},
        "relationship": [{"coding": [{"system": ROLE_CODE, "code": "MTH"}]}],
        "name": [{"family": "Okafor", "given": ["Grace"]}],
        "telecom": [{"system": "email", "value": "grace.okafor@example.org"}]}),
    );
    out.push(condition(
        "demo-maya-t1d",
        "demo-maya",
        PEDIATRIC_ONSET[1],
        9,
        None,
    ));
    out.push(encounter(
        "demo-maya-visit",
        "demo-maya",
        "cc",
        cc_dr,
        now_ms - 20 * DAY,
        "Endocrinology follow-up",
    ));
    sensitive_visit(
        out,
        "demo-maya-teen",
        "demo-maya",
        "cc",
        "PSY",
        "Outpatient mental health visit",
        maya_birth + (16 * 365 + 100) * DAY,
    );
    out.push(json!({"resourceType": "Consent", "id": "demo-maya-consent", "meta": tag(),
        "status": "active",
        "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}]},
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0", "display": "Patient Consent"}]}],
        "patient": {"reference": "Patient/demo-maya"},
        "dateTime": fhir::primitive::format_instant(eighteenth + 15 * 3_600_000),
        "policyRule": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTIN"}]},
        "provision": {"type": "permit",
            "period": {"start": date(eighteenth)},
            "actor": [{"role": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "IRCP"}]},
                       "reference": {"reference": "RelatedPerson/demo-maya-mother"}}],
            "securityLabel": [{"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "N"}]}}));
    // Leo Marsh, 22, with Down syndrome: his father is his legal guardian, so he keeps the
    // father's view of his record as an adult; he is seen at both organisations
    let leo_birth = now_ms - (22 * 36525 / 100 + 75) * DAY;
    out.push(json!({"resourceType": "Patient", "id": "demo-leo", "meta": tag(),
        "identifier": [{"system": "urn:mrn:hhc", "value": "H-LEO"}],
        "name": [{"family": "Marsh", "given": ["Leo"]}], "gender": "male",
        "birthDate": date(leo_birth),
        "address": [{"use": "home", "line": ["31 Maple Avenue"], "city": "Waterford", "state": "CT", "postalCode": "06385", "country": "US"}],
        "managingOrganization": {"reference": "Organization/hhc"}}));
    out.push(json!({"resourceType": "RelatedPerson", "id": "demo-leo-guardian", "meta": tag(),
        "active": true, "patient": {"reference": "Patient/demo-leo"},
        "relationship": [{"coding": [{"system": ROLE_CODE, "code": "GUARD", "display": "guardian"}]},
                         {"coding": [{"system": ROLE_CODE, "code": "FTH"}]}],
        "name": [{"family": "Marsh", "given": ["Daniel"]}],
        "telecom": [{"system": "email", "value": "daniel.marsh@example.org"}]}));
    out.push(condition(
        "demo-leo-ds",
        "demo-leo",
        (SNOMED, "41040004", "Down syndrome", 0, 0),
        0,
        None,
    ));
    out.push(condition(
        "demo-leo-chd",
        "demo-leo",
        PEDIATRIC_ONSET[0],
        0,
        None,
    ));
    out.push(encounter(
        "demo-leo-cc",
        "demo-leo",
        "cc",
        cc_dr,
        now_ms - 400 * DAY,
        "Cardiology follow-up (pediatric)",
    ));
    out.push(encounter(
        "demo-leo-hhc",
        "demo-leo",
        "hhc",
        hhc_dr,
        now_ms - 30 * DAY,
        "Adult congenital heart disease clinic",
    ));
    let mut members = vec![
        member("Patient/demo-leo"),
        member("RelatedPerson/demo-leo-guardian"),
    ];
    members.extend(
        cc_dr
            .into_iter()
            .chain(hhc_dr)
            .map(|d| member(&format!("Practitioner/{d}"))),
    );
    out.push(json!({"resourceType": "CareTeam", "id": "demo-leo-team", "meta": tag(),
        "status": "active", "name": "Congenital heart disease: pediatric to adult",
        "subject": {"reference": "Patient/demo-leo"}, "participant": members,
        "managingOrganization": [{"reference": "Organization/hhc"}, {"reference": "Organization/cc"}]}));
    out.push(json!({"resourceType": "AllergyIntolerance", "id": "demo-leo-allergy", "meta": tag(),
        "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical", "code": "active"}]},
        "type": "allergy", "category": ["medication"], "criticality": "high",
        "code": {"coding": [{"system": SNOMED, "code": ALLERGIES[1].0, "display": ALLERGIES[1].1}], "text": ALLERGIES[1].1},
        "patient": {"reference": "Patient/demo-leo"}}));
}
