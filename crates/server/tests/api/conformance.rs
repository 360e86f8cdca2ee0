//! The search conformance table: one row per query — every parameter type, modifier and prefix,
//! composites, chains, `_has`, includes, sorting and `near` — each with the ids it must return,
//! run on both engines; then paging under concurrent inserts.

use serde_json::{Value, json};

use crate::both_engines;
use crate::helpers::TestApp;

async fn put(app: &TestApp, body: Value) {
    let path = format!(
        "{}/{}",
        body["resourceType"].as_str().unwrap(),
        body["id"].as_str().unwrap()
    );
    let r = app.put(&path, &body).await;
    assert!(r.status == 200 || r.status == 201, "{path}: {}", r.text);
}

const LOINC: &str = "http://loinc.org";
const UCUM: &str = "http://unitsofmeasure.org";

async fn seed(app: &TestApp) {
    for (id, name) in [
        ("cc", "Connecticut Children's"),
        ("hhc", "Hartford HealthCare"),
        ("shore", "Shoreline Pediatrics"),
    ] {
        put(
            app,
            json!({"resourceType": "Organization", "id": id, "name": name, "active": true}),
        )
        .await;
    }
    put(app, json!({"resourceType": "Practitioner", "id": "dr-lee", "name": [{"family": "Lee", "given": ["Grace"]}]})).await;
    put(app, json!({"resourceType": "Practitioner", "id": "dr-roy", "name": [{"family": "Roy", "given": ["Sam"]}]})).await;
    put(app, json!({"resourceType": "Patient", "id": "ana", "name": [{"family": "Núñez", "given": ["Ana"]}], "birthDate": "2012-04-05", "gender": "female",
        "identifier": [{"system": "urn:mrn:cc", "value": "A1"}], "address": [{"city": "Hartford", "postalCode": "06106"}],
        "generalPractitioner": [{"reference": "Practitioner/dr-lee"}], "managingOrganization": {"reference": "Organization/cc"}})).await;
    put(app, json!({"resourceType": "Patient", "id": "ben", "name": [{"family": "Nunes", "given": ["Ben"]}], "birthDate": "2008", "gender": "male",
        "identifier": [{"system": "urn:mrn:hhc", "value": "B2"}], "address": [{"city": "New London", "postalCode": "06320"}],
        "generalPractitioner": [{"reference": "Practitioner/dr-roy"}], "managingOrganization": {"reference": "Organization/hhc"}})).await;
    put(app, json!({"resourceType": "Patient", "id": "cai", "name": [{"family": "Smithson", "given": ["Cai"]}], "birthDate": "2001-12-31", "gender": "other",
        "address": [{"city": "Norwich", "postalCode": "06360"}]})).await;
    put(app, json!({"resourceType": "Observation", "id": "bp1", "status": "final", "subject": {"reference": "Patient/ana"}, "effectiveDateTime": "2021-03-01T09:00:00Z",
        "code": {"coding": [{"system": LOINC, "code": "85354-9", "display": "Blood pressure panel"}]},
        "component": [
            {"code": {"coding": [{"system": LOINC, "code": "8480-6"}]}, "valueQuantity": {"value": 118, "unit": "mmHg", "system": UCUM, "code": "mm[Hg]"}},
            {"code": {"coding": [{"system": LOINC, "code": "8462-4"}]}, "valueQuantity": {"value": 76, "unit": "mmHg", "system": UCUM, "code": "mm[Hg]"}}]})).await;
    put(app, json!({"resourceType": "Observation", "id": "bp2", "status": "final", "subject": {"reference": "Patient/ben"}, "effectiveDateTime": "2021-05-01T09:00:00Z",
        "code": {"coding": [{"system": LOINC, "code": "85354-9"}]},
        "component": [
            {"code": {"coding": [{"system": LOINC, "code": "8480-6"}]}, "valueQuantity": {"value": 142, "unit": "mmHg", "system": UCUM, "code": "mm[Hg]"}},
            {"code": {"coding": [{"system": LOINC, "code": "8462-4"}]}, "valueQuantity": {"value": 91, "unit": "mmHg", "system": UCUM, "code": "mm[Hg]"}}]})).await;
    put(app, json!({"resourceType": "Observation", "id": "wt", "status": "amended", "subject": {"reference": "Patient/ana"}, "effectivePeriod": {"start": "2021-01-01", "end": "2021-01-31"},
        "code": {"coding": [{"system": LOINC, "code": "29463-7"}], "text": "Body weight"}, "valueQuantity": {"value": 31.5, "unit": "kg", "system": UCUM, "code": "kg"}})).await;
    put(app, json!({"resourceType": "Observation", "id": "smoke", "status": "final", "subject": {"reference": "Patient/cai"}, "effectiveDateTime": "2022",
        "code": {"coding": [{"system": LOINC, "code": "72166-2"}]}, "valueCodeableConcept": {"coding": [{"system": "http://snomed.info/sct", "code": "266919005"}], "text": "Never smoker"}})).await;
    put(app, json!({"resourceType": "ServiceRequest", "id": "sr1", "status": "active", "intent": "order", "subject": {"reference": "Patient/ana"},
        "requester": {"reference": "Organization/shore"}, "performer": [{"reference": "Organization/cc"}], "priority": "urgent",
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": "3457005"}], "text": "Referral to pediatric cardiology"}})).await;
    put(app, json!({"resourceType": "ServiceRequest", "id": "sr2", "status": "active", "intent": "order", "subject": {"reference": "Patient/ben"},
        "requester": {"reference": "Organization/shore"}, "performer": [{"reference": "Organization/hhc"}], "priority": "routine"})).await;
    put(app, json!({"resourceType": "Task", "id": "t1", "status": "requested", "intent": "order", "focus": {"reference": "ServiceRequest/sr1"}, "for": {"reference": "Patient/ana"},
        "owner": {"reference": "Organization/cc"}, "requester": {"reference": "Organization/shore"}, "authoredOn": "2021-06-01T10:00:00Z"})).await;
    // a referral is created as requested, then moves
    for status in ["requested", "accepted"] {
        put(app, json!({"resourceType": "Task", "id": "t2", "status": status, "intent": "order", "focus": {"reference": "ServiceRequest/sr2"}, "for": {"reference": "Patient/ben"},
            "owner": {"reference": "Organization/hhc"}, "requester": {"reference": "Organization/shore"}, "authoredOn": "2021-06-02T10:00:00Z"})).await;
    }
    // the server's own Provenance of each referral step is removed: the table's is prov1
    let written = app.get("Provenance?_count=100").await.json();
    for e in written["entry"].as_array().into_iter().flatten() {
        let id = e["resource"]["id"].as_str().unwrap();
        assert_eq!(app.delete(&format!("Provenance/{id}")).await.status, 204);
    }
    put(app, json!({"resourceType": "Provenance", "id": "prov1", "target": [{"reference": "Task/t1"}], "recorded": "2021-06-01T10:00:00Z",
        "agent": [{"who": {"reference": "Organization/shore"}}]})).await;
    put(app, json!({"resourceType": "Location", "id": "loc-hartford", "name": "Hartford campus", "position": {"latitude": 41.7554, "longitude": -72.6795}, "managingOrganization": {"reference": "Organization/cc"}})).await;
    put(app, json!({"resourceType": "Location", "id": "loc-waterford", "name": "Waterford", "position": {"latitude": 41.3412, "longitude": -72.1437}, "managingOrganization": {"reference": "Organization/cc"}})).await;
    put(app, json!({"resourceType": "Location", "id": "loc-danbury", "name": "Danbury", "position": {"latitude": 41.3948, "longitude": -73.4540}, "managingOrganization": {"reference": "Organization/hhc"}})).await;
    put(app, json!({"resourceType": "Appointment", "id": "ap1", "status": "booked", "start": "2021-07-01T14:00:00Z", "end": "2021-07-01T14:30:00Z",
        "participant": [{"actor": {"reference": "Patient/ana"}, "status": "accepted"}, {"actor": {"reference": "Location/loc-hartford"}, "status": "accepted"}]})).await;
    // a five-year stay (a wide date row) and a one-hour visit
    put(app, json!({"resourceType": "Encounter", "id": "enc-long", "status": "finished", "class": {"code": "IMP"},
        "period": {"start": "2015-01-01", "end": "2020-12-31"}})).await;
    put(app, json!({"resourceType": "Encounter", "id": "enc-short", "status": "finished", "class": {"code": "AMB"},
        "period": {"start": "2021-02-01T10:00:00Z", "end": "2021-02-01T11:00:00Z"}})).await;
    put(app, json!({"resourceType": "Questionnaire", "id": "q1", "status": "active", "url": "http://continuum.example.org/Questionnaire/readiness"})).await;
    put(app, json!({"resourceType": "RiskAssessment", "id": "r1", "status": "final", "subject": {"reference": "Patient/ana"}, "prediction": [{"probabilityDecimal": 0.25}]})).await;
    put(app, json!({"resourceType": "RiskAssessment", "id": "r2", "status": "final", "subject": {"reference": "Patient/ben"}, "prediction": [{"probabilityDecimal": 0.8}]})).await;
}

/// Query → the ids it returns, in order where the query sorts (a `~` prefix), as a set
/// otherwise; `| ids` lists what `_include`/`_revinclude` add.
const TABLE: &[(&str, &str)] = &[
    // string
    ("Patient?name=nu", "ana ben"),
    ("Patient?family=NUÑEZ", "ana"),
    ("Patient?family=nunez", "ana"),
    ("Patient?family:exact=Nunes", "ben"),
    ("Patient?family:exact=nunes", ""),
    ("Patient?family:contains=thso", "cai"),
    ("Patient?given=gr", ""),
    ("Patient?address-city=new%20lon", "ben"),
    ("Patient?name=ana,cai", "ana cai"),
    ("Patient?name:missing=false", "ana ben cai"),
    // token
    ("Patient?identifier=urn:mrn:cc|A1", "ana"),
    ("Patient?identifier=A1", "ana"),
    ("Patient?identifier=urn:mrn:hhc|A1", ""),
    ("Patient?identifier=urn:mrn:hhc|", "ben"),
    ("Patient?identifier=|A1", ""),
    ("Patient?gender:not=male", "ana cai"),
    ("Patient?identifier:missing=true", "cai"),
    ("Observation?code=http://loinc.org|29463-7", "wt"),
    ("Observation?code:text=weight", "wt"),
    ("Observation?status=final,amended", "bp1 bp2 smoke wt"),
    (
        "Observation?value-concept=http://snomed.info/sct|266919005",
        "smoke",
    ),
    ("Patient?_id=ana,cai", "ana cai"),
    ("Patient?_id:not=ana", "ben cai"),
    // reference
    ("Observation?subject=Patient/ana", "bp1 wt"),
    ("Observation?subject=ana", "bp1 wt"),
    ("Observation?subject:Patient=ben", "bp2"),
    ("Observation?patient=cai", "smoke"),
    ("Patient?general-practitioner=Practitioner/dr-lee", "ana"),
    ("Patient?general-practitioner:missing=true", "cai"),
    ("Task?owner=Organization/cc", "t1"),
    // date
    ("Patient?birthdate=2012-04-05", "ana"),
    ("Patient?birthdate=2012", "ana"),
    ("Patient?birthdate=2008-06", ""),
    ("Patient?birthdate=ge2008-06-01", "ana ben"),
    ("Patient?birthdate=gt2008-12-31", "ana"),
    ("Patient?birthdate=lt2008-01-01", "cai"),
    ("Patient?birthdate=le2008-12-31", "ben cai"),
    ("Patient?birthdate=ne2012-04-05", "ben cai"),
    ("Patient?birthdate=sa2008-12-31", "ana"),
    ("Patient?birthdate=eb2008-01-01", "cai"),
    ("Patient?birthdate=ge2001&birthdate=lt2010", "ben cai"),
    ("Observation?date=2021-01-15", ""),
    ("Observation?date=ge2021-01-15", "bp1 bp2 smoke wt"),
    ("Observation?date=2021", "bp1 bp2 wt"),
    ("Observation?date=lt2021-03-01T10:00:00Z", "bp1 wt"),
    ("Task?authored-on=2021-06-02", "t2"),
    ("Appointment?date=2021-07-01", "ap1"),
    // several conditions on one single-valued date are tested on the same row
    ("Patient?birthdate=ge2008&birthdate=ne2008-06-15", "ana ben"),
    (
        "Patient?birthdate=gt2000&birthdate=lt2010&birthdate=ne2008",
        "cai",
    ),
    // ... and a multi-valued one keeps "some value matches each"
    ("Observation?date=ge2021-01-15&date=lt2021-02-01", "wt"),
    // periods: a wide one is found by either end
    ("Encounter?date=ge2019-01-01&date=le2019-12-31", "enc-long"),
    ("Encounter?date=gt2020-06-01", "enc-long enc-short"),
    ("Encounter?date=lt2016-01-01", "enc-long"),
    ("Encounter?date=eb2021-01-01", "enc-long"),
    ("Encounter?date=sa2020-01-01", "enc-short"),
    ("Encounter?date=2017", ""),
    ("Encounter?date=2021-02-01", "enc-short"),
    ("Encounter?date=ge2015-01-01&date=le2020-12-31", "enc-long"),
    // number, quantity, uri
    ("RiskAssessment?probability=0.25", "r1"),
    ("RiskAssessment?probability=gt0.5", "r2"),
    ("RiskAssessment?probability=le0.25", "r1"),
    ("Observation?value-quantity=31.5", "wt"),
    (
        "Observation?value-quantity=lt40|http://unitsofmeasure.org|kg",
        "wt",
    ),
    ("Observation?value-quantity=gt40", ""),
    ("Observation?component-value-quantity=gt130", "bp2"),
    (
        "Questionnaire?url=http://continuum.example.org/Questionnaire/readiness",
        "q1",
    ),
    (
        "Questionnaire?url:below=http://continuum.example.org/",
        "q1",
    ),
    (
        "Questionnaire?url:above=http://continuum.example.org/Questionnaire/readiness/v2",
        "q1",
    ),
    // composite: the code and the value must be on the same component
    (
        "Observation?component-code-value-quantity=http://loinc.org|8480-6$gt130",
        "bp2",
    ),
    (
        "Observation?component-code-value-quantity=http://loinc.org|8462-4$gt130",
        "",
    ),
    (
        "Observation?component-code-value-quantity=8462-4$lt80",
        "bp1",
    ),
    (
        "Observation?code-value-quantity=http://loinc.org|29463-7$lt40",
        "wt",
    ),
    (
        "Observation?code-value-concept=http://loinc.org|72166-2$http://snomed.info/sct|266919005",
        "smoke",
    ),
    // chains
    ("Observation?subject:Patient.name=nunez", "bp1 wt"),
    ("Observation?subject.gender=male", "bp2"),
    ("Task?focus:ServiceRequest.priority=urgent", "t1"),
    ("Task?focus:ServiceRequest.patient.name=nunes", "t2"),
    ("Appointment?actor:Location.name=hartford", "ap1"),
    ("Patient?general-practitioner.name=roy", "ben"),
    // reverse chains
    ("Patient?_has:Observation:patient:code=29463-7", "ana"),
    ("Patient?_has:Task:patient:status=accepted", "ben"),
    (
        "Patient?_has:Observation:patient:_has:Provenance:target:agent=Organization/shore",
        "",
    ),
    ("Task?_has:Provenance:target:agent=Organization/shore", "t1"),
    // includes
    (
        "Observation?code=29463-7&_include=Observation:subject",
        "wt | ana",
    ),
    (
        "Observation?code=85354-9&_include=Observation:patient:Patient",
        "bp1 bp2 | ana ben",
    ),
    (
        "Task?_id=t1&_include=Task:focus&_include=Task:owner",
        "t1 | cc sr1",
    ),
    (
        "Task?_id=t1&_include=Task:focus&_include:iterate=ServiceRequest:requester",
        "t1 | shore sr1",
    ),
    ("Task?_id=t1&_revinclude=Provenance:target", "t1 | prov1"),
    ("Task?_id=t1&_revinclude=Provenance:*", "t1 | prov1"),
    ("Organization?_id=shore&_revinclude=Task:*", "shore | t1 t2"),
    (
        "Patient?_id=ana&_revinclude=Observation:subject",
        "ana | bp1 wt",
    ),
    ("Patient?_id=cai&_include=*", "cai |"),
    // sorting
    ("Patient?_sort=birthdate", "~cai ben ana"),
    ("Patient?_sort=-birthdate", "~ana ben cai"),
    ("Patient?_sort=family", "~ben ana cai"),
    ("Patient?_sort=gender,-birthdate", "~ana ben cai"),
    ("Observation?_sort=-date,_id&status=final", "~smoke bp2 bp1"),
    ("RiskAssessment?_sort=-probability", "~r2 r1"),
    // near, nearest first
    ("Location?near=41.76|-72.68|20|mi", "~loc-hartford"),
    (
        "Location?near=41.50|-72.50|40|mi",
        "~loc-hartford loc-waterford",
    ),
    (
        "Location?near=41.50|-72.50|60|mi",
        "~loc-hartford loc-waterford loc-danbury",
    ),
    (
        "Location?near=41.35|-72.15|200|km",
        "~loc-waterford loc-hartford loc-danbury",
    ),
];

fn parse_expected(expected: &str) -> (bool, Vec<String>, Vec<String>) {
    let ordered = expected.starts_with('~');
    let e = expected.trim_start_matches('~');
    let (m, i) = e.split_once('|').unwrap_or((e, ""));
    let ids = |s: &str| s.split_whitespace().map(str::to_string).collect::<Vec<_>>();
    (ordered, ids(m), ids(i))
}

async fn conformance_table(app: TestApp) {
    seed(&app).await;
    assert!(TABLE.len() >= 60);
    let mut failures = Vec::new();
    for (query, expected) in TABLE {
        let (ordered, mut want, mut want_included) = parse_expected(expected);
        let r = app.get(query).await;
        if r.status != 200 {
            failures.push(format!("{query}: status {} {}", r.status, r.text));
            continue;
        }
        let b = r.json();
        let entries = b["entry"].as_array().cloned().unwrap_or_default();
        let pick = |mode: &str| -> Vec<String> {
            entries
                .iter()
                .filter(|e| e["search"]["mode"] == mode)
                .map(|e| e["resource"]["id"].as_str().unwrap().to_string())
                .collect()
        };
        let mut got = pick("match");
        let mut got_included = pick("include");
        if !ordered {
            got.sort();
            want.sort();
        }
        got_included.sort();
        want_included.sort();
        if got != want || got_included != want_included {
            failures.push(format!(
                "{query}: got {got:?} | {got_included:?}, want {want:?} | {want_included:?}"
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} search conformance rows failed:\n{}",
        failures.len(),
        TABLE.len(),
        failures.join("\n")
    );
    println!(
        "search conformance ({:?}): {} rows pass",
        app.engine,
        TABLE.len()
    );
}

async fn paging_under_concurrent_inserts(app: TestApp) {
    for i in 0..60 {
        app.create(json!({"resourceType": "Patient", "name": [{"family": format!("Flow{i:03}")}], "birthDate": format!("20{:02}-01-01", i % 20)})).await;
    }
    for sort in [
        "",
        "&_sort=birthdate",
        "&_sort=-family",
        "&_sort=-_lastUpdated",
    ] {
        let mut seen = std::collections::HashSet::new();
        let mut next = Some(format!("{}/Patient?name=flow&_count=7{sort}", app.base));
        let mut n = 0;
        while let Some(url) = next {
            let page = app.get(&url).await.json();
            for e in page["entry"].as_array().unwrap() {
                assert!(
                    seen.insert(e["resource"]["id"].as_str().unwrap().to_string()),
                    "a page repeated a resource ({sort})"
                );
            }
            // others write between pages
            app.create(
                json!({"resourceType": "Patient", "name": [{"family": format!("Other{n}")}]}),
            )
            .await;
            n += 1;
            next = page["link"]
                .as_array()
                .unwrap()
                .iter()
                .find(|l| l["relation"] == "next")
                .map(|l| l["url"].as_str().unwrap().to_string());
        }
        assert_eq!(
            seen.len(),
            60,
            "{sort}: every original match seen exactly once"
        );
    }
    // a cursor is bound to its sort
    let p = app
        .get("Patient?name=flow&_count=5&_sort=birthdate")
        .await
        .json();
    let next = p["link"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["relation"] == "next")
        .unwrap()["url"]
        .as_str()
        .unwrap()
        .to_string();
    let cursor = next.split("_cursor=").nth(1).unwrap();
    assert_eq!(
        app.get(&format!("Patient?name=flow&_sort=family&_cursor={cursor}"))
            .await
            .status,
        400
    );
}

async fn include_respects_access(app: TestApp) {
    seed(&app).await;
    // a clinician at hhc sees ben's record but not ana's: including through a Task must not leak
    let hhc = app.client_with(&app.token_for("user/*.rs", &["clinician@hhc"], &[]).await);
    let b = app
        .get_as(
            &hhc,
            "Task?_include=Task:patient&_revinclude=Provenance:target&_total=accurate",
        )
        .await
        .json();
    assert_eq!(b["total"], 1);
    let ids: Vec<&str> = b["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["resource"]["id"].as_str().unwrap())
        .collect();
    assert!(
        ids.contains(&"t2")
            && ids.contains(&"ben")
            && !ids.contains(&"ana")
            && !ids.contains(&"t1"),
        "{ids:?}"
    );
    // chains only pass through what the caller may see
    assert_eq!(
        app.get_as(&hhc, "Observation?subject.name=nunez&_total=accurate")
            .await
            .json()["total"],
        0
    );
    assert_eq!(
        app.get_as(
            &hhc,
            "Patient?_has:Observation:patient:code=29463-7&_total=accurate"
        )
        .await
        .json()["total"],
        0
    );
    // sorting does not reveal hidden resources either
    let sorted = app.get_as(&hhc, "Patient?_sort=birthdate").await.json();
    let ids: Vec<&str> = sorted["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["resource"]["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec!["ben"]);
}

async fn search_parameters_refuse_nonsense(app: TestApp) {
    for q in [
        "Patient?_sort=nonsense",
        "Patient?_include=Observation:subject",
        "Patient?_include=Patient:name",
        "Observation?subject:Patient.nonsense=x",
        "Observation?code.name=x",
        "Patient?_has:Observation:nonsense:code=x",
        "Patient?_has:Observation",
        "Location?near=200|0|1|km",
        "Location?near=41|-72|5|parsecs",
        "Observation?component-code-value-quantity=8480-6",
        "Observation?subject:Patient.organization:Organization.partof.partof.partof.name=x",
    ] {
        let r = app.get(q).await;
        assert_eq!(r.status, 400, "{q}: {}", r.text);
        assert_eq!(r.json()["resourceType"], "OperationOutcome");
    }
}

/// Conditions matching more than a few hundred rows are not selective: the page is then found by
/// walking the type in order (a different plan), and must page and count the same way.
async fn paging_when_nothing_is_selective(app: TestApp) {
    // more than a walk's window (2000) of one type; women first, then men; the active ones
    // straddle the boundary, so "female and active" is rare although each alone is common
    let n = 2100;
    let female = |i: usize| i < 1050;
    let active = |i: usize| i >= 1030;
    let year = |i: usize| i % 20;
    let entries: Vec<Value> = (0..n)
        .map(|i| {
            json!({"request": {"method": "POST", "url": "Patient"}, "resource": {
                "resourceType": "Patient", "name": [{"family": format!("Bulk{i:04}")}],
                "gender": if female(i) { "female" } else { "male" }, "active": active(i),
                "birthDate": format!("20{:02}-03-0{}", year(i), 1 + i % 9)}})
        })
        .collect();
    let count = |f: &dyn Fn(usize) -> bool| (0..n).filter(|&i| f(i)).count();
    let r = app
        .post(
            "",
            &json!({"resourceType": "Bundle", "type": "transaction", "entry": entries}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    for (qi, (query, expected, page)) in [
        ("Patient?name=bulk", n, 150),
        ("Patient?name=bulk&gender=female", count(&female), 150),
        (
            "Patient?gender=female&name=bulk&birthdate=ge2005-01-01&birthdate=lt2010-01-01",
            count(&|i| female(i) && (5..10).contains(&year(i))),
            150,
        ),
        // rarer together than alone: the walk's window cannot fill a page of 150
        (
            "Patient?gender=female&active=true",
            count(&|i| female(i) && active(i)),
            150,
        ),
        // ... but fills a page of 7
        (
            "Patient?gender=female&active=true",
            count(&|i| female(i) && active(i)),
            7,
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let total = app.get(&format!("{query}&_summary=count")).await.json()["total"].clone();
        assert_eq!(total, json!(expected), "{query}");
        let mut seen = std::collections::HashSet::new();
        let mut last = String::new();
        let mut next = Some(format!("{}/{query}&_count={page}", app.base));
        let mut n = 0;
        while let Some(url) = next {
            let page = app.get(&url).await.json();
            for e in page["entry"].as_array().unwrap() {
                let family = e["resource"]["name"][0]["family"]
                    .as_str()
                    .unwrap()
                    .to_string();
                assert!(family > last, "{query}: pages come in creation order");
                last = family.clone();
                assert!(seen.insert(family), "{query}: a page repeated a resource");
            }
            app.create(json!({"resourceType": "Patient", "name": [{"family": format!("Bulkier{qi}{n:03}")}], "gender": "other"}))
                .await;
            n += 1;
            next = page["link"]
                .as_array()
                .unwrap()
                .iter()
                .find(|l| l["relation"] == "next")
                .map(|l| l["url"].as_str().unwrap().to_string());
        }
        assert!(
            seen.len() >= expected,
            "{query}: {} of {expected}",
            seen.len()
        );
        assert!(
            seen.iter().filter(|f| !f.starts_with("Bulkier")).count() == expected,
            "{query}: every original match seen exactly once"
        );
    }
}

both_engines!(
    conformance_table,
    paging_under_concurrent_inserts,
    paging_when_nothing_is_selective,
    include_respects_access,
    search_parameters_refuse_nonsense
);
