//! The readiness and self-care assessment: the alliance's own questionnaire, written in our
//! words on the domains the published transition tools cover — knowing one's health,
//! medicines, appointments, insurance, speaking up for oneself, privacy at 18 — and its score.
//! Pure: the questions, the answers' values, and what a set of answers scores.

/// The questionnaire's canonical URL and version.
pub const URL: &str = "http://continuum-alliance.org/fhir/Questionnaire/transition-readiness";
pub const VERSION: &str = "1";
/// The Questionnaire's id on every server.
pub const ID: &str = "transition-readiness";
/// The answers' code system.
pub const ANSWERS: &str = "http://continuum-alliance.org/fhir/CodeSystem/readiness-answer";

/// One domain of the assessment and its questions (`linkId`, words).
pub struct Domain {
    pub code: &'static str,
    pub title: &'static str,
    pub questions: &'static [(&'static str, &'static str)],
}

pub const DOMAINS: &[Domain] = &[
    Domain {
        code: "condition",
        title: "My health",
        questions: &[
            (
                "condition-explain",
                "I can explain my health condition, in my own words, to someone who does not know me.",
            ),
            (
                "condition-emergency",
                "I know what to do and whom to call if my health suddenly gets worse.",
            ),
        ],
    },
    Domain {
        code: "medications",
        title: "My medicines",
        questions: &[
            (
                "meds-names",
                "I know the names of my medicines, what each one is for and when I take it.",
            ),
            (
                "meds-refill",
                "I ask for a refill myself before a medicine runs out.",
            ),
        ],
    },
    Domain {
        code: "appointments",
        title: "My appointments",
        questions: &[
            ("appt-book", "I make, change or cancel my own appointments."),
            (
                "appt-questions",
                "I write down my questions before a visit and ask them myself.",
            ),
        ],
    },
    Domain {
        code: "insurance",
        title: "My insurance",
        questions: &[
            (
                "ins-card",
                "I carry my insurance card and know what my plan pays for.",
            ),
            (
                "ins-change",
                "I know my health insurance may change as I get older, and when.",
            ),
        ],
    },
    Domain {
        code: "self-advocacy",
        title: "Speaking up for myself",
        questions: &[
            (
                "adv-alone",
                "I spend part of each visit with my clinician without a parent or caregiver in the room.",
            ),
            (
                "adv-speak",
                "I say what matters to me when decisions are made about my care.",
            ),
        ],
    },
    Domain {
        code: "privacy",
        title: "Privacy at 18",
        questions: &[
            (
                "priv-18",
                "I know that from 18 my clinicians talk with me, not my parents, unless I agree.",
            ),
            (
                "priv-share",
                "I know how to let someone else see my health information if I want them to.",
            ),
        ],
    },
];

/// The answers, with the points each is worth.
pub const SCALE: &[(&str, &str, u32)] = &[
    ("not-yet", "Not yet", 0),
    ("learning", "I'm learning", 1),
    ("with-help", "I do it with some help", 2),
    ("on-my-own", "Yes, on my own", 3),
];

/// Every question's `linkId`, in order.
pub fn link_ids() -> impl Iterator<Item = &'static str> {
    DOMAINS
        .iter()
        .flat_map(|d| d.questions.iter().map(|(id, _)| *id))
}

/// What a set of answers scores: each domain and the whole, as a share of the most (0–100),
/// and the questions answered "not yet" or "learning" — what the plan of care works on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Score {
    pub total: u32,
    pub domains: Vec<(&'static str, u32)>,
    pub to_work_on: Vec<&'static str>,
}

/// Scores answers given as (`linkId`, answer code). `complete`: every question must be
/// answered (a completed response); otherwise only what is given is checked. The problems,
/// in words, when answers are unknown, repeated or missing.
pub fn score(answers: &[(String, String)], complete: bool) -> Result<Score, Vec<String>> {
    let mut problems = Vec::new();
    let known: Vec<&str> = link_ids().collect();
    for (id, _) in answers {
        if !known.contains(&id.as_str()) {
            problems.push(format!(
                "'{id}' is not a question of the readiness assessment"
            ));
        }
    }
    let max = SCALE.iter().map(|s| s.2).max().unwrap_or(1);
    let mut domains = Vec::new();
    let mut to_work_on = Vec::new();
    let (mut got, mut most) = (0u32, 0u32);
    for d in DOMAINS {
        let (mut dg, mut dm) = (0u32, 0u32);
        for (id, _) in d.questions {
            let given: Vec<&str> = answers
                .iter()
                .filter(|(q, _)| q == id)
                .map(|(_, a)| a.as_str())
                .collect();
            match given.as_slice() {
                [] if complete => problems.push(format!("'{id}' is not answered")),
                [] => {}
                [a] => match SCALE.iter().find(|s| s.0 == *a) {
                    Some((code, _, points)) => {
                        dg += points;
                        dm += max;
                        if matches!(*code, "not-yet" | "learning") {
                            to_work_on.push(*id);
                        }
                    }
                    None => problems.push(format!(
                        "'{a}' is not an answer to '{id}' ({})",
                        SCALE.iter().map(|s| s.0).collect::<Vec<_>>().join(", ")
                    )),
                },
                _ => problems.push(format!("'{id}' is answered more than once")),
            }
        }
        got += dg;
        most += dm;
        if let Some(share) = (dg * 100 + dm / 2).checked_div(dm) {
            domains.push((d.code, share));
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(Score {
        total: (got * 100 + most / 2).checked_div(most).unwrap_or(0),
        domains,
        to_work_on,
    })
}
