//! Search: every basic parameter type with its prefixes and modifiers, result parameters,
//! paging through next links, strict and lenient handling.

use serde_json::{Value, json};

use crate::both_engines;
use crate::helpers::TestApp;

/// The ids a search returns (first page), sorted.
async fn ids(app: &TestApp, query: &str) -> Vec<String> {
    let r = app.get(query).await;
    assert_eq!(r.status, 200, "{query}: {}", r.text);
    let mut v: Vec<String> = r.json()["entry"]
        .as_array()
        .map(|e| {
            e.iter()
                .filter(|x| x["search"]["mode"] == "match")
                .map(|x| x["resource"]["id"].as_str().unwrap().to_string())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

async fn put(app: &TestApp, body: Value) {
    let path = format!(
        "{}/{}",
        body["resourceType"].as_str().unwrap(),
        body["id"].as_str().unwrap()
    );
    let r = app.put(&path, &body).await;
    assert!(r.status == 201 || r.status == 200, "{path}: {}", r.text);
}

fn s(v: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = v.iter().map(|x| x.to_string()).collect();
    v.sort();
    v
}

async fn seed(app: &TestApp) {
    put(app, json!({"resourceType": "Patient", "id": "ana", "name": [{"family": "Núñez", "given": ["Ana", "María"]}], "birthDate": "2012-04-05", "gender": "female",
        "identifier": [{"system": "urn:mrn:ccmc", "value": "A1"}], "telecom": [{"system": "email", "value": "ana@example.org"}],
        "address": [{"city": "Hartford", "postalCode": "06106", "state": "CT"}], "active": true})).await;
    put(app, json!({"resourceType": "Patient", "id": "ben", "name": [{"family": "Nunes", "given": ["Ben"]}], "birthDate": "2008", "gender": "male",
        "identifier": [{"system": "urn:mrn:hhc", "value": "B2"}, {"value": "LOOSE"}], "address": [{"city": "New London", "postalCode": "06320"}], "active": false})).await;
    put(app, json!({"resourceType": "Patient", "id": "cai", "name": [{"family": "Smithson", "given": ["Cai"]}], "birthDate": "2001-12-31", "gender": "other",
        "generalPractitioner": [{"reference": "Practitioner/dr1"}], "managingOrganization": {"reference": "Organization/org1"}})).await;
    put(app, json!({"resourceType": "Observation", "id": "w1", "status": "final", "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7", "display": "Body weight"}], "text": "Weight"},
        "subject": {"reference": "Patient/ana"}, "effectiveDateTime": "2020-03-01T10:00:00Z", "valueQuantity": {"value": 31.5, "unit": "kg", "system": "http://unitsofmeasure.org", "code": "kg"}})).await;
    put(app, json!({"resourceType": "Observation", "id": "w2", "status": "amended", "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7"}]},
        "subject": {"reference": "Patient/ben"}, "effectivePeriod": {"start": "2021-01-01", "end": "2021-01-31"}, "valueQuantity": {"value": 62, "unit": "kg", "system": "http://unitsofmeasure.org", "code": "kg"}})).await;
    put(app, json!({"resourceType": "Observation", "id": "h1", "status": "final", "code": {"coding": [{"system": "http://snomed.info/sct", "code": "50373000"}], "text": "Body height"},
        "subject": {"reference": "http://other.example.org/fhir/Patient/zed"}, "effectiveDateTime": "2021-06", "valueQuantity": {"value": 140, "unit": "cm", "system": "http://unitsofmeasure.org", "code": "cm"}})).await;
    put(app, json!({"resourceType": "RiskAssessment", "id": "r1", "status": "final", "subject": {"reference": "Patient/ana"}, "prediction": [{"probabilityDecimal": 0.25}]})).await;
    put(app, json!({"resourceType": "RiskAssessment", "id": "r2", "status": "final", "subject": {"reference": "Patient/ben"}, "prediction": [{"probabilityDecimal": 0.8}]})).await;
    put(app, json!({"resourceType": "Questionnaire", "id": "q1", "status": "active", "url": "http://continuum.example.org/Questionnaire/readiness"})).await;
}

