//! The policy matrix: role × the patient's age (11y364d, 12y0d, 14y0d, 15y364d, 16y0d,
//! 17y364d, 18y0d) × Consent ×
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
        "14y0d" => day_ms(2024, 6, 15),
        "15y364d" => day_ms(2026, 6, 14),
        "16y0d" => day_ms(2026, 6, 15),
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
        "backend-observations-only" => Subject {
            id: who.into(),
            grants: vec![],
            fhir_users: vec![],
            scopes: Scopes::parse("system/Observation.rs").unwrap(),
        },
        "coordinator@cc-patients-only-token" => Subject {
            scopes: Scopes::parse("user/Patient.rs").unwrap(),
            ..user(vec![grant(Role::Coordinator, Some("cc"))], None)
        },
        "parent-patients-only-token" => {
            ctx.proxy_for.push(ProxyLink {
                patient_id: "p".into(),
                birth_date: birth,
                guardianship: false,
            });
            Subject {
                scopes: Scopes::parse("user/Patient.rs").unwrap(),
                ..user(
                    vec![grant(Role::Proxy, None)],
                    Some(("RelatedPerson", "mom")),
                )
            }
        }
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
        "permit-N" => Some(rule(true, vec!["N".into()])),
        "permit-PSY" => Some(rule(true, vec!["PSY".into()])),
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
pub const MATRIX: &str = include_str!("policy_matrix.txt");

/// The facts of a row's resource. The type column is `Type`, `Type>org` (the resource names
/// `org` as the one caring — owner, requester, service provider, managing organisation — which
/// counts only once it is stored), `Type+q` (it also concerns patient `q`, registered with
/// `hhc`), `Patient+new>org` (a new patient registered with `org`) or `IdentityReview` /
/// `IdentityReview=cc` (a pair of p with q, or with another patient of cc).
fn facts_for(column: &str, label: &str, action: Action) -> ResourceFacts {
    let labels = if label == "-" {
        vec![]
    } else {
        vec![label.to_string()]
    };
    let pc = ("p".to_string(), "cc".to_string());
    let mut f = ResourceFacts {
        resource_type: column.to_string(),
        patients: vec!["p".into()],
        labels,
        relationships: vec![pc.clone()],
        registration: None,
    };
    if let Some(org) = column.strip_prefix("Patient+new>") {
        f.resource_type = "Patient".into();
        f.patients = vec!["n".into()];
        f.relationships = vec![];
        f.registration = Some(org.to_string());
    } else if let Some((rt, org)) = column.split_once('>') {
        f.resource_type = rt.to_string();
        if action != Action::Create {
            f.relationships.push(("p".into(), org.to_string()));
        }
    } else if let Some(rt) = column.strip_suffix("+q") {
        f.resource_type = rt.to_string();
        f.patients.push("q".into());
        f.relationships.push(("q".into(), "hhc".into()));
    } else if column == "IdentityReview" {
        f.patients.push("q".into());
        f.relationships.push(("q".into(), "hhc".into()));
    } else if column == "IdentityReview=cc" {
        f.resource_type = "IdentityReview".into();
        f.patients.push("s".into());
        f.relationships.push(("s".into(), "cc".into()));
    } else if column == "Organization" || column == "Location" || column == "Subscription" {
        f.patients = vec![];
    }
    f
}

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
        let facts = facts_for(rt, label, action(act));
        let got = if facts.resource_type == "IdentityReview" {
            decide_identity_review(&subject, action(act).is_write(), &facts, &ctx, &config)
        } else {
            decide(&subject, action(act), &facts, &ctx, &config)
        };
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
    assert!(rows >= 120, "the matrix has {rows} rows");
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
            withheld: Level::WithoutSensitive.withheld(),
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

/// Referral worklists and measures: the organisation's own people, administrators for the
/// alliance; never without scopes that read Tasks.
#[test]
fn organization_reports_are_for_those_who_work_there() {
    use super::policy::decide_organization_reports;
    let with = |role: Role, org: Option<&str>, scopes: &str| Subject {
        id: "x".into(),
        grants: vec![Grant {
            role,
            organization: org.map(str::to_string),
        }],
        fhir_users: vec![],
        scopes: Scopes::parse(scopes).unwrap(),
    };
    let coordinator = with(Role::Coordinator, Some("cc"), "user/*.rs");
    assert!(decide_organization_reports(&coordinator, false, Some("cc")).is_permit());
    assert!(!decide_organization_reports(&coordinator, false, Some("hhc")).is_permit());
    assert!(!decide_organization_reports(&coordinator, false, None).is_permit());
    let clinician = with(Role::ReferringClinician, Some("shore"), "user/*.rs");
    assert!(decide_organization_reports(&clinician, false, Some("shore")).is_permit());
    let proxy = with(Role::Proxy, None, "user/*.rs");
    assert!(!decide_organization_reports(&proxy, false, Some("cc")).is_permit());
    let no_tasks = with(Role::Coordinator, Some("cc"), "user/Patient.rs");
    assert!(!decide_organization_reports(&no_tasks, false, Some("cc")).is_permit());
    let admin = with(Role::AllianceAdmin, None, "user/*.cruds");
    assert!(decide_organization_reports(&admin, true, None).is_permit());
    assert!(decide_organization_reports(&admin, true, Some("hhc")).is_permit());
}

/// A parent acts (books, cancels) for a child under 18 they may see; for someone whose birth
/// date is not recorded a parent still sees what a teenager's parent sees, but only a guardian
/// acts; a Consent to see an adult's record is no right to act.
#[test]
fn who_a_family_member_acts_for() {
    let config = PolicyConfig::default();
    let (s, mut ctx) = subject("parent", now_for("12y0d"));
    assert_eq!(view(&s, &ctx, &config).acts_for, vec!["p".to_string()]);
    for link in ctx.proxy_for.iter_mut() {
        link.birth_date = None;
    }
    let v = view(&s, &ctx, &config);
    assert_eq!(v.patients.len(), 1, "seen as a teenager's parent sees");
    assert!(v.acts_for.is_empty(), "but not acted for");
    for link in ctx.proxy_for.iter_mut() {
        link.guardianship = true;
    }
    assert_eq!(view(&s, &ctx, &config).acts_for, vec!["p".to_string()]);
    let (s, ctx) = subject("self", now_for("11y364d"));
    assert!(view(&s, &ctx, &config).acts_for.is_empty());
    let (s, ctx) = subject("self", now_for("12y0d"));
    assert_eq!(view(&s, &ctx, &config).acts_for, vec!["p".to_string()]);
}
