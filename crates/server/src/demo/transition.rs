//! The demo's transition to adult care (illustrative, deterministic from the seed): for the
//! young people aged 12–26, the elements recorded the way a programme a few years in would
//! have them — most on track, many behind (overdue), some of the young adults transferred
//! (the package sent, the first adult visit, completion and feedback for the earliest) — as
//! completed element Tasks; and **Sam Whitfield**, who turned 18 last week, with every element
//! before the transfer done and its parts on file (the latest assessment, the plan of care, the
//! medical summary, the emergency plan), so a coordinator can send the transfer package.

use rand::{Rng, RngCore};
use serde_json::{Value, json};

use super::tag;
use care::access::BirthDate;
use care::transition::{Element, birthday_ms};

const DAY: i64 = 86_400_000;

fn task(out: &mut Vec<Value>, id: String, pid: &str, e: Element, on_ms: i64) {
    task_to(out, id, pid, e, on_ms, None)
}

/// An element Task; a transfer package's names its recipient (`output`).
fn task_to(
    out: &mut Vec<Value>,
    id: String,
    pid: &str,
    e: Element,
    on_ms: i64,
    recipient: Option<&str>,
) {
    let mut t = json!({"resourceType": "Task", "id": id, "meta": tag(),
        "status": "completed", "intent": "plan",
        "code": {"coding": [{"system": care::profile::TRANSITION_ELEMENT, "code": e.code(), "display": e.words()}], "text": e.words()},
        "for": {"reference": format!("Patient/{pid}")},
        "authoredOn": fhir::primitive::format_instant(on_ms),
        "executionPeriod": {"end": fhir::primitive::format_instant(on_ms)}});
    if let Some(r) = recipient {
        t["output"] = json!([{"type": {"text": "recipient"}, "valueReference": {"reference": r}},
            {"type": {"text": "sender"}, "valueReference": {"reference": "Organization/cc"}}]);
    }
    out.push(t);
}

/// The history of one young person born `birth`: `behind` leaves some elements undone;
/// `transfer` sends the package (young adults only). Returns the (element, when) recorded.
fn history(
    rng: &mut impl RngCore,
    birth: BirthDate,
    now_ms: i64,
    behind: bool,
    transfer: bool,
) -> Vec<(Element, i64)> {
    let c = care::transition::TransitionConfig::default();
    let at = |years: i32, rng: &mut dyn RngCore| {
        birthday_ms(birth, years) + rng.random_range(5..150) * DAY
    };
    let mut done = Vec::new();
    let by_age = |done: &mut Vec<(Element, i64)>,
                  e: Element,
                  years: i32,
                  rng: &mut dyn RngCore,
                  keep: bool| {
        let t = at(years, rng);
        if keep && t < now_ms {
            done.push((e, t));
        }
    };
    let keep = |rng: &mut dyn RngCore, p: u32| !behind || rng.random_range(0..100) < p;
    let k = keep(rng, 70);
    by_age(&mut done, Element::Policy, c.policy_due, rng, k);
    // readiness from 14, yearly, until the package (a behind one skips some years)
    let package_at = transfer
        .then(|| at(18, rng) + rng.random_range(0..400) * DAY)
        .filter(|t| *t < now_ms);
    let mut y = c.readiness_from;
    while birthday_ms(birth, y) < package_at.unwrap_or(now_ms) && y < c.transfer_by {
        let k = keep(rng, 45);
        by_age(&mut done, Element::Readiness, y, rng, k);
        y += 1;
    }
    let k = keep(rng, 50);
    by_age(&mut done, Element::Education, c.readiness_from, rng, k);
    let k = keep(rng, 40);
    by_age(&mut done, Element::PlanOfCare, c.planning_due, rng, k);
    let k = keep(rng, 40);
    by_age(&mut done, Element::MedicalSummary, c.planning_due, rng, k);
    let k = keep(rng, 30);
    by_age(&mut done, Element::ConsentTalk, c.legal_due, rng, k);
    let k = keep(rng, 30);
    by_age(&mut done, Element::DecisionMaking, c.legal_due, rng, k);
    if let Some(p) = package_at {
        done.push((Element::TransferPackage, p));
        // most seen within weeks, some only after six months
        let visit = p + if rng.random_range(0..6) == 0 {
            rng.random_range(190..300)
        } else {
            rng.random_range(20..150)
        } * DAY;
        if visit < now_ms - 7 * DAY {
            done.push((Element::FirstAdultVisit, visit));
            let completion = visit + rng.random_range(95..170) * DAY;
            if completion < now_ms {
                done.push((Element::Completion, completion));
                if rng.random_range(0..3) > 0 {
                    done.push((
                        Element::Feedback,
                        completion + rng.random_range(0..14) * DAY,
                    ));
                }
            }
        }
    }
    done
}

