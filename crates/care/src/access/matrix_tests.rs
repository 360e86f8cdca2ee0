//! The policy matrix: role × the patient's age (11y364d, 12y0d, 17y364d, 18y0d) × Consent ×
//! label × action → decision. One row per line, read by one `check` helper.

use super::age::{BirthDate, day_ms};
use super::policy::*;
use super::scopes::{Action, Scopes};

/// The patient, born 15 June 2010.
const BIRTH: &str = "2010-06-15";

fn now_for(age: &str) -> i64 {
    match age {
        "11y364d" => day_ms(2022, 6, 14),
        "12y0d" => day_ms(2022, 6, 15),
        "17y364d" => day_ms(2028, 6, 14),
        "18y0d" => day_ms(2028, 6, 15),
        other => panic!("unknown age band {other}"),
    }
}

fn grant(role: Role, org: Option<&str>) -> Grant {
    Grant {
        role,
        organization: org.map(str::to_string),
    }
}

/// The caller named in a row, with the facts the store would load for it.
fn subject(who: &str, now: i64) -> (Subject, Context) {
    let birth = BirthDate::parse(BIRTH);
    let mut ctx = Context {
        now_ms: now,
        ..Default::default()
    };
    let user = |grants: Vec<Grant>, fhir_user: Option<(&str, &str)>| Subject {
        id: who.to_string(),
        grants,
        fhir_users: fhir_user
            .map(|(t, i)| (t.to_string(), i.to_string()))
            .into_iter()
            .collect(),
        scopes: Scopes::all_user(),
    };
    let s = match who {
        "parent" => {
            ctx.proxy_for.push(ProxyLink {
                patient_id: "p".into(),
                birth_date: birth,
                guardianship: false,
            });
            user(
                vec![grant(Role::Proxy, None)],
                Some(("RelatedPerson", "mom")),
            )
        }
        "guardian" => {
            ctx.proxy_for.push(ProxyLink {
                patient_id: "p".into(),
                birth_date: birth,
                guardianship: true,
            });
            user(
                vec![grant(Role::Proxy, None)],
                Some(("RelatedPerson", "guardian")),
            )
        }
        "other-parent" => {
            ctx.proxy_for.push(ProxyLink {
                patient_id: "q".into(),
                birth_date: birth,
                guardianship: false,
            });
            user(
                vec![grant(Role::Proxy, None)],
                Some(("RelatedPerson", "stranger")),
            )
        }
        "self" => {
            ctx.own_patient = Some(("p".into(), birth));
            user(vec![grant(Role::Patient, None)], Some(("Patient", "p")))
        }
        "other-patient" => {
            ctx.own_patient = Some(("q".into(), birth));
            user(vec![grant(Role::Patient, None)], Some(("Patient", "q")))
        }
        "clinician@cc" => user(
            vec![grant(Role::Clinician, Some("cc"))],
            Some(("Practitioner", "d1")),
        ),
        "clinician@hhc" => user(
            vec![grant(Role::Clinician, Some("hhc"))],
            Some(("Practitioner", "d2")),
        ),
        "clinician@hhc+btg" => {
            ctx.break_glass.push(BreakGlass {
                patient_id: "p".into(),
                expires_ms: now + 3_600_000,
            });
            user(
                vec![grant(Role::Clinician, Some("hhc"))],
                Some(("Practitioner", "d2")),
            )
        }
        "clinician@hhc+expired-btg" => {
            ctx.break_glass.push(BreakGlass {
                patient_id: "p".into(),
                expires_ms: now - 1,
            });
            user(
                vec![grant(Role::Clinician, Some("hhc"))],
                Some(("Practitioner", "d2")),
            )
        }
        "coordinator@cc" => user(vec![grant(Role::Coordinator, Some("cc"))], None),
        "referrer@cc" => user(
            vec![grant(Role::ReferringClinician, Some("cc"))],
            Some(("Practitioner", "d3")),
        ),
        "admin" => user(vec![grant(Role::AllianceAdmin, None)], None),
        "auditor" => user(vec![grant(Role::Auditor, None)], None),
        "backend" => Subject {
            id: who.into(),
            grants: vec![],
            fhir_users: vec![],
            scopes: Scopes::parse("system/*.cruds").unwrap(),
        },
        "backend-patients-only" => Subject {
            id: who.into(),
            grants: vec![],
            fhir_users: vec![],
            scopes: Scopes::parse("system/Patient.rs").unwrap(),
        },
        "clinician@cc-readonly-token" => Subject {
            scopes: Scopes::parse("user/*.rs").unwrap(),
            ..user(vec![grant(Role::Clinician, Some("cc"))], None)
        },
        other => panic!("unknown caller {other}"),
    };
    (s, ctx)
}