async fn string_params(app: TestApp) {
    seed(&app).await;
    assert_eq!(ids(&app, "Patient?name=nu").await, s(&["ana", "ben"]));
    assert_eq!(
        ids(&app, "Patient?family=NUNEZ").await,
        s(&["ana"]),
        "accent- and case-insensitive"
    );
    assert_eq!(ids(&app, "Patient?given=mar").await, s(&["ana"]));
    assert_eq!(ids(&app, "Patient?family:exact=Nunes").await, s(&["ben"]));
    assert_eq!(ids(&app, "Patient?family:exact=nunes").await, s(&[]));
    assert_eq!(ids(&app, "Patient?family:contains=thso").await, s(&["cai"]));
    assert_eq!(
        ids(&app, "Patient?address-city=new%20lon").await,
        s(&["ben"])
    );
    assert_eq!(
        ids(&app, "Patient?name=ana,cai").await,
        s(&["ana", "cai"]),
        "comma is OR"
    );
    assert_eq!(
        ids(&app, "Patient?name=nu&gender=male").await,
        s(&["ben"]),
        "separate parameters AND"
    );
}

async fn token_params(app: TestApp) {
    seed(&app).await;
    assert_eq!(
        ids(&app, "Patient?identifier=urn:mrn:ccmc|A1").await,
        s(&["ana"])
    );
    assert_eq!(ids(&app, "Patient?identifier=A1").await, s(&["ana"]));
    assert_eq!(ids(&app, "Patient?identifier=urn:mrn:hhc|A1").await, s(&[]));
    assert_eq!(ids(&app, "Patient?identifier=|LOOSE").await, s(&["ben"]));
    assert_eq!(
        ids(&app, "Patient?identifier=urn:mrn:hhc|").await,
        s(&["ben"])
    );
    assert_eq!(
        ids(&app, "Patient?gender:not=male").await,
        s(&["ana", "cai"])
    );
    assert_eq!(ids(&app, "Patient?active=true").await, s(&["ana"]));
    assert_eq!(
        ids(&app, "Patient?email=ana@example.org").await,
        s(&["ana"])
    );
    assert_eq!(
        ids(&app, "Observation?code=http://loinc.org|29463-7").await,
        s(&["w1", "w2"])
    );
    assert_eq!(ids(&app, "Observation?code:text=weight").await, s(&["w1"]));
    assert_eq!(ids(&app, "Observation?code:text=height").await, s(&["h1"]));
    assert_eq!(
        ids(&app, "Observation?status=final,amended").await,
        s(&["h1", "w1", "w2"])
    );
    assert_eq!(ids(&app, "Patient?_id=ana,cai").await, s(&["ana", "cai"]));
}

async fn reference_params(app: TestApp) {
    seed(&app).await;
    assert_eq!(
        ids(&app, "Observation?subject=Patient/ana").await,
        s(&["w1"])
    );
    assert_eq!(ids(&app, "Observation?subject=ana").await, s(&["w1"]));
    assert_eq!(
        ids(&app, "Observation?subject:Patient=ben").await,
        s(&["w2"])
    );
    assert_eq!(ids(&app, "Observation?patient=ben").await, s(&["w2"]));
    let local_absolute = format!("Observation?subject={}/Patient/ana", app.base);
    assert_eq!(
        ids(&app, &local_absolute).await,
        s(&["w1"]),
        "our own absolute URL is local"
    );
    assert_eq!(
        ids(
            &app,
            "Observation?subject=http://other.example.org/fhir/Patient/zed"
        )
        .await,
        s(&["h1"])
    );
    assert_eq!(
        ids(&app, "Patient?general-practitioner=Practitioner/dr1").await,
        s(&["cai"])
    );
    assert_eq!(ids(&app, "Patient?organization=org1").await, s(&["cai"]));
    assert_eq!(
        ids(&app, "RiskAssessment?subject=Patient/ben").await,
        s(&["r2"])
    );
}

