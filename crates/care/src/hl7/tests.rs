use proptest::prelude::*;
use serde_json::json;

use super::adt::{self, Event, Refs, dtm, next_status};
use super::message::{self, Delimiters, ErrorCode};
use super::{AckCode, ack, read};

const A01: &str = "MSH|^~\\&|EPIC|CC|CONTINUUM|ALLIANCE|20261202101500||ADT^A01^ADT_A01|MSG0001|P|2.5.1\r\
EVN|A01|20261202101500|||||CC\r\
PID|1||D-NORA^^^CC^MR~999-11-2222^^^SSA^SS||Reyes^Nora^Isabel||20100314|F|||12 Elm St^^Hartford^CT^06106^US||^PRN^PH^^^860^5550100\r\
PD1||||||||||||N\r\
PV1|1|I|4N^412^B^CC||||1234^Ruiz^Ana^^^Dr^^^CC|||MED||||7|||||V100^^^CC^VN|||||||||||||||||||||||||20261202100000\r";

fn bytes(s: &str) -> Vec<u8> {
    s.as_bytes().to_vec()
}

fn refusal(s: &str) -> (AckCode, ErrorCode, String) {
    let (_, r) = read(s.as_bytes());
    let r = r.expect_err("refused");
    (
        r.ack,
        r.error.code,
        r.error.location.map(|l| l.to_string()).unwrap_or_default(),
    )
}

#[test]
fn a_typical_admission_is_read_field_by_field() {
    let (header, adt) = read(&bytes(A01));
    let h = header.unwrap();
    assert_eq!(
        (h.control_id.as_str(), h.trigger.as_str()),
        ("MSG0001", "A01")
    );
    let adt = adt.unwrap();
    assert_eq!(adt.event, Event::A01);
    assert_eq!(adt.facility(), "CC");
    assert_eq!(adt.person.identifiers.len(), 2);
    assert_eq!(adt.person.identifiers[0].value, "D-NORA");
    assert_eq!(
        adt.person.identifiers[0].system().as_deref(),
        Some("urn:mrn:cc")
    );
    assert_eq!(adt.person.name.family, "Reyes");
    assert_eq!(adt.person.name.given, vec!["Nora", "Isabel"]);
    assert_eq!(adt.person.birth_date.as_deref(), Some("2010-03-14"));
    // a birth time late in the evening is still that day
    let late = read(A01.replacen("|20100314|", "|201003142230|", 1).as_bytes())
        .1
        .unwrap();
    assert_eq!(late.person.birth_date.as_deref(), Some("2010-03-14"));
    assert_eq!(adt.person.gender, Some("female"));
    assert_eq!(adt.person.phone.as_deref(), Some("8605550100"));
    assert!(!adt.person.protected);
    assert_eq!(adt.visit.class.0, "IMP");
    assert_eq!(
        adt.visit.location.as_ref().unwrap().display(),
        "4N, room 412, bed B"
    );
    assert_eq!(
        adt.visit.attending.as_ref().unwrap().display(),
        "Dr Ana Ruiz"
    );
    assert_eq!(adt.visit.number.as_ref().unwrap().value, "V100");
    assert_eq!(adt.visit_system(), "urn:visit:cc");
    assert_eq!(adt.visit.hospital_service, "MED");
    assert_eq!(adt.visit.admit_source, "7");
    // 10:00 on 2 December is Eastern standard time: 15:00 UTC
    assert_eq!(
        adt.visit.admitted.as_ref().unwrap().fhir,
        "2026-12-02T15:00:00Z"
    );
    assert_eq!(adt.sensitivity(), None);
}

#[test]
fn line_feeds_and_blank_lines_end_segments_too() {
    let crlf = A01.replace('\r', "\r\n") + "\r\n\r\n";
    let (_, adt) = read(crlf.as_bytes());
    assert_eq!(adt.unwrap().person.name.family, "Reyes");
}