fn consent(kind: &str, actor_patient: &str) -> Option<ConsentRule> {
    let rule = |permit: bool, labels: Vec<String>| ConsentRule {
        patient_id: actor_patient.into(),
        permit,
        labels,
        start_ms: None,
        end_ms: None,
    };
    match kind {
        "-" => None,
        "permit" => Some(rule(true, vec![])),
        "deny" => Some(rule(false, vec![])),
        "deny-PSY" => Some(rule(false, vec!["PSY".into()])),
        "expired-permit" => Some(ConsentRule {
            end_ms: Some(0),
            ..rule(true, vec![])
        }),
        other => panic!("unknown consent {other}"),
    }
}

fn action(a: &str) -> Action {
    match a {
        "read" => Action::Read,
        "search" => Action::Search,
        "create" => Action::Create,
        "update" => Action::Update,
        "delete" => Action::Delete,
        other => panic!("unknown action {other}"),
    }
}

/// Every row: caller, age of the patient, consent, resource type, label, action, expected.
/// The resource belongs to patient `p`, who has a care relationship with organisation `cc`.
const MATRIX: &str = "
# proxy (a parent): full before 12, nothing sensitive 12-17, nothing from 18
parent            11y364d  -               Condition  -    read    permit
parent            11y364d  -               Condition  PSY  read    permit
parent            11y364d  -               Condition  SUD  search  permit
parent            11y364d  -               Condition  R    read    permit
parent            12y0d    -               Condition  -    read    permit
parent            12y0d    -               Condition  PSY  read    deny
parent            12y0d    -               Condition  SEX  search  deny
parent            12y0d    -               Condition  HIV  read    deny
parent            12y0d    -               Condition  STD  read    deny
parent            12y0d    -               Condition  ETH  read    deny
parent            12y0d    -               Condition  SDV  read    deny
parent            12y0d    -               Condition  BH   read    deny
parent            12y0d    -               Condition  SUD  read    deny
parent            12y0d    -               Condition  R    read    deny
parent            12y0d    -               Condition  V    read    deny
parent            12y0d    -               Condition  N    read    permit
parent            17y364d  -               Condition  -    read    permit
parent            17y364d  -               Condition  PSY  read    deny
parent            17y364d  -               Condition  N    search  permit
parent            18y0d    -               Condition  -    read    deny
parent            18y0d    -               Condition  -    search  deny
parent            18y0d    -               Patient    -    read    deny
parent            18y0d    permit          Condition  -    read    permit
parent            18y0d    permit          Condition  PSY  read    permit
parent            18y0d    expired-permit  Condition  -    read    deny
parent            17y364d  permit          Condition  PSY  read    permit
parent            12y0d    deny            Condition  -    read    deny
parent            11y364d  deny            Condition  -    read    deny
parent            11y364d  deny-PSY        Condition  PSY  read    deny
parent            11y364d  deny-PSY        Condition  SUD  read    permit
parent            11y364d  -               Condition  -    create  deny
parent            11y364d  -               Condition  -    update  deny
parent            11y364d  -               Condition  -    delete  deny
parent            11y364d  -               Organization -  read    permit
parent            11y364d  -               AuditEvent -    read    deny
other-parent      11y364d  -               Condition  -    read    deny
guardian          18y0d    -               Condition  -    read    permit
guardian          18y0d    -               Condition  PSY  read    permit
guardian          17y364d  -               Condition  PSY  read    deny
# the patient: own record from 12, sensitive included; read only
self              11y364d  -               Condition  -    read    deny
self              12y0d    -               Condition  -    read    permit
self              12y0d    -               Condition  PSY  read    permit
self              17y364d  -               Condition  SUD  search  permit
self              18y0d    -               Condition  R    read    permit
self              12y0d    -               AuditEvent -    read    permit
self              11y364d  -               AuditEvent -    read    deny
self              12y0d    -               Condition  -    create  deny
self              18y0d    -               Condition  -    update  deny
other-patient     12y0d    -               Condition  -    read    deny
other-patient     12y0d    -               AuditEvent -    read    deny
# clinicians: care relationship with their organisation, or break the glass
clinician@cc      12y0d    -               Condition  -    read    permit
clinician@cc      12y0d    -               Condition  PSY  read    permit
clinician@cc      18y0d    -               Condition  V    search  permit
clinician@cc      12y0d    -               Condition  -    create  permit
clinician@cc      12y0d    -               Condition  -    update  permit
clinician@cc      12y0d    -               Condition  -    delete  permit
clinician@cc      12y0d    deny            Condition  -    read    deny
clinician@cc      12y0d    deny-PSY        Condition  PSY  read    deny
clinician@cc      12y0d    deny-PSY        Condition  -    read    permit
clinician@cc      12y0d    -               Organization -  read    permit
clinician@cc      12y0d    -               Organization -  update  deny
clinician@cc      12y0d    -               AuditEvent -    read    deny
clinician@cc      12y0d    -               AuditEvent -    create  deny
clinician@hhc     12y0d    -               Condition  -    read    deny
clinician@hhc     12y0d    -               Condition  -    search  deny
clinician@hhc     12y0d    -               Condition  -    update  deny
clinician@hhc     12y0d    permit          Condition  -    read    permit
clinician@hhc+btg 12y0d    -               Condition  -    read    permit
clinician@hhc+btg 12y0d    -               Condition  PSY  read    permit
clinician@hhc+btg 12y0d    -               Condition  -    update  permit
clinician@hhc+expired-btg 12y0d -          Condition  -    read    deny
clinician@cc-readonly-token 12y0d -        Condition  -    read    permit
clinician@cc-readonly-token 12y0d -        Condition  -    create  deny
referrer@cc       12y0d    -               Condition  -    read    permit
referrer@cc       12y0d    -               ServiceRequest - create permit
referrer@cc       12y0d    -               Location   -    create  deny
# coordinators: like clinicians, and they keep the directory
coordinator@cc    12y0d    -               Condition  -    read    permit
coordinator@cc    12y0d    -               Condition  SUD  read    permit
coordinator@cc    12y0d    -               Organization -  create  permit
coordinator@cc    12y0d    -               Location   -    update  permit
coordinator@cc    12y0d    -               AuditEvent -    read    deny
# administrators, auditors, backend services
admin             12y0d    -               Condition  PSY  read    permit
admin             18y0d    -               Condition  -    delete  permit
admin             12y0d    -               AuditEvent -    read    permit
admin             12y0d    -               AuditEvent -    update  deny
auditor           12y0d    -               AuditEvent -    read    permit
auditor           12y0d    -               AuditEvent -    search  permit
auditor           12y0d    -               Condition  -    read    deny
auditor           12y0d    -               AuditEvent -    delete  deny
backend           12y0d    -               Condition  PSY  read    permit
backend           12y0d    -               Patient    -    create  permit
backend-patients-only 12y0d -              Patient    -    read    permit
backend-patients-only 12y0d -              Patient    -    update  deny
backend-patients-only 12y0d -              Condition  -    read    deny
";