async fn date_params(app: TestApp) {
    seed(&app).await;
    assert_eq!(ids(&app, "Patient?birthdate=2012-04-05").await, s(&["ana"]));
    assert_eq!(ids(&app, "Patient?birthdate=2012").await, s(&["ana"]));
    assert_eq!(
        ids(&app, "Patient?birthdate=2008-06").await,
        s(&[]),
        "a year is not inside one month"
    );
    assert_eq!(
        ids(&app, "Patient?birthdate=ge2008-06-01").await,
        s(&["ana", "ben"]),
        "ge overlaps the later part of 2008"
    );
    assert_eq!(
        ids(&app, "Patient?birthdate=gt2008-12-31").await,
        s(&["ana"])
    );
    assert_eq!(
        ids(&app, "Patient?birthdate=lt2008-01-01").await,
        s(&["cai"])
    );
    assert_eq!(
        ids(&app, "Patient?birthdate=le2008-12-31").await,
        s(&["ben", "cai"])
    );
    assert_eq!(
        ids(&app, "Patient?birthdate=ne2012-04-05").await,
        s(&["ben", "cai"])
    );
    assert_eq!(
        ids(&app, "Patient?birthdate=sa2008-12-31").await,
        s(&["ana"])
    );
    assert_eq!(
        ids(&app, "Patient?birthdate=eb2008-01-01").await,
        s(&["cai"])
    );
    assert_eq!(
        ids(&app, "Patient?birthdate=ge2001&birthdate=lt2010").await,
        s(&["ben", "cai"]),
        "a range by two parameters"
    );
    assert_eq!(
        ids(&app, "Observation?date=2021-01-15").await,
        s(&[]),
        "a period is not inside one day"
    );
    assert_eq!(
        ids(&app, "Observation?date=ge2021-01-15").await,
        s(&["h1", "w2"])
    );
    assert_eq!(ids(&app, "Observation?date=2021").await, s(&["h1", "w2"]));
    assert_eq!(
        ids(&app, "Observation?date=lt2020-03-01T11:00:00Z").await,
        s(&["w1"])
    );
    assert_eq!(
        ids(&app, "Observation?date=gt2020-03-01T10:00:00Z").await,
        s(&["h1", "w2"])
    );
    assert_eq!(
        ids(&app, "Patient?_lastUpdated=gt2000-01-01").await,
        s(&["ana", "ben", "cai"])
    );
    assert_eq!(ids(&app, "Patient?_lastUpdated=lt2000-01-01").await, s(&[]));
}

async fn number_quantity_uri_params(app: TestApp) {
    seed(&app).await;
    assert_eq!(
        ids(&app, "RiskAssessment?probability=0.25").await,
        s(&["r1"])
    );
    assert_eq!(
        ids(&app, "RiskAssessment?probability=gt0.5").await,
        s(&["r2"])
    );
    assert_eq!(
        ids(&app, "RiskAssessment?probability=le0.25").await,
        s(&["r1"])
    );
    assert_eq!(
        ids(&app, "RiskAssessment?probability=0.3").await,
        s(&["r1"]),
        "0.3 means [0.25, 0.35)"
    );
    assert_eq!(ids(&app, "RiskAssessment?probability=0.4").await, s(&[]));
    assert_eq!(
        ids(&app, "Observation?value-quantity=31.5").await,
        s(&["w1"])
    );
    assert_eq!(
        ids(
            &app,
            "Observation?value-quantity=gt50|http://unitsofmeasure.org|kg"
        )
        .await,
        s(&["w2"])
    );
    assert_eq!(
        ids(&app, "Observation?value-quantity=gt50||cm").await,
        s(&["h1"])
    );
    assert_eq!(
        ids(&app, "Observation?value-quantity=lt100").await,
        s(&["w1", "w2"])
    );
    assert_eq!(
        ids(
            &app,
            "Questionnaire?url=http://continuum.example.org/Questionnaire/readiness"
        )
        .await,
        s(&["q1"])
    );
    assert_eq!(
        ids(
            &app,
            "Questionnaire?url:below=http://continuum.example.org/"
        )
        .await,
        s(&["q1"])
    );
    assert_eq!(
        ids(
            &app,
            "Questionnaire?url:above=http://continuum.example.org/Questionnaire/readiness/v2"
        )
        .await,
        s(&["q1"])
    );
    assert_eq!(
        ids(&app, "Questionnaire?url=http://continuum.example.org").await,
        s(&[])
    );
}

async fn missing_modifier(app: TestApp) {
    seed(&app).await;
    assert_eq!(
        ids(&app, "Patient?general-practitioner:missing=true").await,
        s(&["ana", "ben"])
    );
    assert_eq!(
        ids(&app, "Patient?general-practitioner:missing=false").await,
        s(&["cai"])
    );
    assert_eq!(
        ids(&app, "Patient?email:missing=true").await,
        s(&["ben", "cai"])
    );
}