#[test]
fn delimiters_come_from_msh_and_escapes_are_undone() {
    let text = "MSH#$*@!#A#B#C#D#20261202##ADT$A08#X1#P#2.5.1\rPID#1##7$$$CC##Smith!Jones$Ann@F@B@T@C##2001\r";
    let m = message::parse(text).unwrap();
    assert_eq!(m.delimiters.field, '#');
    assert_eq!(m.delimiters.component, '$');
    let pid = m.segment("PID").unwrap();
    assert_eq!(
        pid.field(5).unwrap().first().unwrap().subcomponent(1, 1),
        "Smith"
    );
    assert_eq!(
        pid.field(5).unwrap().first().unwrap().subcomponent(1, 2),
        "Jones"
    );
    assert_eq!(pid.get(5, 2), "Ann#B!C");
    let d = Delimiters::default();
    assert_eq!(
        message::unescape(
            "a\\F\\b\\S\\c\\T\\d\\R\\e\\E\\f\\X41C3A9\\\\.br\\g\\H\\h\\N\\",
            &d
        )
        .unwrap(),
        "a|b^c&d~e\\fAé\ng".to_string() + "h"
    );
    assert_eq!(message::unescape("\"\"", &d).unwrap(), "");
}

#[test]
fn repetitions_are_kept_apart() {
    let m = message::parse(A01).unwrap();
    let ids: Vec<&str> = m
        .segment("PID")
        .unwrap()
        .repeats(3)
        .map(|r| r.component(1))
        .collect();
    assert_eq!(ids, vec!["D-NORA", "999-11-2222"]);
}

