//! The transition registry (issue 20, first slice) on both engines: who is in it (12–26, as of
//! a day), where each element stands from the birth date and the elements recorded as Tasks,
//! the filters, the caller's view, bad input.

use serde_json::{Value, json};

use crate::both_engines;
use crate::helpers::{Engine, TestApp};

const SYSTEM: &str = "http://continuum-alliance.org/fhir/CodeSystem/transition-element";

fn item<'a>(registry: &'a Value, patient: &str) -> Option<&'a Value> {
    registry["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["patient"] == format!("Patient/{patient}"))
}

fn state_of(item: &Value, element: &str) -> String {
    item["elements"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["element"] == element)
        .unwrap()["state"]
        .as_str()
        .unwrap()
        .to_string()
}

async fn the_registry_tracks_young_people(app: TestApp) {
    app.upsert(
        json!({"resourceType": "Organization", "id": "cc", "name": "Connecticut Children's"}),
    )
    .await;
    app.upsert(json!({"resourceType": "Organization", "id": "hhc", "name": "Hartford HealthCare"}))
        .await;
    // as of 1 June 2026
    for (id, birth) in [
        ("t11", "2014-06-02"), // 11 until tomorrow: not yet in the registry
        ("t12", "2014-06-01"), // 12 today: the policy is due
        ("t15", "2011-01-10"), // 15: the readiness assessment is overdue again, education due
        ("t19", "2007-03-01"), // 19: the transfer package is due, the legal talks overdue
        ("t27", "1999-06-01"), // 27 today: out of the registry
    ] {
        app.upsert(
            json!({"resourceType": "Patient", "id": id, "birthDate": birth,
            "managingOrganization": {"reference": "Organization/cc"}}),
        )
        .await;
    }
    let record = |patient: &str, element: &str, on: &str| {
        json!({"resourceType": "Task", "status": "completed", "intent": "plan",
            "code": {"coding": [{"system": SYSTEM, "code": element}]},
            "for": {"reference": format!("Patient/{patient}")},
            "executionPeriod": {"end": on}})
    };
    for (p, e, on) in [
        ("t15", "policy", "2023-02-01T10:00:00Z"),
        ("t15", "readiness", "2025-01-15T10:00:00Z"),
        ("t19", "readiness", "2025-09-01T10:00:00Z"),
    ] {
        let r = app.post("Task", &record(p, e, on)).await;
        assert_eq!(r.status, 201, "{}", r.text);
    }
    let r = app
        .get_raw("/api/transition/registry?as_of=2026-06-01")
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let reg = r.json();
    let ids: Vec<&str> = reg["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["patient"].as_str().unwrap())
        .collect();
    assert_eq!(reg["total"], 3, "{ids:?}");
    assert!(item(&reg, "t11").is_none() && item(&reg, "t27").is_none());
    let t12 = item(&reg, "t12").unwrap();
    assert_eq!(state_of(t12, "policy"), "due");
    assert_eq!(state_of(t12, "readiness"), "not-yet");
    assert_eq!(t12["next"]["element"], "policy");
    let t15 = item(&reg, "t15").unwrap();
    assert_eq!(state_of(t15, "policy"), "done");
    // a year and 90 days after the last assessment: overdue again
    assert_eq!(state_of(t15, "readiness"), "overdue");
    assert_eq!(state_of(t15, "education"), "due", "late only at 16");
    let t19 = item(&reg, "t19").unwrap();
    assert_eq!(state_of(t19, "transfer-package"), "due");
    assert_eq!(state_of(t19, "consent-talk"), "overdue");
    assert_eq!(state_of(t19, "readiness"), "done");
    assert_eq!(
        t19["transferNeeds"],
        json!(["plan-of-care", "medical-summary"])
    );
    // the most overdue first: those with something overdue before those with only something due
    assert_eq!(reg["items"][2]["patient"], "Patient/t12", "{ids:?}");
    // filters
    let overdue = app
        .get_raw("/api/transition/registry?as_of=2026-06-01&state=overdue")
        .await
        .json();
    assert_eq!(overdue["total"], 2);
    let pkg = app
        .get_raw("/api/transition/registry?as_of=2026-06-01&element=transfer-package")
        .await
        .json();
    assert_eq!(pkg["total"], 1);
    assert_eq!(pkg["items"][0]["patient"], "Patient/t19");
    // recording the policy for the 12-year-old takes her off the due list
    let r = app
        .post("Task", &record("t12", "policy", "2026-06-01T09:00:00Z"))
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let due = app
        .get_raw("/api/transition/registry?as_of=2026-06-01&state=due")
        .await
        .json();
    assert!(item(&due, "t12").is_none(), "{due}");
    // another organisation's coordinator sees none of these young people
    let hhc = app.client_with(&app.token_for("user/*.rs", &["coordinator@hhc"], &[]).await);
    let r = app
        .send(hhc.get(app.url("/api/transition/registry?as_of=2026-06-01")))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["total"], 0);
    // bad input, in words
    for (q, words) in [
        ("state=late", "not all, due or overdue"),
        ("element=graduation", "not a transition element"),
        ("as_of=June", "not a date"),
        ("_count=0", "from 1 to 1000"),
        ("colour=blue", "not a parameter here"),
    ] {
        let r = app.get_raw(&format!("/api/transition/registry?{q}")).await;
        assert_eq!(r.status, 400, "{q}: {}", r.text);
        assert!(r.text.contains(words), "{q}: {}", r.text);
    }
}