pub(super) fn add(out: &mut Vec<Value>, rng: &mut impl RngCore, now_ms: i64) {
    let config = care::transition::TransitionConfig::default();
    // the adult services a pediatric member transfers to
    let adult: Vec<String> = out
        .iter()
        .filter(|r| {
            r["resourceType"] == "HealthcareService"
                && r["providedBy"]["reference"] == "Organization/hhc"
        })
        .filter_map(|r| r["id"].as_str().map(|id| format!("HealthcareService/{id}")))
        .take(4)
        .collect();
    let young: Vec<(String, BirthDate, bool)> = out
        .iter()
        .filter(|r| r["resourceType"] == "Patient")
        .filter(|r| {
            let id = r["id"].as_str().unwrap_or("");
            // the console's family and the duplicates keep no history of their own
            !id.starts_with("demo-nora")
                && !id.starts_with("demo-dup")
                && !id.starts_with("demo-twin")
        })
        .filter_map(|r| {
            let birth = BirthDate::parse(r["birthDate"].as_str()?)?;
            let id = r["id"].as_str()?.to_string();
            let pediatric = r["managingOrganization"]["reference"] != "Organization/hhc";
            care::transition::in_registry(birth, now_ms, &config).then_some((id, birth, pediatric))
        })
        .collect();
    for (pid, birth, pediatric) in &young {
        let age = care::access::age_on(*birth, now_ms);
        let roll = rng.random_range(0..100);
        let behind = roll < 40;
        // the young adults managed at the adult member came from the pediatric one
        let transfer = !adult.is_empty() && age >= 19 && roll >= if *pediatric { 70 } else { 45 };
        let to = (!adult.is_empty()).then(|| adult[rng.random_range(0..adult.len())].clone());
        for (k, (e, on)) in history(rng, *birth, now_ms, behind, transfer)
            .into_iter()
            .enumerate()
        {
            let recipient = (e == Element::TransferPackage)
                .then_some(to.as_deref())
                .flatten();
            task_to(out, format!("{pid}-tr-{k}"), pid, e, on, recipient);
        }
    }
    sam(out, now_ms);
}