/// The bad-input table: what is refused, with which acknowledgement and where.
#[test]
fn bad_messages_are_refused_with_the_code_and_the_place() {
    let swap = |from: &str, to: &str| A01.replacen(from, to, 1);
    let cases: Vec<(String, AckCode, ErrorCode, &str)> = vec![
        (
            "PID|1||X\r".to_string(),
            AckCode::Rejected,
            ErrorCode::SegmentSequence,
            "MSH",
        ),
        (
            String::new(),
            AckCode::Rejected,
            ErrorCode::SegmentSequence,
            "MSH",
        ),
        (
            "FHS|^~\\&|X\r".into(),
            AckCode::Rejected,
            ErrorCode::SegmentSequence,
            "MSH",
        ),
        (
            swap("MSH|^~\\&|", "MSH|^~|"),
            AckCode::Rejected,
            ErrorCode::SegmentSequence,
            "MSH-2",
        ),
        (
            swap("MSH|^~\\&|", "MSH|^^\\&|"),
            AckCode::Rejected,
            ErrorCode::SegmentSequence,
            "MSH-2",
        ),
        (
            swap("MSH|^~\\&|", "MSH|a~\\&|"),
            AckCode::Rejected,
            ErrorCode::SegmentSequence,
            "MSH-2",
        ),
        (
            swap("MSH|^~\\&|", "MSH"),
            AckCode::Rejected,
            ErrorCode::SegmentSequence,
            "MSH-2",
        ),
        (
            swap("|2.5.1", "|3.0"),
            AckCode::Rejected,
            ErrorCode::UnsupportedVersion,
            "MSH-12",
        ),
        (
            swap("|2.5.1", "|"),
            AckCode::Rejected,
            ErrorCode::UnsupportedVersion,
            "MSH-12",
        ),
        (
            swap("ADT^A01^ADT_A01", "ADT^A99"),
            AckCode::Rejected,
            ErrorCode::UnsupportedEvent,
            "MSH-9.2",
        ),
        (
            swap("ADT^A01^ADT_A01", "ORU^R01"),
            AckCode::Rejected,
            ErrorCode::UnsupportedMessageType,
            "MSH-9.1",
        ),
        (
            swap("|MSG0001|P|", "||P|"),
            AckCode::Rejected,
            ErrorCode::RequiredField,
            "MSH-10",
        ),
        (
            swap("|MSG0001|P|", "|MSG0001|X|"),
            AckCode::Rejected,
            ErrorCode::UnsupportedProcessingId,
            "MSH-11",
        ),
        (
            swap("|MSG0001|P|", "|MSG0001|T|"),
            AckCode::Rejected,
            ErrorCode::UnsupportedProcessingId,
            "MSH-11",
        ),
        (
            swap("|EPIC|CC|", "|EPIC||"),
            AckCode::Error,
            ErrorCode::RequiredField,
            "MSH-4",
        ),
        (
            A01.split("PID|").next().unwrap().to_string(),
            AckCode::Error,
            ErrorCode::SegmentSequence,
            "PID",
        ),
        (
            A01.split("PV1|").next().unwrap().to_string(),
            AckCode::Error,
            ErrorCode::SegmentSequence,
            "PV1",
        ),
        (
            swap("D-NORA^^^CC^MR~999-11-2222^^^SSA^SS", ""),
            AckCode::Error,
            ErrorCode::RequiredField,
            "PID-3",
        ),
        (
            swap("|20100314|", "|20101332|"),
            AckCode::Error,
            ErrorCode::DataType,
            "PID-7",
        ),
        (
            swap("|20100314|", "|2010-03-14|"),
            AckCode::Error,
            ErrorCode::DataType,
            "PID-7",
        ),
        (
            swap("|20100314|F|", "|20100314|Q|"),
            AckCode::Error,
            ErrorCode::TableValue,
            "PID-8",
        ),
        (
            swap("PV1|1|I|", "PV1|1||"),
            AckCode::Error,
            ErrorCode::RequiredField,
            "PV1-2",
        ),
        (
            swap("PV1|1|I|", "PV1|1|Z|"),
            AckCode::Error,
            ErrorCode::TableValue,
            "PV1-2",
        ),
        (
            swap("Reyes^Nora", "Reyes\\Q\\^Nora"),
            AckCode::Rejected,
            ErrorCode::DataType,
            "PID-5",
        ),
        (
            swap("Reyes^Nora", "Reyes\\F^Nora"),
            AckCode::Rejected,
            ErrorCode::DataType,
            "PID-5",
        ),
        (
            swap("PD1|", "pd1|"),
            AckCode::Rejected,
            ErrorCode::SegmentSequence,
            "",
        ),
        (
            format!("{A01}MSH|^~\\&|X\r"),
            AckCode::Rejected,
            ErrorCode::SegmentSequence,
            "MSH",
        ),
        (
            swap("EVN|A01|20261202101500|", "EVN|A01|202612021015xx|"),
            AckCode::Error,
            ErrorCode::DataType,
            "EVN-2",
        ),
    ];
    for (text, ack_code, code, at) in cases {
        let got = refusal(&text);
        assert_eq!(got, (ack_code, code, at.to_string()), "{text:?}");
    }
}

#[test]
fn text_that_is_neither_utf8_nor_declared_latin1_is_rejected() {
    let mut b = bytes(A01);
    b.extend_from_slice(&[0xff, 0xfe, b'\r']);
    let (_, r) = read(&b);
    assert_eq!(r.unwrap_err().error.location.unwrap().to_string(), "MSH-18");
    let latin = A01
        .replacen("|2.5.1", "|2.5.1||||||8859/1", 1)
        .replace("Nora", "N\u{f3}ra");
    let latin_bytes: Vec<u8> = latin.chars().map(|c| c as u32 as u8).collect();
    let (_, r) = read(&latin_bytes);
    assert_eq!(r.unwrap().person.name.given[0], "N\u{f3}ra");
}