both_engines!(the_registry_tracks_young_people);

const DAY: i64 = 86_400_000;

/// Noon UTC of a day.
fn noon(d: &str) -> i64 {
    server::app::transition::day_noon_ms(d).unwrap()
}

async fn open_tasks(app: &TestApp, patient: &str) -> Vec<Value> {
    let b = app
        .get(&format!(
            "Task?patient=Patient/{patient}&code={SYSTEM}|&status=requested&_count=100"
        ))
        .await
        .json();
    b["entry"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|e| e["resource"].clone())
        .collect()
}

fn element(task: &Value) -> &str {
    task["code"]["coding"][0]["code"].as_str().unwrap()
}

fn marked(tasks: &[Value]) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = tasks
        .iter()
        .map(|t| {
            (
                element(t).to_string(),
                t["businessStatus"]["coding"][0]["code"]
                    .as_str()
                    .unwrap()
                    .to_string(),
            )
        })
        .collect();
    v.sort();
    v
}

fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
    v.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

async fn the_scheduler_keeps_element_tasks_and_runs_twice_to_no_effect(engine: Engine) {
    let clock = std::sync::Arc::new(care::FixedClock::at(noon("2026-06-01")));
    let app = TestApp::spawn_with_clock(engine, Default::default(), clock.clone()).await;
    app.upsert(
        json!({"resourceType": "Organization", "id": "cc", "name": "Connecticut Children's",
        "telecom": [{"system": "email", "value": "transition@cc.example.org"}]}),
    )
    .await;
    for (id, birth) in [
        ("t11", "2014-06-02"),
        ("t12", "2014-06-01"),
        ("t15", "2011-01-10"),
        ("t27", "1999-06-01"),
        ("t26", "2000-01-01"), // 27 on the first of January: leaves the registry then
    ] {
        app.upsert(
            json!({"resourceType": "Patient", "id": id, "birthDate": birth,
            "name": [{"family": "Quill", "given": ["Rowan"]}],
            "managingOrganization": {"reference": "Organization/cc"}}),
        )
        .await;
    }
    // more young people than one unit of work takes (500), each with the policy due
    let many: Vec<Value> = (0..520)
        .map(|i| json!({"request": {"method": "PUT", "url": format!("Patient/m{i}")},
            "resource": {"resourceType": "Patient", "id": format!("m{i}"), "birthDate": "2013-09-01"}}))
        .collect();
    let r = app
        .post(
            "",
            &json!({"resourceType": "Bundle", "type": "batch", "entry": many}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let record = |patient: &str, element: &str, on: &str| {
        json!({"resourceType": "Task", "status": "completed", "intent": "plan",
            "code": {"coding": [{"system": SYSTEM, "code": element}]},
            "for": {"reference": format!("Patient/{patient}")},
            "executionPeriod": {"end": on}})
    };
    let r = app
        .post("Task", &record("t15", "policy", "2023-02-01T10:00:00Z"))
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    // the first run: one open Task per element due or overdue, owned by the organisation
    let ran = app.jobs.run_now("transition:schedule").await.unwrap();
    assert!(
        ran.as_deref().unwrap_or("").contains("523 young people"),
        "{ran:?}"
    );
    let t26 = open_tasks(&app, "t26").await.len();
    assert_eq!(t26, 8, "nothing recorded at 26: eight elements overdue");
    assert!(
        ran.as_deref()
            .unwrap_or("")
            .contains(&format!("{} element tasks created", 523 + t26)),
        "{ran:?}"
    );
    assert_eq!(open_tasks(&app, "m519").await.len(), 1);
    let t12 = open_tasks(&app, "t12").await;
    assert_eq!(marked(&t12), pairs(&[("policy", "due")]));
    assert_eq!(t12[0]["owner"]["reference"], "Organization/cc");
    assert_eq!(
        t12[0]["restriction"]["period"]["start"],
        "2026-06-01T00:00:00.000Z"
    );
    assert_eq!(
        t12[0]["restriction"]["period"]["end"],
        "2028-06-01T00:00:00.000Z"
    );
    let t15 = open_tasks(&app, "t15").await;
    assert_eq!(
        marked(&t15),
        pairs(&[("education", "due"), ("readiness", "overdue")])
    );
    assert!(open_tasks(&app, "t11").await.is_empty());
    assert!(open_tasks(&app, "t27").await.is_empty());
    // the coordinator is told once, in counts, with no name or record in the words
    let told: Vec<store::Message> = app
        .store
        .read(|tx| tx.outbox_list(None, None, 1000))
        .await
        .unwrap()
        .into_iter()
        .filter(|m| m.kind == "transition-due")
        .collect();
    assert_eq!(told.len(), 1);
    assert_eq!(told[0].recipient, "Organization/cc");
    assert!(
        told[0]
            .payload
            .contains("2 element(s) newly due and 9 newly overdue"),
        "{}",
        told[0].payload
    );
    assert!(told[0].payload.contains("transition@cc.example.org"));
    assert!(!told[0].payload.contains("Quill") && !told[0].payload.contains("t15"));
    // a second run writes nothing at all
    let before = app.row_counts().await;
    let again = app.jobs.run_now("transition:schedule").await.unwrap();
    assert_eq!(again, None);
    assert_eq!(app.row_counts().await, before);
    // the policy recorded by completing its Task (dated by the server): nothing left for t12
    let mut policy = t12[0].clone();
    policy["status"] = json!("completed");
    let r = app
        .put(&format!("Task/{}", policy["id"].as_str().unwrap()), &policy)
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        r.json()["executionPeriod"]["end"],
        "2026-06-01T12:00:00.000Z"
    );
    let reg = app
        .get_raw("/api/transition/registry?_count=1000")
        .await
        .json();
    assert_eq!(state_of(item(&reg, "t12").unwrap(), "policy"), "done");
    // the assessment recorded on a Task of its own: the open one is closed as recorded
    let r = app
        .post("Task", &record("t15", "readiness", "2026-06-01T09:00:00Z"))
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let ran = app.jobs.run_now("transition:schedule").await.unwrap();
    assert!(ran.as_deref().unwrap_or("").contains("1 closed"), "{ran:?}");
    let readiness_task = t15.iter().find(|t| element(t) == "readiness").unwrap();
    let closed = app
        .get(&format!("Task/{}", readiness_task["id"].as_str().unwrap()))
        .await
        .json();
    assert_eq!(closed["status"], "cancelled");
    assert_eq!(closed["statusReason"]["text"], "recorded on another task");
    assert_eq!(
        marked(&open_tasks(&app, "t15").await),
        pairs(&[("education", "due")])
    );
    // at 16: the same education Task is marked overdue, the plan and the summary fall due
    clock.advance(223 * DAY); // 2027-01-10
    app.jobs.run_now("transition:schedule").await.unwrap();
    let t15_later = open_tasks(&app, "t15").await;
    assert_eq!(
        marked(&t15_later),
        pairs(&[
            ("education", "overdue"),
            ("medical-summary", "due"),
            ("plan-of-care", "due"),
        ])
    );
    let education =
        |ts: &[Value]| ts.iter().find(|t| element(t) == "education").unwrap()["id"].clone();
    assert_eq!(
        education(&t15_later),
        education(&t15),
        "marked anew, not created again"
    );
    // 27 since 1 January: the registry no longer follows him, his open Tasks are closed
    assert!(open_tasks(&app, "t26").await.is_empty());
    assert_eq!(app.jobs.run_now("transition:schedule").await.unwrap(), None);
    // an element Task names a known element, for a Patient
    for (task, words) in [
        (
            record("t15", "graduation", "2027-01-10T10:00:00Z"),
            "not a transition element",
        ),
        (
            json!({"resourceType": "Task", "status": "completed", "intent": "plan",
                "code": {"coding": [{"system": SYSTEM, "code": "policy"}]},
                "for": {"reference": "Organization/cc"}}),
            "Task.for names a Patient",
        ),
    ] {
        let r = app.post("Task", &task).await;
        assert_eq!(r.status, 422, "{}", r.text);
        assert!(r.text.contains(words), "{}", r.text);
    }
}

mod scheduler {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite() {
        super::the_scheduler_keeps_element_tasks_and_runs_twice_to_no_effect(super::Engine::Sqlite)
            .await
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres() {
        super::the_scheduler_keeps_element_tasks_and_runs_twice_to_no_effect(
            super::Engine::Postgres,
        )
        .await
    }
}

fn readiness_response(patient: &str, status: &str, answer: &str) -> Value {
    let items: Vec<Value> = care::transition::readiness::link_ids()
        .map(|q| {
            let a = if q.starts_with("meds-") { "not-yet" } else { answer };
            json!({"linkId": q, "answer": [{"valueCoding": {"system": care::transition::readiness::ANSWERS, "code": a}}]})
        })
        .collect();
    json!({"resourceType": "QuestionnaireResponse", "status": status,
        "questionnaire": care::transition::readiness::URL,
        "subject": {"reference": format!("Patient/{patient}")}, "item": items})
}

/// The readiness assessment: the Questionnaire every server carries, a 16-year-old answering it
/// herself (scored by the server, the readiness element recorded on her open Task), her mother
/// refused, a 14-year-old's mother allowed, answers off the scale refused in words.
async fn young_people_answer_the_readiness_assessment(app: TestApp) {
    let q = app.get("Questionnaire/transition-readiness").await;
    assert_eq!(q.status, 200, "{}", q.text);
    let q = q.json();
    assert_eq!(q["url"], care::transition::readiness::URL);
    let questions: usize = q["item"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["item"].as_array().unwrap().len())
        .sum();
    assert_eq!(questions, 12);
    app.upsert(
        json!({"resourceType": "Organization", "id": "cc", "name": "Connecticut Children's"}),
    )
    .await;
    let born = |years: i32| {
        let t = time::OffsetDateTime::now_utc().date();
        let d = t.replace_year(t.year() - years).unwrap_or(t);
        format!("{:04}-{:02}-{:02}", d.year(), d.month() as u8, d.day())
    };
    for (id, years) in [("ava", 16), ("eli", 14)] {
        app.upsert(
            json!({"resourceType": "Patient", "id": id, "birthDate": born(years),
            "managingOrganization": {"reference": "Organization/cc"}}),
        )
        .await;
        app.upsert(json!({"resourceType": "RelatedPerson", "id": format!("{id}-mother"),
            "patient": {"reference": format!("Patient/{id}")},
            "relationship": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-RoleCode", "code": "MTH"}]}]}))
            .await;
    }
    // the scheduler opens Ava's readiness Task (16: the first assessment overdue)
    app.jobs.run_now("transition:schedule").await.unwrap();
    let open = open_tasks(&app, "ava").await;
    let readiness = open.iter().find(|t| element(t) == "readiness").unwrap();
    let ava = app.client_with(
        &app.token_for("patient/*.cruds", &["patient"], &["Patient/ava"])
            .await,
    );
    let ava_mother = app.client_with(
        &app.token_for("user/*.cruds", &["proxy"], &["RelatedPerson/ava-mother"])
            .await,
    );
    let eli_mother = app.client_with(
        &app.token_for("user/*.cruds", &["proxy"], &["RelatedPerson/eli-mother"])
            .await,
    );
    let post = |c: &reqwest::Client, body: &Value| {
        c.post(app.url("QuestionnaireResponse"))
            .header("Content-Type", "application/fhir+json")
            .body(body.to_string())
    };
    // her mother cannot fill it in for a 16-year-old
    let r = app
        .send(post(
            &ava_mother,
            &readiness_response("ava", "completed", "with-help"),
        ))
        .await;
    assert_eq!(r.status, 403, "{}", r.text);
    assert!(r.text.contains("their own to answer from 16"), "{}", r.text);
    // answers off the scale, or missing, are refused in words
    let mut bad = readiness_response("ava", "completed", "with-help");
    bad["item"][0]["answer"][0]["valueCoding"]["code"] = json!("sometimes");
    bad["item"].as_array_mut().unwrap().pop();
    let r = app.send(post(&ava, &bad)).await;
    assert_eq!(r.status, 422, "{}", r.text);
    assert!(
        r.text
            .contains("'sometimes' is not an answer to 'condition-explain'"),
        "{}",
        r.text
    );
    assert!(
        r.text.contains("'priv-share' is not answered"),
        "{}",
        r.text
    );
    // Ava answers herself: scored by the server, she is its author
    let mut mine = readiness_response("ava", "completed", "with-help");
    mine["author"] = json!({"reference": "RelatedPerson/ava-mother"});
    let r = app.send(post(&ava, &mine)).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let stored = r.json();
    assert_eq!(stored["author"]["reference"], "Patient/ava");
    let score = stored["extension"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["url"] == care::profile::READINESS_SCORE)
        .unwrap();
    // medicines not yet (0), the rest with help: (2·10) / 36
    assert_eq!(
        score["extension"][0],
        json!({"url": "total", "valueInteger": 56})
    );
    // her open readiness Task is completed with it
    let task = app
        .get(&format!("Task/{}", readiness["id"].as_str().unwrap()))
        .await
        .json();
    assert_eq!(task["status"], "completed");
    assert_eq!(
        task["focus"]["reference"],
        format!("QuestionnaireResponse/{}", stored["id"].as_str().unwrap())
    );
    assert_eq!(task["output"][0]["valueInteger"], 56);
    let reg = app.get_raw("/api/transition/registry").await.json();
    assert_eq!(state_of(item(&reg, "ava").unwrap(), "readiness"), "done");
    // amending it records nothing twice
    let mut amended = stored.clone();
    amended["status"] = json!("amended");
    let r = app
        .send(
            ava.put(app.url(&format!(
                "QuestionnaireResponse/{}",
                stored["id"].as_str().unwrap()
            )))
            .header("Content-Type", "application/fhir+json")
            .body(amended.to_string()),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let recorded = app
        .get(&format!(
            "Task?patient=Patient/ava&code={SYSTEM}|readiness&status=completed"
        ))
        .await
        .json();
    assert_eq!(recorded["entry"].as_array().unwrap().len(), 1);
    // a 14-year-old's mother may answer with him; no open Task: one is recorded
    let r = app
        .send(post(
            &eli_mother,
            &readiness_response("eli", "completed", "learning"),
        ))
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.json()["author"]["reference"], "RelatedPerson/eli-mother");
    let reg = app.get_raw("/api/transition/registry").await.json();
    assert_eq!(state_of(item(&reg, "eli").unwrap(), "readiness"), "done");
    // a family answers the readiness assessment only, dated by the server
    let mut other = readiness_response("eli", "completed", "learning");
    other["questionnaire"] = json!("http://example.org/Questionnaire/phq-9");
    let r = app.send(post(&eli_mother, &other)).await;
    assert_eq!(r.status, 403, "{}", r.text);
    assert!(r.text.contains("not other questionnaires"), "{}", r.text);
    let mut early = readiness_response("eli", "completed", "learning");
    early["authored"] = json!("2099-01-01T00:00:00Z");
    let r = app.send(post(&eli_mother, &early)).await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert!(!r.json()["authored"].as_str().unwrap().starts_with("2099"));
    // nor changes what the care team wrote
    let mut by_team = readiness_response("eli", "completed", "with-help");
    by_team["author"] = json!({"reference": "Organization/cc"});
    let r = app.post("QuestionnaireResponse", &by_team).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let mut changed = r.json();
    changed["status"] = json!("amended");
    let r = app
        .send(
            eli_mother
                .put(app.url(&format!(
                    "QuestionnaireResponse/{}",
                    changed["id"].as_str().unwrap()
                )))
                .header("Content-Type", "application/fhir+json")
                .body(changed.to_string()),
        )
        .await;
    assert_eq!(r.status, 403, "{}", r.text);
    assert!(r.text.contains("not the family's to change"), "{}", r.text);
    // in progress: checked, not scored, nothing recorded
    let mut partial = readiness_response("eli", "in-progress", "learning");
    partial["item"].as_array_mut().unwrap().truncate(3);
    let r = app.send(post(&eli_mother, &partial)).await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert!(r.json().get("extension").is_none());
}

both_engines!(young_people_answer_the_readiness_assessment);

fn issues_at(r: &crate::helpers::Resp) -> Vec<String> {
    r.json()["issue"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["expression"][0].as_str().unwrap_or("").to_string())
        .collect()
}

/// From a 14-year-old's first assessment to a completed transfer: refused before 18, refused
/// naming each missing part, the parts written (recording their elements), the package and its
/// referral sent, refused a second time, the first adult visit fulfilled (the transfer done,
/// the adult side responsible), completion and feedback due 3 months later.
async fn a_transfer_from_the_first_assessment_to_the_first_adult_visit(engine: Engine) {
    let clock = std::sync::Arc::new(care::FixedClock::at(noon("2026-06-01")));
    let app = TestApp::spawn_with_clock(engine, Default::default(), clock.clone()).await;
    for r in [
        json!({"resourceType": "Organization", "id": "cc", "name": "Connecticut Children's"}),
        json!({"resourceType": "Organization", "id": "hhc", "name": "Hartford HealthCare"}),
        json!({"resourceType": "HealthcareService", "id": "hhc-adult", "name": "Adult Primary Care",
            "providedBy": {"reference": "Organization/hhc"}}),
        json!({"resourceType": "Practitioner", "id": "pr-cc", "name": [{"family": "Okafor", "given": ["Ada"]}]}),
        json!({"resourceType": "Patient", "id": "ivy", "birthDate": "2012-06-01",
            "name": [{"family": "Marsh", "given": ["Ivy"]}],
            "managingOrganization": {"reference": "Organization/cc"}}),
    ] {
        app.upsert(r).await;
    }
    let ivy = app.client_with(
        &app.token_for("patient/*.cruds", &["patient"], &["Patient/ivy"])
            .await,
    );
    let clinician = app.client_with(
        &app.token_for("user/*.cruds", &["clinician@cc"], &["Practitioner/pr-cc"])
            .await,
    );
    let send = |c: &reqwest::Client, method: &str, path: &str, body: &Value| {
        let url = app.url(path);
        let b = match method {
            "PUT" => c.put(url),
            _ => c.post(url),
        };
        b.header("Content-Type", "application/fhir+json")
            .body(body.to_string())
    };
    let transfer = json!({"resourceType": "Parameters", "parameter": [
        {"name": "recipient", "valueReference": {"reference": "HealthcareService/hhc-adult"}}]});
    let row = |reg: &Value| item(reg, "ivy").cloned().unwrap();
    // 14: her first assessment, answered herself
    let r = app
        .send(send(
            &ivy,
            "POST",
            "QuestionnaireResponse",
            &readiness_response("ivy", "completed", "learning"),
        ))
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let reg = app.get_raw("/api/transition/registry").await.json();
    assert_eq!(state_of(&row(&reg), "readiness"), "done");
    assert!(row(&reg)["at18"].is_null(), "shown from 17");
    // a transfer before 18 is refused
    let r = app
        .send(send(
            &clinician,
            "POST",
            "Patient/ivy/$transfer-package",
            &transfer,
        ))
        .await;
    assert_eq!(r.status, 422, "{}", r.text);
    assert!(
        r.text
            .contains("is 14: the transfer to adult care is from the 18th birthday (2030-06-01)"),
        "{}",
        r.text
    );
    // 18 and a month: refused, each missing part named
    clock.advance(1491 * DAY); // 2030-07-01
    let r = app
        .send(send(
            &clinician,
            "POST",
            "Patient/ivy/$transfer-package",
            &transfer,
        ))
        .await;
    assert_eq!(r.status, 422, "{}", r.text);
    assert_eq!(
        issues_at(&r),
        vec![
            "readiness",
            "plan-of-care",
            "medical-summary",
            "emergency-plan"
        ],
        "{}",
        r.text
    );
    assert!(
        r.text
            .contains("the latest, of 2026-06-01, is more than a year old"),
        "{}",
        r.text
    );
    assert!(r.text.contains("no active CarePlan"), "{}", r.text);
    // the parts: her final assessment, the plan of care, the summary and the emergency plan
    let r = app
        .send(send(
            &ivy,
            "POST",
            "QuestionnaireResponse",
            &readiness_response("ivy", "completed", "on-my-own"),
        ))
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let text = |s: &str| {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(s)
    };
    for (path, body) in [
        (
            "CarePlan",
            json!({"resourceType": "CarePlan", "status": "active", "intent": "plan",
            "category": [{"coding": [{"system": SYSTEM, "code": "plan-of-care"}]}],
            "subject": {"reference": "Patient/ivy"}, "description": "Own her asthma care; move to adult primary care by 19"}),
        ),
        (
            "DocumentReference",
            json!({"resourceType": "DocumentReference", "status": "current",
            "type": {"coding": [{"system": care::profile::TRANSITION_DOCUMENT, "code": "medical-summary"}]},
            "subject": {"reference": "Patient/ivy"},
            "content": [{"attachment": {"contentType": "text/plain", "data": text("Asthma since 6; controller inhaler")}}]}),
        ),
        (
            "DocumentReference",
            json!({"resourceType": "DocumentReference", "status": "current",
            "type": {"coding": [{"system": care::profile::TRANSITION_DOCUMENT, "code": "emergency-plan"}]},
            "subject": {"reference": "Patient/ivy"},
            "content": [{"attachment": {"contentType": "text/plain", "data": text("Severe attack: reliever, call 911")}}]}),
        ),
    ] {
        let r = app.send(send(&clinician, "POST", path, &body)).await;
        assert_eq!(r.status, 201, "{path}: {}", r.text);
    }
    let reg = app.get_raw("/api/transition/registry").await.json();
    for e in ["readiness", "plan-of-care", "medical-summary"] {
        assert_eq!(state_of(&row(&reg), e), "done", "{e}");
    }
    assert_eq!(row(&reg)["transferNeeds"], json!([]));
    assert!(
        row(&reg)["at18"]["words"]
            .as_str()
            .unwrap()
            .contains("no one has been granted access")
    );
    // the package and its referral
    let r = app
        .send(send(
            &clinician,
            "POST",
            "Patient/ivy/$transfer-package",
            &transfer,
        ))
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let answer = r.json();
    let package = &answer["entry"][0]["resource"];
    assert_eq!(package["type"], "document");
    let composition = &package["entry"][0]["resource"];
    assert_eq!(composition["resourceType"], "Composition");
    let titles: Vec<&str> = composition["section"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["title"].as_str().unwrap())
        .collect();
    assert_eq!(
        titles,
        vec![
            "Transfer letter",
            "Readiness and self-care assessment",
            "Plan of care",
            "Medical summary",
            "Emergency care plan",
            "Consent at 18"
        ]
    );
    let kinds: Vec<&str> = answer["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["resource"]["resourceType"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, vec!["Bundle", "ServiceRequest", "Task"]);
    let sr = answer["entry"][1]["resource"].clone();
    let task = answer["entry"][2]["resource"].clone();
    assert_eq!(task["owner"]["reference"], "HealthcareService/hhc-adult");
    assert_eq!(task["requester"]["reference"], "Practitioner/pr-cc");
    assert_eq!(task["status"], "requested");
    let letter = package["entry"][2]["resource"].clone();
    assert_eq!(letter["type"]["coding"][0]["code"], "transfer-letter");
    // the package is kept for her, read under the same rules as her record
    let kept = app
        .get(&format!(
            "DocumentReference?patient=Patient/ivy&type={}|transfer-package",
            care::profile::TRANSITION_DOCUMENT
        ))
        .await
        .json();
    assert_eq!(kept["entry"].as_array().unwrap().len(), 1);
    let reg = app.get_raw("/api/transition/registry").await.json();
    assert_eq!(state_of(&row(&reg), "transfer-package"), "done");
    assert_eq!(state_of(&row(&reg), "first-adult-visit"), "due");
    assert_eq!(row(&reg)["transfer"]["responsible"], "pediatric");
    // the transfer and the first adult visit are recorded by what they are, not by a bare Task
    let bare = json!({"resourceType": "Task", "status": "completed", "intent": "plan",
        "code": {"coding": [{"system": SYSTEM, "code": "first-adult-visit"}]},
        "for": {"reference": "Patient/ivy"}});
    let r = app.send(send(&clinician, "POST", "Task", &bare)).await;
    assert_eq!(r.status, 422, "{}", r.text);
    assert!(r.text.contains("recorded by what it is"), "{}", r.text);
    // once sent, not again while its referral is open
    let r = app
        .send(send(
            &clinician,
            "POST",
            "Patient/ivy/$transfer-package",
            &transfer,
        ))
        .await;
    assert_eq!(r.status, 409, "{}", r.text);
    assert!(r.text.contains("already sent on 2030-07-01"), "{}", r.text);
    // the adult visit, booked on the referral and attended
    let mut visit = json!({"resourceType": "Appointment", "status": "booked",
        "basedOn": [{"reference": format!("ServiceRequest/{}", sr["id"].as_str().unwrap())}],
        "start": "2030-07-10T14:00:00Z", "end": "2030-07-10T14:30:00Z",
        "participant": [{"actor": {"reference": "Patient/ivy"}, "status": "accepted"},
                        {"actor": {"reference": "HealthcareService/hhc-adult"}, "status": "accepted"}]});
    let r = app.post("Appointment", &visit).await;
    assert_eq!(r.status, 201, "{}", r.text);
    visit = r.json();
    clock.advance(10 * DAY); // 2030-07-11
    for status in ["arrived", "fulfilled"] {
        visit["status"] = json!(status);
        let r = app
            .put(
                &format!("Appointment/{}", visit["id"].as_str().unwrap()),
                &visit,
            )
            .await;
        assert_eq!(r.status, 200, "{status}: {}", r.text);
        visit = r.json();
    }
    let reg = app.get_raw("/api/transition/registry").await.json();
    assert_eq!(state_of(&row(&reg), "first-adult-visit"), "done");
    assert_eq!(row(&reg)["transfer"]["responsible"], "adult");
    assert_eq!(row(&reg)["transfer"]["firstAdultVisit"], "2030-07-10");
    assert_eq!(state_of(&row(&reg), "completion"), "not-yet");
    // three months on: completion and feedback due
    clock.advance(92 * DAY);
    let reg = app.get_raw("/api/transition/registry").await.json();
    assert_eq!(state_of(&row(&reg), "completion"), "due");
    assert_eq!(state_of(&row(&reg), "feedback"), "due");
    // bad requests, in words
    for (params, status, words) in [
        (
            json!({"resourceType": "Parameters"}),
            422,
            "needs its recipient",
        ),
        (
            json!({"resourceType": "Parameters", "parameter": [{"name": "recipient", "valueReference": {"reference": "Patient/ivy"}}]}),
            400,
            "Organization, HealthcareService or PractitionerRole",
        ),
        (
            json!({"resourceType": "Parameters", "parameter": [{"name": "colour", "valueString": "blue"}]}),
            400,
            "has no parameter 'colour'",
        ),
    ] {
        let r = app
            .send(send(
                &clinician,
                "POST",
                "Patient/ivy/$transfer-package",
                &params,
            ))
            .await;
        assert_eq!(r.status, status, "{}", r.text);
        assert!(r.text.contains(words), "{}", r.text);
    }
    let r = app
        .send(send(
            &clinician,
            "POST",
            "Patient/nobody/$transfer-package",
            &transfer,
        ))
        .await;
    assert_eq!(r.status, 404, "{}", r.text);
}

mod transfer {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite() {
        super::a_transfer_from_the_first_assessment_to_the_first_adult_visit(super::Engine::Sqlite)
            .await
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres() {
        super::a_transfer_from_the_first_assessment_to_the_first_adult_visit(
            super::Engine::Postgres,
        )
        .await
    }
}

/// The measures against answers computed by hand: shares done by organisation and band,
/// overdue counts, transfers completed within six months, the median age at transfer; CSV;
/// another organisation's coordinator counts only its own; bad input in words.
async fn the_measures_match_a_hand_computed_registry(app: TestApp) {
    for org in ["cc", "hhc"] {
        app.upsert(json!({"resourceType": "Organization", "id": org, "name": org}))
            .await;
    }
    for (id, birth, org) in [
        ("m12", "2014-06-01", "cc"),
        ("m13", "2013-03-01", "cc"),
        ("m15", "2011-01-10", "cc"),
        ("m19", "2007-03-01", "hhc"),
        ("m20", "2006-01-01", "hhc"),
    ] {
        app.upsert(
            json!({"resourceType": "Patient", "id": id, "birthDate": birth,
            "managingOrganization": {"reference": format!("Organization/{org}")}}),
        )
        .await;
    }
    for (p, e, on) in [
        ("m13", "policy", "2025-06-01T10:00:00Z"),
        ("m19", "transfer-package", "2025-09-01T00:00:00Z"),
        ("m19", "first-adult-visit", "2025-11-01T10:00:00Z"),
        ("m20", "transfer-package", "2025-10-01T00:00:00Z"),
    ] {
        let r = app
            .post(
                "Task",
                &json!({"resourceType": "Task", "status": "completed", "intent": "plan",
                    "code": {"coding": [{"system": SYSTEM, "code": e}]},
                    "for": {"reference": format!("Patient/{p}")}, "executionPeriod": {"end": on}}),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.text);
    }
    let r = app
        .get_raw("/api/metrics/transition?as_of=2026-06-01")
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let m = r.json();
    let group = |org: &str, band: &str| {
        m["groups"]
            .as_array()
            .unwrap()
            .iter()
            .find(|g| g["organization"] == org && g["ageBand"] == band)
            .unwrap_or_else(|| panic!("no group {org} {band}: {m}"))
            .clone()
    };
    let element = |g: &Value, e: &str| {
        g["elements"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["element"] == e)
            .unwrap()
            .clone()
    };
    let cc_young = group("Organization/cc", "12-13");
    assert_eq!(cc_young["youngPeople"], 2);
    assert_eq!(
        element(&cc_young, "policy"),
        json!({"element": "policy", "applies": 2, "done": 1, "overdue": 0, "shareDone": 0.5})
    );
    let cc_teen = group("Organization/cc", "14-15");
    assert_eq!(cc_teen["withOverdue"], 1);
    assert_eq!(element(&cc_teen, "policy")["overdue"], 1);
    assert_eq!(element(&cc_teen, "education")["applies"], 1);
    let hhc = group("Organization/hhc", "18-21");
    assert_eq!(element(&hhc, "transfer-package")["shareDone"], 1.0);
    assert_eq!(group("all", "all")["youngPeople"], 5);
    // transfers: one seen within two months, one sent eight months ago and not seen; the ages
    // at transfer 18.5 and 19.75
    let t = m["transfers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["organization"] == "Organization/hhc")
        .unwrap()
        .clone();
    assert_eq!(
        t,
        json!({"organization": "Organization/hhc", "recipient": "unknown", "sent": 2, "completed": 1,
            "judged": 2, "completedWithin6Months": 1, "within6MonthsRate": 0.5, "medianAgeAtTransfer": 19.1})
    );
    // CSV: a line per group and element, then the transfers
    let r = app
        .get_raw("/api/metrics/transition?as_of=2026-06-01&format=csv")
        .await;
    assert_eq!(r.status, 200);
    assert!(r.header("content-type").unwrap().starts_with("text/csv"));
    assert!(r.text.starts_with(
        "organization,age_band,element,young_people,applies,done,overdue,share_done\n"
    ));
    assert!(
        r.text
            .contains("\nOrganization/cc,12-13,policy,2,2,1,0,0.5000\n"),
        "{}",
        r.text
    );
    assert!(
        r.text
            .contains("\nOrganization/hhc,unknown,2,1,2,1,0.5000,19.1\n"),
        "{}",
        r.text
    );
    // one organisation's
    let only = app
        .get_raw("/api/metrics/transition?as_of=2026-06-01&organization=cc")
        .await
        .json();
    assert_eq!(
        only["groups"]
            .as_array()
            .unwrap()
            .iter()
            .find(|g| g["organization"] == "all" && g["ageBand"] == "all")
            .unwrap()["youngPeople"],
        3
    );
    for (q, words) in [
        ("as_of=soon", "not a date"),
        ("format=xml", "not json or csv"),
        ("by=month", "not a parameter here"),
    ] {
        let r = app.get_raw(&format!("/api/metrics/transition?{q}")).await;
        assert_eq!(r.status, 400, "{q}: {}", r.text);
        assert!(r.text.contains(words), "{q}: {}", r.text);
    }
}

both_engines!(the_measures_match_a_hand_computed_registry);