/// Sam Whitfield, 18 since last week, at Connecticut Children's: everything before the
/// transfer done, its parts on file, his mother's access ended on his birthday.
fn sam(out: &mut Vec<Value>, now_ms: i64) {
    let today = now_ms.div_euclid(DAY);
    let (y, m, d) = care::slots::civil_from_days(today - 7);
    let birth_text = format!("{:04}-{m:02}-{d:02}", y - 18);
    let birth = BirthDate::parse(&birth_text).expect("a birth date");
    let pid = "demo-sam";
    out.push(json!({"resourceType": "Patient", "id": pid, "meta": tag(),
        "identifier": [{"system": "urn:mrn:cc", "value": "D-SAM"}],
        "name": [{"use": "official", "family": "Whitfield", "given": ["Sam"]}], "gender": "male",
        "birthDate": birth_text,
        "telecom": [{"system": "email", "value": "sam.whitfield@example.org"}],
        "address": [{"use": "home", "line": ["9 Elm Street"], "city": "Hartford", "state": "CT", "postalCode": "06106", "country": "US"}],
        "managingOrganization": {"reference": "Organization/cc"}}));
    out.push(json!({"resourceType": "RelatedPerson", "id": "demo-sam-mother", "meta": tag(),
        "active": true, "patient": {"reference": format!("Patient/{pid}")},
        "relationship": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-RoleCode", "code": "MTH"}]}],
        "name": [{"family": "Whitfield", "given": ["Dana"]}]}));
    out.push(json!({"resourceType": "Condition", "id": "demo-sam-asthma", "meta": tag(),
        "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]},
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": "195967001", "display": "Asthma"}], "text": "Asthma"},
        "subject": {"reference": format!("Patient/{pid}")}, "onsetAge": {"value": 6, "unit": "a", "system": "http://unitsofmeasure.org", "code": "a"}}));
    let at = |years: i32, days: i64| birthday_ms(birth, years) + days * DAY;
    let recorded = [
        (Element::Policy, at(12, 30)),
        (Element::Readiness, at(14, 20)),
        (Element::Education, at(14, 20)),
        (Element::Readiness, at(15, 25)),
        (Element::Readiness, at(16, 18)),
        (Element::PlanOfCare, at(16, 40)),
        (Element::MedicalSummary, at(16, 40)),
        (Element::ConsentTalk, at(17, 60)),
        (Element::DecisionMaking, at(17, 60)),
    ];
    for (k, (e, on)) in recorded.iter().enumerate() {
        task(out, format!("{pid}-tr-{k}"), pid, *e, *on);
    }
    // the final assessment, at 17 and a half, in his own words
    let answered = at(17, 180);
    let items: Vec<Value> = care::transition::readiness::link_ids()
        .enumerate()
        .map(|(i, q)| {
            let a = ["with-help", "on-my-own", "on-my-own", "learning"][i % 4];
            json!({"linkId": q, "answer": [{"valueCoding": {"system": care::transition::readiness::ANSWERS, "code": a}}]})
        })
        .collect();
    let answers: Vec<(String, String)> = items
        .iter()
        .map(|i| {
            (
                i["linkId"].as_str().unwrap_or("").to_string(),
                i["answer"][0]["valueCoding"]["code"]
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
            )
        })
        .collect();
    let score = care::transition::readiness::score(&answers, true).expect("the demo's answers");
    let mut parts = vec![json!({"url": "total", "valueInteger": score.total})];
    parts.extend(
        score
            .domains
            .iter()
            .map(|(d, v)| json!({"url": d, "valueInteger": v})),
    );
    out.push(json!({"resourceType": "QuestionnaireResponse", "id": "demo-sam-readiness", "meta": tag(),
        "extension": [{"url": care::profile::READINESS_SCORE, "extension": parts}],
        "status": "completed", "questionnaire": care::transition::readiness::URL,
        "subject": {"reference": format!("Patient/{pid}")}, "author": {"reference": format!("Patient/{pid}")},
        "authored": fhir::primitive::format_instant(answered), "item": items}));
    task(
        out,
        format!("{pid}-tr-final"),
        pid,
        Element::Readiness,
        answered,
    );
    out.push(json!({"resourceType": "CarePlan", "id": "demo-sam-plan", "meta": tag(),
        "status": "active", "intent": "plan",
        "category": [{"coding": [{"system": care::profile::TRANSITION_ELEMENT, "code": "plan-of-care"}], "text": "Transition plan of care"}],
        "title": "Moving to adult care", "subject": {"reference": format!("Patient/{pid}")},
        "description": "Sam orders his own inhaler refills and books his own visits; first visit with adult primary care before 19; keep the asthma action plan with him.",
        "period": {"start": fhir::primitive::format_instant(at(16, 40))}}));
    use base64::Engine as _;
    for (id, code, words, text) in [
        (
            "demo-sam-summary",
            "medical-summary",
            "Medical summary",
            "Asthma since age 6, controlled on a daily inhaled steroid; no admissions in 3 years; allergies: none known.",
        ),
        (
            "demo-sam-emergency",
            "emergency-plan",
            "Emergency care plan",
            "Severe attack: reliever inhaler 4-8 puffs, repeat after 20 minutes; call 911 if no better.",
        ),
    ] {
        out.push(json!({"resourceType": "DocumentReference", "id": id, "meta": tag(), "status": "current",
            "type": {"coding": [{"system": care::profile::TRANSITION_DOCUMENT, "code": code, "display": words}], "text": words},
            "subject": {"reference": format!("Patient/{pid}")}, "date": fhir::primitive::format_instant(at(17, 200)),
            "description": words,
            "content": [{"attachment": {"contentType": "text/plain", "title": words,
                "data": base64::engine::general_purpose::STANDARD.encode(text)}}]}));
    }
}