async fn paging_total_and_summary(app: TestApp) {
    for i in 0..23 {
        app.create(json!({"resourceType": "Patient", "name": [{"family": format!("Page{i:02}")}]}))
            .await;
    }
    let first = app
        .get("Patient?name=page&_count=10&_total=accurate")
        .await
        .json();
    assert_eq!(first["total"], 23);
    assert_eq!(first["entry"].as_array().unwrap().len(), 10);
    let mut seen = std::collections::HashSet::new();
    let mut next = Some(format!("{}/Patient?name=page&_count=10", app.base));
    let mut pages = 0;
    while let Some(url) = next {
        let page = app.get(&url).await.json();
        pages += 1;
        for e in page["entry"].as_array().unwrap() {
            assert!(
                seen.insert(e["resource"]["id"].as_str().unwrap().to_string()),
                "a page repeated a resource"
            );
        }
        // a resource created between pages is not seen twice and does not shift the pages
        if pages == 1 {
            app.create(json!({"resourceType": "Patient", "name": [{"family": "Page99"}]}))
                .await;
        }
        next = page["link"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["relation"] == "next")
            .map(|l| l["url"].as_str().unwrap().to_string());
    }
    assert_eq!(pages, 3);
    assert_eq!(seen.len(), 24);
    let count = app.get("Patient?name=page&_summary=count").await.json();
    assert_eq!(count["total"], 24);
    assert!(count.get("entry").is_none());
    let none = app
        .get("Patient?name=page&_total=none&_count=5")
        .await
        .json();
    assert!(none.get("total").is_none());
    let zero = app.get("Patient?_count=0").await.json();
    assert_eq!(zero["total"], 24);
    let sorted = app.get("Patient?_sort=-_lastUpdated&_count=1").await.json();
    assert_eq!(
        sorted["entry"][0]["resource"]["name"][0]["family"],
        "Page99"
    );
    let elements = app.get("Patient?name=page00&_elements=id").await.json();
    assert!(elements["entry"][0]["resource"].get("name").is_none());
    // a cursor from another search is refused
    let next = first["link"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["relation"] == "next")
        .unwrap()["url"]
        .as_str()
        .unwrap()
        .to_string();
    let cursor = next.split("_cursor=").nth(1).unwrap();
    let r = app
        .get(&format!("Patient?_sort=_id&_cursor={cursor}"))
        .await;
    assert_eq!(r.status, 400);
}

async fn strict_and_lenient(app: TestApp) {
    seed(&app).await;
    let r = app.get("Patient?nickname=x").await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["issue"][0]["expression"][0], "nickname");
    let r = app
        .send(
            app.client
                .get(app.url("Patient?nickname=x&gender=male"))
                .header("Prefer", "handling=lenient"),
        )
        .await;
    assert_eq!(r.status, 200);
    let b = r.json();
    assert_eq!(b["total"], 1);
    assert!(
        !b["link"][0]["url"].as_str().unwrap().contains("nickname"),
        "the self link shows what was applied"
    );
    assert!(
        b["entry"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["search"]["mode"] == "outcome")
    );
}

async fn post_search(app: TestApp) {
    seed(&app).await;
    let r = app
        .send(
            app.client
                .post(app.url("Patient/_search"))
                .header("Content-Type", "application/x-www-form-urlencoded")
                .body("family=nunez&gender=female"),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["total"], 1);
    assert_eq!(r.json()["entry"][0]["resource"]["id"], "ana");
}

async fn index_follows_updates_and_deletes(app: TestApp) {
    seed(&app).await;
    let mut ana = app.get("Patient/ana").await.json();
    ana["name"][0]["family"] = json!("Ortiz");
    app.put("Patient/ana", &ana).await;
    assert_eq!(ids(&app, "Patient?family=nunez").await, s(&[]));
    assert_eq!(ids(&app, "Patient?family=ortiz").await, s(&["ana"]));
    app.delete("Patient/ana").await;
    assert_eq!(ids(&app, "Patient?family=ortiz").await, s(&[]));
}

both_engines!(
    string_params,
    token_params,
    reference_params,
    date_params,
    number_quantity_uri_params,
    missing_modifier,
    paging_total_and_summary,
    strict_and_lenient,
    post_search,
    index_follows_updates_and_deletes,
);