#[test]
fn the_ack_echoes_the_control_id_and_says_what_was_wrong() {
    let (header, _) = read(&bytes(A01));
    let ok = ack(
        header.as_ref(),
        AckCode::Accepted,
        "",
        None,
        "ACK1",
        "20261202101501+0000",
    );
    assert_eq!(
        ok,
        "MSH|^~\\&|CONTINUUM|ALLIANCE|EPIC|CC|20261202101501+0000||ACK^A01^ACK|ACK1|P|2.5.1\rMSA|AA|MSG0001|\r"
    );
    let bad = A01.replacen("|20100314|", "|2010|13|", 1);
    let (header, r) = read(bad.as_bytes());
    let r = r.unwrap_err();
    let text = ack(
        header.as_ref(),
        r.ack,
        "refused",
        Some(&r.error),
        "ACK2",
        "2026",
    );
    let parsed = message::parse(&text).unwrap();
    assert_eq!(parsed.segment("MSA").unwrap().get(1, 1), "AE");
    assert_eq!(parsed.segment("MSA").unwrap().get(2, 1), "MSG0001");
    let err = parsed.segment("ERR").unwrap();
    assert_eq!(err.get(2, 1), "PID");
    assert_eq!(err.get(2, 3), "8");
    assert_eq!(err.get(3, 1), "103");
    assert!(err.get(8, 1).contains("table 0001"));
    // no header at all: an AR with an empty MSA-2
    let text = ack(None, AckCode::Rejected, "", None, "ACK3", "2026");
    assert!(text.contains("\rMSA|AR||\r"), "{text}");
    assert!(text.contains("|ACK|ACK3|P|2.5.1\r"), "{text}");
}

#[test]
fn dates_and_times_read_with_their_zone_or_as_eastern() {
    let t = |s: &str| dtm(s).unwrap().map(|d| d.fhir);
    assert_eq!(t("2010"), Some("2010".into()));
    assert_eq!(t("201003"), Some("2010-03".into()));
    assert_eq!(t("20100314"), Some("2010-03-14".into()));
    assert_eq!(t("2026120210"), Some("2026-12-02T15:00:00Z".into()));
    assert_eq!(t("20260702101530"), Some("2026-07-02T14:15:30Z".into()));
    assert_eq!(
        t("20260702101530.1234"),
        Some("2026-07-02T14:15:30Z".into())
    );
    assert_eq!(
        t("20260702101530+0000"),
        Some("2026-07-02T10:15:30Z".into())
    );
    assert_eq!(t("202607021015-0700"), Some("2026-07-02T17:15:00Z".into()));
    assert_eq!(t(""), None);
    for bad in [
        "2026-07-02",
        "20260230",
        "20261301",
        "2026070225",
        "1026",
        "20260702+07",
        "2026070210153",
    ] {
        assert!(dtm(bad).is_err(), "{bad}");
    }
}

/// The Encounter's status machine, forbidden moves included.
#[test]
fn the_encounter_moves_by_the_events_and_refuses_to_reopen() {
    use Event::*;
    let ok = |e, p: Option<&str>| next_status(e, p, false).unwrap();
    assert_eq!(ok(A01, None), "in-progress");
    assert_eq!(ok(A04, None), "arrived");
    assert_eq!(ok(A01, Some("arrived")), "in-progress");
    assert_eq!(ok(A04, Some("in-progress")), "in-progress");
    assert_eq!(ok(A02, Some("in-progress")), "in-progress");
    assert_eq!(ok(A02, None), "in-progress");
    assert_eq!(ok(A03, Some("in-progress")), "finished");
    assert_eq!(ok(A03, None), "finished");
    assert_eq!(ok(A03, Some("finished")), "finished");
    assert_eq!(ok(A08, Some("in-progress")), "in-progress");
    assert_eq!(ok(A08, Some("finished")), "finished");
    assert_eq!(ok(A08, None), "in-progress");
    assert_eq!(next_status(A08, None, true).unwrap(), "finished");
    for (e, p) in [
        (A01, "finished"),
        (A02, "finished"),
        (A04, "finished"),
        (A01, "cancelled"),
        (A03, "cancelled"),
        (A02, "entered-in-error"),
    ] {
        assert!(next_status(e, Some(p), false).is_err(), "{e:?} after {p}");
    }
}

fn parsed(text: &str) -> adt::Adt {
    read(text.as_bytes()).1.unwrap()
}