#[test]
fn policy_matrix() {
    let config = PolicyConfig::default();
    let mut rows = 0;
    let mut failures = Vec::new();
    for line in MATRIX
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let cols: Vec<&str> = line.split_whitespace().collect();
        let [who, age, consent_kind, rt, label, act, expected] = cols[..] else {
            panic!("a matrix row needs 7 columns: {line}");
        };
        let now = now_for(age);
        let (subject, mut ctx) = subject(who, now);
        if let Some(c) = consent(consent_kind, "p") {
            ctx.consents.push(c);
        }
        let facts = ResourceFacts {
            resource_type: rt.to_string(),
            patients: if rt == "Organization" || rt == "Location" {
                vec![]
            } else {
                vec!["p".into()]
            },
            labels: if label == "-" {
                vec![]
            } else {
                vec![label.to_string()]
            },
            care_organizations: vec!["cc".into()],
        };
        let got = decide(&subject, action(act), &facts, &ctx, &config);
        let ok = match expected {
            "permit" => got.is_permit(),
            "deny" => !got.is_permit(),
            other => panic!("expected permit or deny, not {other}"),
        };
        if !ok {
            failures.push(format!("{line}  → got {got:?}"));
        }
        rows += 1;
    }
    assert!(rows >= 80, "the matrix has {rows} rows");
    assert!(
        failures.is_empty(),
        "{} of {rows} rows failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn views_name_what_sql_must_filter() {
    let config = PolicyConfig::default();
    let (s, ctx) = subject("parent", now_for("12y0d"));
    let v = view(&s, &ctx, &config);
    assert!(!v.everything && v.directory);
    assert_eq!(
        v.patients,
        vec![PatientAccess {
            patient_id: "p".into(),
            level: Level::WithoutSensitive,
            break_glass: false
        }]
    );
    let (s, ctx) = subject("clinician@hhc+btg", now_for("12y0d"));
    let v = view(&s, &ctx, &config);
    assert_eq!(v.care_organizations, vec!["hhc".to_string()]);
    assert!(v.patients[0].break_glass);
    let (s, ctx) = subject("admin", now_for("12y0d"));
    assert!(view(&s, &ctx, &config).everything);
}