#[test]
fn admission_transfer_and_discharge_make_one_encounter() {
    let refs = Refs {
        patient: "Patient/nora",
        service_provider: Some("Organization/cc"),
        institution: "Connecticut Children's",
        attending: None,
        minor: true,
    };
    let admitted = adt::encounter(&parsed(A01), None, &refs).unwrap();
    assert_eq!(admitted["status"], "in-progress");
    assert_eq!(admitted["class"]["code"], "IMP");
    assert_eq!(
        admitted["identifier"][0],
        json!({"use": "official", "system": "urn:visit:cc", "value": "V100"})
    );
    assert_eq!(admitted["period"]["start"], "2026-12-02T15:00:00Z");
    assert_eq!(admitted["location"][0]["status"], "active");
    assert_eq!(admitted["serviceProvider"]["reference"], "Organization/cc");
    assert_eq!(
        admitted["participant"][0]["individual"]["display"],
        "Dr Ana Ruiz"
    );
    assert!(admitted.get("meta").is_none(), "not sensitive");
    let a02 = A01
        .replacen("ADT^A01^ADT_A01|MSG0001", "ADT^A02^ADT_A02|MSG0002", 1)
        .replacen("EVN|A01|20261202101500", "EVN|A02|20261202120000", 1)
        .replacen("4N^412^B^CC", "PICU^2^A^CC", 1);
    let moved = adt::encounter(&parsed(&a02), Some(&admitted), &refs).unwrap();
    assert_eq!(moved["location"].as_array().unwrap().len(), 2);
    assert_eq!(moved["location"][0]["status"], "completed");
    assert_eq!(
        moved["location"][0]["period"]["end"],
        "2026-12-02T17:00:00Z"
    );
    assert_eq!(moved["location"][1]["status"], "active");
    assert_eq!(
        moved["identifier"].as_array().unwrap().len(),
        1,
        "the visit number once"
    );
    let a03 = a02
        .replacen("ADT^A02^ADT_A02|MSG0002", "ADT^A03^ADT_A03|MSG0003", 1)
        .replacen("EVN|A02|20261202120000", "EVN|A03|20261204093000", 1)
        .replacen(
            "|||||||||||||||||||||||||20261202100000",
            "|||||||||||||||||01||||||||20261202100000|20261204093000",
            1,
        );
    let done = adt::encounter(&parsed(&a03), Some(&moved), &refs).unwrap();
    assert_eq!(done["status"], "finished");
    assert_eq!(done["period"]["end"], "2026-12-04T14:30:00Z");
    assert_eq!(
        done["hospitalization"]["dischargeDisposition"]["coding"][0]["code"],
        "01"
    );
    assert!(
        done["location"]
            .as_array()
            .unwrap()
            .iter()
            .all(|l| l["status"] == "completed")
    );
    // a discharged visit is not admitted again
    assert!(adt::encounter(&parsed(A01), Some(&done), &refs).is_err());
}

#[test]
fn a_sensitive_service_for_a_minor_is_minor_consented_care() {
    let text = A01.replacen("|||MED||", "|||PSY||", 1);
    let a = parsed(&text);
    assert_eq!(a.sensitivity(), Some("PSY"));
    let refs = Refs {
        patient: "Patient/nora",
        service_provider: None,
        institution: "CC",
        attending: None,
        minor: true,
    };
    let e = adt::encounter(&a, None, &refs).unwrap();
    assert_eq!(
        e["extension"][0]["url"],
        crate::profile::MINOR_CONSENTED_CARE
    );
    assert_eq!(e["extension"][0]["valueCode"], "PSY");
    let labels = crate::labels::encounter_labels(&e);
    assert!(labels.iter().any(|(_, c)| c == "PSY"));
    assert!(labels.iter().any(|(_, c)| c == "R"));
    assert_eq!(e["serviceProvider"], json!({"display": "CC"}));
    // an adult's: labelled, not minor-consented
    let adult = adt::encounter(
        &a,
        None,
        &Refs {
            minor: false,
            ..refs.clone()
        },
    )
    .unwrap();
    assert!(adult.get("extension").is_none());
    assert!(adult["meta"]["security"].as_array().unwrap().len() == 2);
    // the protection indicator restricts
    let protected = A01.replacen("PD1||||||||||||N", "PD1||||||||||||Y", 1);
    let p = adt::encounter(&parsed(&protected), None, &refs).unwrap();
    assert_eq!(p["meta"]["security"][0]["code"], "R");
}

#[test]
fn the_alert_names_patient_event_clinician_and_institution() {
    let words = adt::alert_text(&parsed(A01), "Nora Reyes", "Connecticut Children's");
    assert!(
        words.starts_with("Nora Reyes was admitted at Connecticut Children's on "),
        "{words}"
    );
    assert!(
        words.contains("Treating practitioner: Dr Ana Ruiz."),
        "{words}"
    );
    assert!(words.contains("ADT^A01"), "{words}");
}

#[test]
fn escaping_a_value_and_reading_it_back_gives_the_value() {
    let d = Delimiters::default();
    for s in ["plain", "a|b^c~d\\e&f", "line\nbreak", ""] {
        assert_eq!(
            message::unescape(&d.escape(s), &d).unwrap(),
            s.replace('\r', "\n")
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    /// No bytes make the parser panic.
    #[test]
    fn no_bytes_panic(b in proptest::collection::vec(any::<u8>(), 0..400)) {
        let _ = read(&b);
        let (h, r) = read(&[b"MSH|^~\\&|".as_slice(), &b].concat());
        let _ = ack(h.as_ref(), AckCode::Rejected, "x", r.err().as_ref().map(|r| &r.error), "1", "2");
    }

    /// No change of a valid message makes the parser panic: a byte replaced, a span cut, a
    /// delimiter or escape inserted.
    #[test]
    fn no_mutation_of_a_valid_message_panics(
        at in 0usize..A01.len(),
        len in 0usize..40,
        with in proptest::sample::select(vec!["|", "^", "~", "\\", "&", "\r", "\\X", "\\F", "", "\u{e9}", "MSH|", "PID|", "\"\""]),
        byte in any::<u8>(),
    ) {
        let mut cut = A01.as_bytes().to_vec();
        let end = (at + len).min(cut.len());
        cut.splice(at..end, with.bytes());
        let _ = read(&cut);
        let mut flipped = A01.as_bytes().to_vec();
        flipped[at] = byte;
        let (_, r) = read(&flipped);
        if let Ok(a) = r {
            let refs = Refs { patient: "Patient/x", service_provider: None, institution: "X", attending: None, minor: true };
            let _ = adt::encounter(&a, None, &refs);
            let _ = adt::alert_text(&a, "X", "Y");
        }
    }

    /// Any value, escaped, reads back as itself.
    #[test]
    fn escape_round_trips(s in "[ -~\u{e9}\n]{0,40}") {
        let d = Delimiters::default();
        prop_assert_eq!(message::unescape(&d.escape(&s), &d).unwrap(), s);
    }

    /// Any DTM text is read or refused, never a panic.
    #[test]
    fn any_time_text_is_read_or_refused(s in "[0-9+\\-.]{0,25}") {
        let _ = dtm(&s);
    }
}

#[test]
fn a_denying_consent_coded_for_hospital_events_opts_out() {
    let code =
        json!([{"coding": [{"system": crate::profile::NOTIFICATION, "code": "hospital-events"}]}]);
    let deny = json!({"resourceType": "Consent", "status": "active", "category": code, "provision": {"type": "deny"}});
    assert!(adt::opted_out(std::slice::from_ref(&deny)));
    let mut permit = deny.clone();
    permit["provision"]["type"] = json!("permit");
    assert!(!adt::opted_out(&[permit]));
    let mut inactive = deny.clone();
    inactive["status"] = json!("inactive");
    assert!(!adt::opted_out(&[inactive]));
    let other = json!({"resourceType": "Consent", "status": "active", "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}], "provision": {"type": "deny"}});
    assert!(!adt::opted_out(&[other]));
    let in_provision = json!({"resourceType": "Consent", "status": "active", "category": [{"text": "alerts"}], "provision": {"type": "deny", "code": code}});
    assert!(adt::opted_out(&[in_provision]));
}
