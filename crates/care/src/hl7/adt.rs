//! ADT messages (v2.5.1 A01 admit, A02 transfer, A03 discharge, A04 register, A08 update): what
//! the alliance reads of them, and the Encounter they make. Pure: the server resolves the
//! patient, the sending organisation and the prior Encounter, then calls [`encounter`].
//!
//! Codes are read from the HL7 tables: PV1-2 patient class (0004) → `Encounter.class`
//! (v3 ActCode), PV1-14 admit source (0023), PV1-36 discharge disposition (0112), PV1-10
//! hospital service (0069, user-defined: the alliance's sensitive services are listed in
//! [`SENSITIVE_SERVICES`]), PD1-12 protection indicator. Times without a zone are the
//! hospitals' local time, US Eastern.

use serde_json::{Value, json};

use super::message::{ErrorCode, Hl7Error, Location, Message, Repetition, Segment};
use super::{AckCode, Refusal};

/// The events taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    A01,
    A02,
    A03,
    A04,
    A08,
}

impl Event {
    pub fn parse(s: &str) -> Option<Event> {
        Some(match s {
            "A01" => Event::A01,
            "A02" => Event::A02,
            "A03" => Event::A03,
            "A04" => Event::A04,
            "A08" => Event::A08,
            _ => return None,
        })
    }

    pub fn code(self) -> &'static str {
        match self {
            Event::A01 => "A01",
            Event::A02 => "A02",
            Event::A03 => "A03",
            Event::A04 => "A04",
            Event::A08 => "A08",
        }
    }

    /// What happened, in words for an alert ("was admitted").
    pub fn words(self) -> &'static str {
        match self {
            Event::A01 => "was admitted",
            Event::A02 => "was transferred",
            Event::A03 => "was discharged",
            Event::A04 => "was registered (emergency or outpatient visit)",
            Event::A08 => "had the visit's details updated",
        }
    }

    /// Whether care teams are told of this event (CMS 42 CFR 482.24(d): registration,
    /// admission, transfer, discharge — not a correction of details).
    pub fn alerts(self) -> bool {
        !matches!(self, Event::A08)
    }
}

/// HL7 versions whose ADT fields read as v2.5.1's.
pub fn version_supported(v: &str) -> bool {
    matches!(
        v,
        "2.3"
            | "2.3.1"
            | "2.4"
            | "2.5"
            | "2.5.1"
            | "2.6"
            | "2.7"
            | "2.7.1"
            | "2.8"
            | "2.8.1"
            | "2.8.2"
    )
}

/// An identifier (CX): value, assigning authority (HD: namespace, universal id, its type),
/// identifier type.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Cx {
    pub value: String,
    pub namespace: String,
    pub universal_id: String,
    pub universal_type: String,
    pub type_code: String,
}

impl Cx {
    fn read(r: &Repetition) -> Cx {
        Cx {
            value: r.component(1).trim().to_string(),
            namespace: r.subcomponent(4, 1).trim().to_string(),
            universal_id: r.subcomponent(4, 2).trim().to_string(),
            universal_type: r.subcomponent(4, 3).trim().to_string(),
            type_code: r.component(5).trim().to_string(),
        }
    }

    /// The FHIR identifier system of the assigning authority: an ISO OID as `urn:oid:`, a URI
    /// as itself, a namespace `N` as `urn:mrn:n` (the alliance's convention for its members'
    /// record numbers); `None` without an authority.
    pub fn system(&self) -> Option<String> {
        authority_system(&self.namespace, &self.universal_id, &self.universal_type)
    }
}

/// The identifier system of an assigning authority (see [`Cx::system`]).
pub fn authority_system(
    namespace: &str,
    universal_id: &str,
    universal_type: &str,
) -> Option<String> {
    if !universal_id.is_empty() {
        match universal_type.to_ascii_uppercase().as_str() {
            "ISO" => return Some(format!("urn:oid:{universal_id}")),
            "URI" | "URL" => return Some(universal_id.to_string()),
            _ => {}
        }
    }
    if namespace.is_empty() {
        None
    } else {
        Some(format!("urn:mrn:{}", namespace.to_ascii_lowercase()))
    }
}

/// A time (DTM) as FHIR writes it, with its instant when it has a time of day.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dtm {
    /// `2026-12-02` or `2026-12-02T14:05:00Z`.
    pub fhir: String,
    pub ms: Option<i64>,
}

/// Reads a DTM (`YYYY[MM[DD[HH[MM[SS[.S…]]]]]][+/-ZZZZ]`); a time without a zone is US Eastern.
pub fn dtm(s: &str) -> Result<Option<Dtm>, String> {
    let s = s.trim();
    if s.is_empty() {
        return Ok(None);
    }
    let bad = || {
        format!(
            "'{}' is not an HL7 date/time (YYYYMMDDHHMMSS)",
            s.chars().take(30).collect::<String>()
        )
    };
    let (main, zone) = match s
        .char_indices()
        .skip(4)
        .find(|(_, c)| *c == '+' || *c == '-')
    {
        Some((i, _)) => (&s[..i], Some(&s[i..])),
        None => (s, None),
    };
    let (digits, _fraction) = match main.split_once('.') {
        Some((d, f)) if f.bytes().all(|b| b.is_ascii_digit()) && d.len() == 14 => (d, f),
        Some(_) => return Err(bad()),
        None => (main, ""),
    };
    if !digits.bytes().all(|b| b.is_ascii_digit()) || ![4, 6, 8, 10, 12, 14].contains(&digits.len())
    {
        return Err(bad());
    }
    let num = |a: usize, b: usize| digits.get(a..b).map(|x| x.parse::<u32>().unwrap_or(0));
    let year = num(0, 4).unwrap_or(0) as i32;
    let month = num(4, 6);
    let day = num(6, 8);
    if year < 1850 || month.is_some_and(|m| !(1..=12).contains(&m)) {
        return Err(bad());
    }
    if let (Some(m), Some(d)) = (month, day)
        && (d < 1 || d > days_in_month(year, m))
    {
        return Err(bad());
    }
    let offset_minutes = match zone {
        Some(z) => {
            let sign = if z.starts_with('-') { -1 } else { 1 };
            let zd = &z[1..];
            if zd.len() != 4 || !zd.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            let (zh, zm): (i64, i64) = (zd[..2].parse().unwrap_or(0), zd[2..].parse().unwrap_or(0));
            if zh > 14 || zm > 59 {
                return Err(bad());
            }
            Some(sign * (zh * 60 + zm))
        }
        None => None,
    };
    if digits.len() <= 8 {
        let fhir = match (month, day) {
            (Some(m), Some(d)) => format!("{year:04}-{m:02}-{d:02}"),
            (Some(m), None) => format!("{year:04}-{m:02}"),
            _ => format!("{year:04}"),
        };
        return Ok(Some(Dtm { fhir, ms: None }));
    }
    let (hour, minute, second) = (
        num(8, 10).unwrap_or(0),
        num(10, 12).unwrap_or(0),
        num(12, 14).unwrap_or(0),
    );
    if hour > 23 || minute > 59 || second > 59 {
        return Err(bad());
    }
    let (month, day) = (month.unwrap_or(1), day.unwrap_or(1));
    let days = crate::slots::days_from_civil(year, month, day);
    let minute_of_day = i64::from(hour * 60 + minute);
    let ms = match offset_minutes {
        Some(offset) => (days * 1440 + minute_of_day - offset) * 60_000,
        None => crate::slots::local_to_utc(days, minute_of_day),
    } + i64::from(second) * 1000;
    Ok(Some(Dtm {
        fhir: fhir::primitive::format_instant(ms).replace(".000Z", "Z"),
        ms: Some(ms),
    }))
}

fn days_in_month(year: i32, month: u32) -> u32 {
    match month {
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// A person's name (XPN).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Name {
    pub family: String,
    pub given: Vec<String>,
}

impl Name {
    pub fn text(&self) -> String {
        let mut parts = self.given.clone();
        if !self.family.is_empty() {
            parts.push(self.family.clone());
        }
        parts.join(" ")
    }
}

/// A clinician (XCN): id, name, the id's authority.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Clinician {
    pub id: String,
    pub name: Name,
    pub prefix: String,
    pub namespace: String,
}

impl Clinician {
    fn read(r: &Repetition) -> Clinician {
        let mut given = Vec::new();
        for c in [3, 4] {
            let g = r.component(c).trim();
            if !g.is_empty() {
                given.push(g.to_string());
            }
        }
        Clinician {
            id: r.component(1).trim().to_string(),
            name: Name {
                family: r.subcomponent(2, 1).trim().to_string(),
                given,
            },
            prefix: r.component(6).trim().to_string(),
            namespace: r.subcomponent(9, 1).trim().to_string(),
        }
    }

    /// "Dr Ana Ruiz".
    pub fn display(&self) -> String {
        let name = self.name.text();
        match (self.prefix.is_empty(), name.is_empty()) {
            (_, true) => self.id.clone(),
            (true, false) => name,
            (false, false) => format!("{} {name}", self.prefix),
        }
    }
}

/// A place in a hospital (PL): point of care, room, bed, facility, and the description.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Place {
    pub point_of_care: String,
    pub room: String,
    pub bed: String,
    pub facility: String,
    pub description: String,
}

impl Place {
    fn read(r: Option<&Repetition>) -> Option<Place> {
        let r = r?;
        let p = Place {
            point_of_care: r.component(1).trim().to_string(),
            room: r.component(2).trim().to_string(),
            bed: r.component(3).trim().to_string(),
            facility: r.subcomponent(4, 1).trim().to_string(),
            description: r.component(9).trim().to_string(),
        };
        (!(p.point_of_care.is_empty() && p.room.is_empty() && p.bed.is_empty())).then_some(p)
    }

    /// "4 North, room 412, bed B".
    pub fn display(&self) -> String {
        if !self.description.is_empty() {
            return self.description.clone();
        }
        let mut parts = Vec::new();
        if !self.point_of_care.is_empty() {
            parts.push(self.point_of_care.clone());
        }
        if !self.room.is_empty() {
            parts.push(format!("room {}", self.room));
        }
        if !self.bed.is_empty() {
            parts.push(format!("bed {}", self.bed));
        }
        parts.join(", ")
    }
}

/// The patient as the message describes them (PID, PD1).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Person {
    pub identifiers: Vec<Cx>,
    pub name: Name,
    pub birth_date: Option<String>,
    pub gender: Option<&'static str>,
    pub address: Option<Value>,
    pub phone: Option<String>,
    /// PD1-12 = Y: the hospital asks that access be restricted.
    pub protected: bool,
}

impl Person {
    /// The Patient resource this describes (for `$match`-style scoring, and the hospital's own
    /// record when one is written).
    pub fn patient(&self) -> Value {
        let mut p = json!({"resourceType": "Patient"});
        let ids: Vec<Value> = self
            .identifiers
            .iter()
            .filter_map(|c| Some(json!({"system": c.system()?, "value": c.value})))
            .collect();
        if !ids.is_empty() {
            p["identifier"] = json!(ids);
        }
        if !self.name.family.is_empty() || !self.name.given.is_empty() {
            let mut n = json!({});
            if !self.name.family.is_empty() {
                n["family"] = json!(self.name.family);
            }
            if !self.name.given.is_empty() {
                n["given"] = json!(self.name.given);
            }
            p["name"] = json!([n]);
        }
        if let Some(g) = self.gender {
            p["gender"] = json!(g);
        }
        if let Some(b) = &self.birth_date {
            p["birthDate"] = json!(b);
        }
        if let Some(a) = &self.address {
            p["address"] = json!([a]);
        }
        if let Some(t) = &self.phone {
            p["telecom"] = json!([{"system": "phone", "value": t}]);
        }
        p
    }
}

/// The visit (PV1).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Visit {
    /// v3 ActCode (`IMP`, `EMER`, `AMB`, `PRENC`) and its words.
    pub class: (&'static str, &'static str),
    pub location: Option<Place>,
    pub prior_location: Option<Place>,
    pub attending: Option<Clinician>,
    pub hospital_service: String,
    pub admit_source: String,
    pub number: Option<Cx>,
    pub discharge_disposition: String,
    pub admitted: Option<Dtm>,
    pub discharged: Option<Dtm>,
}

/// What the alliance reads of an ADT message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Adt {
    pub event: Event,
    pub control_id: String,
    pub sending_application: String,
    /// MSH-4: namespace, universal id, type.
    pub sending_facility: (String, String, String),
    pub message_time: Option<Dtm>,
    /// EVN-6 (when it happened), else EVN-2 (recorded).
    pub event_time: Option<Dtm>,
    pub person: Person,
    pub visit: Visit,
}

impl Adt {
    /// When the event happened: EVN-6, else EVN-2, else the message's time (MSH-7).
    pub fn when(&self) -> Option<&Dtm> {
        self.event_time.as_ref().or(self.message_time.as_ref())
    }

    /// The sending facility's name as written (MSH-4.1, else its universal id).
    pub fn facility(&self) -> &str {
        if self.sending_facility.0.is_empty() {
            &self.sending_facility.1
        } else {
            &self.sending_facility.0
        }
    }

    /// The sensitivity code the visit's hospital service calls for ([`SENSITIVE_SERVICES`]).
    pub fn sensitivity(&self) -> Option<&'static str> {
        let service = self.visit.hospital_service.to_ascii_uppercase();
        SENSITIVE_SERVICES
            .iter()
            .find(|(codes, _)| codes.contains(&service.as_str()))
            .map(|(_, code)| *code)
    }

    /// The identifier system of the visit number: its assigning authority, else
    /// `urn:visit:<facility>`.
    pub fn visit_system(&self) -> String {
        self.visit
            .number
            .as_ref()
            .and_then(|n| {
                (!n.universal_id.is_empty() || !n.namespace.is_empty())
                    .then(|| authority_system(&n.namespace, &n.universal_id, &n.universal_type))
                    .flatten()
            })
            .map(|s| s.replacen("urn:mrn:", "urn:visit:", 1))
            .unwrap_or_else(|| format!("urn:visit:{}", self.facility().to_ascii_lowercase()))
    }
}

/// Hospital services (PV1-10, table 0069 is each hospital's own) the alliance treats as
/// sensitive, with the v3 ActCode sensitivity they carry: mental health, substance use,
/// sexual health, HIV. A visit in one is labelled so, and for a minor it is recorded as
/// minor-consented care — a parent is not told of it.
pub const SENSITIVE_SERVICES: &[(&[&str], &str)] = &[
    (&["PSY", "PSYCH", "BH", "BHS", "MH", "BEH"], "PSY"),
    (&["SUD", "CD", "DETOX", "ADDICT"], "SUD"),
    (&["SEX", "SH", "STD", "STI", "GYN-ADOL", "ADOL-SH"], "SEX"),
    (&["HIV", "ID-HIV"], "HIV"),
];

fn refuse(
    ack: AckCode,
    code: ErrorCode,
    at: Option<Location>,
    words: impl Into<String>,
) -> Refusal {
    Refusal {
        ack,
        error: Hl7Error::new(code, at, words),
    }
}

/// Checks the header (type, event, version, processing id, control id) — the refusals that
/// are AR — then reads the ADT content (AE when something required is missing or malformed).
pub fn read(message: &Message) -> Result<Adt, Refusal> {
    let msh = message.msh();
    let h = message.header();
    if h.message_type != "ADT" {
        return Err(refuse(
            AckCode::Rejected,
            ErrorCode::UnsupportedMessageType,
            Some(Location::component("MSH", 9, 1)),
            format!(
                "message type '{}' is not taken here; this listener takes ADT (A01, A02, A03, A04, A08)",
                h.message_type
            ),
        ));
    }
    let Some(event) = Event::parse(&h.trigger) else {
        return Err(refuse(
            AckCode::Rejected,
            ErrorCode::UnsupportedEvent,
            Some(Location::component("MSH", 9, 2)),
            format!(
                "ADT event '{}' is not taken; A01, A02, A03, A04 and A08 are",
                h.trigger
            ),
        ));
    };
    if !version_supported(&h.version) {
        return Err(refuse(
            AckCode::Rejected,
            ErrorCode::UnsupportedVersion,
            Some(Location::field("MSH", 12)),
            format!(
                "HL7 version '{}' is not taken; send v2.5.1 (2.3 to 2.8 are read alike)",
                h.version
            ),
        ));
    }
    if h.processing_id != "P" {
        return Err(refuse(
            AckCode::Rejected,
            ErrorCode::UnsupportedProcessingId,
            Some(Location::field("MSH", 11)),
            format!(
                "processing id '{}' is not taken: this server keeps real records and takes production messages (P) only; send training (T) and debugging (D) messages to a test system",
                h.processing_id
            ),
        ));
    }
    if h.control_id.trim().is_empty() {
        return Err(refuse(
            AckCode::Rejected,
            ErrorCode::RequiredField,
            Some(Location::field("MSH", 10)),
            "MSH-10 (the message control id) is required: it is how a resent message is known",
        ));
    }
    if h.sending_facility.is_empty() && msh.get(4, 2).is_empty() {
        return Err(refuse(
            AckCode::Error,
            ErrorCode::RequiredField,
            Some(Location::field("MSH", 4)),
            "MSH-4 (the sending facility) is required: alerts name the institution that sent them",
        ));
    }
    let content = |code: ErrorCode, at: Location, words: String| {
        refuse(AckCode::Error, code, Some(at), words)
    };
    let time = |seg: &Segment, name: &str, n: usize| {
        dtm(seg.get(n, 1)).map_err(|e| content(ErrorCode::DataType, Location::field(name, n), e))
    };
    let evn = message.segment("EVN");
    let event_time = match evn {
        Some(evn) => match time(evn, "EVN", 6)? {
            Some(t) => Some(t),
            None => time(evn, "EVN", 2)?,
        },
        None => None,
    };
    let message_time = time(msh, "MSH", 7)?;
    let pid = message.segment("PID").ok_or_else(|| {
        content(
            ErrorCode::SegmentSequence,
            Location::segment("PID"),
            "the PID segment (the patient) is missing".into(),
        )
    })?;
    let identifiers: Vec<Cx> = pid
        .repeats(3)
        .map(Cx::read)
        .filter(|c| !c.value.is_empty())
        .collect();
    if identifiers.is_empty() {
        return Err(content(
            ErrorCode::RequiredField,
            Location::field("PID", 3),
            "PID-3 (the patient's identifiers) is required".into(),
        ));
    }
    let name = pid
        .repeats(5)
        .find(|r| matches!(r.component(7), "" | "L"))
        .or_else(|| pid.repeats(5).next())
        .map(|r| {
            let mut given = Vec::new();
            for c in [2, 3] {
                let g = r.component(c).trim();
                if !g.is_empty() {
                    given.push(g.to_string());
                }
            }
            Name {
                family: r.subcomponent(1, 1).trim().to_string(),
                given,
            }
        })
        .unwrap_or_default();
    // the birth date as written (a time of day, or a zone, does not move it to another day)
    let birth_date = time(pid, "PID", 7)?.map(|d| {
        let digits: String = pid.get(7, 1).trim().chars().take(8).collect();
        match digits.len() {
            8 => format!("{}-{}-{}", &digits[..4], &digits[4..6], &digits[6..]),
            _ => d.fhir.chars().take(10).collect(),
        }
    });
    let gender = match pid.get(8, 1).trim() {
        "" => None,
        "M" => Some("male"),
        "F" => Some("female"),
        "O" | "A" | "N" => Some("other"),
        "U" => Some("unknown"),
        other => {
            return Err(content(
                ErrorCode::TableValue,
                Location::field("PID", 8),
                format!("administrative sex '{other}' is not in table 0001 (F, M, O, U, A, N)"),
            ));
        }
    };
    let address = pid.repeats(11).next().map(|r| {
        let mut a = json!({});
        let lines: Vec<&str> = [r.subcomponent(1, 1), r.component(2)]
            .into_iter()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        if !lines.is_empty() {
            a["line"] = json!(lines);
        }
        for (key, c) in [("city", 3), ("state", 4), ("postalCode", 5), ("country", 6)] {
            let v = r.component(c).trim();
            if !v.is_empty() {
                a[key] = json!(v);
            }
        }
        a
    });
    let phone = pid.repeats(13).find_map(|r| {
        let whole = r.component(1).trim();
        if !whole.is_empty() {
            return Some(whole.to_string());
        }
        let (area, local) = (r.component(6).trim(), r.component(7).trim());
        (!local.is_empty()).then(|| format!("{area}{local}"))
    });
    let protected = message
        .segment("PD1")
        .is_some_and(|pd1| pd1.get(12, 1).trim() == "Y");
    let pv1 = message.segment("PV1").ok_or_else(|| {
        content(
            ErrorCode::SegmentSequence,
            Location::segment("PV1"),
            "the PV1 segment (the visit) is missing".into(),
        )
    })?;
    let class = match pv1.get(2, 1).trim() {
        "I" | "B" => ("IMP", "inpatient encounter"),
        "E" => ("EMER", "emergency"),
        "O" | "R" | "C" => ("AMB", "ambulatory"),
        "P" => ("PRENC", "pre-admission"),
        "" => {
            return Err(content(
                ErrorCode::RequiredField,
                Location::field("PV1", 2),
                "PV1-2 (the patient class: E, I, O, P, R or B) is required".into(),
            ));
        }
        other => {
            return Err(content(
                ErrorCode::TableValue,
                Location::field("PV1", 2),
                format!(
                    "patient class '{other}' is not one of table 0004's taken here (E, I, O, P, R, B, C)"
                ),
            ));
        }
    };
    let visit = Visit {
        class,
        location: Place::read(pv1.repeats(3).next()),
        prior_location: Place::read(pv1.repeats(6).next()),
        attending: pv1
            .repeats(7)
            .map(Clinician::read)
            .find(|c| !c.id.is_empty() || !c.name.family.is_empty()),
        hospital_service: pv1.get(10, 1).trim().to_string(),
        admit_source: pv1.get(14, 1).trim().to_string(),
        number: pv1.repeats(19).map(Cx::read).find(|c| !c.value.is_empty()),
        discharge_disposition: pv1.get(36, 1).trim().to_string(),
        admitted: time(pv1, "PV1", 44)?,
        discharged: time(pv1, "PV1", 45)?,
    };
    Ok(Adt {
        event,
        control_id: h.control_id.trim().to_string(),
        sending_application: h.sending_application.clone(),
        sending_facility: (
            msh.get(4, 1).trim().to_string(),
            msh.field(4)
                .and_then(|f| f.first())
                .map(|r| r.component(2).trim().to_string())
                .unwrap_or_default(),
            msh.field(4)
                .and_then(|f| f.first())
                .map(|r| r.component(3).trim().to_string())
                .unwrap_or_default(),
        ),
        message_time,
        event_time,
        person: Person {
            identifiers,
            name,
            birth_date,
            gender,
            address,
            phone,
            protected,
        },
        visit,
    })
}

/// The Encounter's status after `event`, from the status it had (`None`: no Encounter yet),
/// or why the move is refused (AE): a discharged or cancelled visit is not admitted,
/// registered or transferred again — a new visit has a new number.
pub fn next_status(
    event: Event,
    prior: Option<&str>,
    discharged: bool,
) -> Result<&'static str, String> {
    let closed = matches!(prior, Some("finished" | "cancelled" | "entered-in-error"));
    match event {
        Event::A01 | Event::A02 if closed => Err(format!(
            "the visit was already {} here; a new admission or transfer needs a new visit number (PV1-19)",
            if prior == Some("finished") { "discharged" } else { "cancelled" }
        )),
        Event::A04 if closed => Err(
            "the visit was already closed here; a new registration needs a new visit number (PV1-19)".into(),
        ),
        Event::A01 | Event::A02 => Ok("in-progress"),
        Event::A04 => Ok(match prior {
            Some("in-progress") => "in-progress",
            _ => "arrived",
        }),
        Event::A03 => match prior {
            Some("cancelled" | "entered-in-error") => {
                Err("a cancelled visit cannot be discharged".into())
            }
            _ => Ok("finished"),
        },
        Event::A08 => Ok(match prior {
            Some("planned") => "planned",
            Some("arrived") => "arrived",
            Some("in-progress") => "in-progress",
            Some("finished") => "finished",
            Some("cancelled") => "cancelled",
            Some("entered-in-error") => "entered-in-error",
            Some(_) | None if discharged => "finished",
            _ => "in-progress",
        }),
    }
}

/// What the server resolved for the Encounter.
#[derive(Debug, Clone)]
pub struct Refs<'a> {
    /// `Patient/…`.
    pub patient: &'a str,
    /// `Organization/…` of the sending facility, when the directory has it, and its name.
    pub service_provider: Option<&'a str>,
    pub institution: &'a str,
    /// `Practitioner/…` of the attending clinician, when the directory has them.
    pub attending: Option<&'a str>,
    /// The patient is a minor (under 18) — a sensitive visit is then minor-consented care.
    pub minor: bool,
}

const ACT_CODE: &str = "http://terminology.hl7.org/CodeSystem/v3-ActCode";

/// The Encounter after `adt`, from the one stored (`prior`, or `None` for a first message),
/// or why the message cannot apply (AE).
pub fn encounter(adt: &Adt, prior: Option<&Value>, refs: &Refs) -> Result<Value, Refusal> {
    let prior_status = prior.and_then(|p| p.get("status")).and_then(Value::as_str);
    let status =
        next_status(adt.event, prior_status, adt.visit.discharged.is_some()).map_err(|w| {
            refuse(
                AckCode::Error,
                ErrorCode::Internal,
                Some(Location::field("PV1", 19)),
                w,
            )
        })?;
    let mut e = match prior {
        Some(p) => p.clone(),
        None => json!({"resourceType": "Encounter"}),
    };
    let Value::Object(obj) = &mut e else {
        return Err(refuse(
            AckCode::Error,
            ErrorCode::Internal,
            None,
            "the stored Encounter is not an object",
        ));
    };
    obj.remove("text");
    e["status"] = json!(status);
    if let Some(n) = &adt.visit.number {
        let system = adt.visit_system();
        let present = e["identifier"].as_array().is_some_and(|ids| {
            ids.iter()
                .any(|i| i["system"] == json!(system) && i["value"] == json!(n.value))
        });
        if !present {
            let mut ids = e["identifier"].as_array().cloned().unwrap_or_default();
            ids.push(json!({"use": "official", "system": system, "value": n.value}));
            e["identifier"] = json!(ids);
        }
    }
    e["class"] =
        json!({"system": ACT_CODE, "code": adt.visit.class.0, "display": adt.visit.class.1});
    if !adt.visit.hospital_service.is_empty() {
        e["serviceType"] = json!({"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0069", "code": adt.visit.hospital_service}]});
    }
    e["subject"] = json!({"reference": refs.patient});
    if let Some(a) = &adt.visit.attending {
        let mut individual = json!({"display": a.display()});
        if let Some(r) = refs.attending {
            individual["reference"] = json!(r);
        }
        e["participant"] = json!([{
            "type": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "ATND", "display": "attender"}]}],
            "individual": individual
        }]);
    }
    // the period: the admission's start (PV1-44, else the event's time), the discharge's end
    let when = adt.when().map(|d| d.fhir.clone());
    let start = adt
        .visit
        .admitted
        .as_ref()
        .map(|d| d.fhir.clone())
        .or_else(|| {
            (e.pointer("/period/start").is_none() && adt.event != Event::A03)
                .then(|| when.clone())
                .flatten()
        });
    if let Some(s) = start {
        e["period"]["start"] = json!(s);
    }
    if status == "finished"
        && let Some(end) = adt
            .visit
            .discharged
            .as_ref()
            .map(|d| d.fhir.clone())
            .or(when.clone())
    {
        e["period"]["end"] = json!(end);
    }
    if !adt.visit.admit_source.is_empty() {
        e["hospitalization"]["admitSource"] = json!({"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0023", "code": adt.visit.admit_source}]});
    }
    if !adt.visit.discharge_disposition.is_empty() {
        e["hospitalization"]["dischargeDisposition"] = json!({"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0112", "code": adt.visit.discharge_disposition}]});
    }
    // locations: the current one active; on a transfer the earlier ones completed
    if let Some(place) = &adt.visit.location {
        let display = place.display();
        let mut locations = e["location"].as_array().cloned().unwrap_or_default();
        let same = locations
            .iter()
            .position(|l| l.pointer("/location/display") == Some(&json!(display)));
        for (i, l) in locations.iter_mut().enumerate() {
            if Some(i) != same && l["status"] == json!("active") {
                l["status"] = json!("completed");
                if let Some(w) = &when {
                    l["period"]["end"] = json!(w);
                }
            }
        }
        if same.is_none() {
            let mut l = json!({"location": {"display": display}, "status": "active"});
            if let Some(w) = &when {
                l["period"] = json!({"start": w});
            }
            locations.push(l);
        }
        if status == "finished" {
            for l in locations.iter_mut() {
                if l["status"] == json!("active") {
                    l["status"] = json!("completed");
                }
            }
        }
        e["location"] = json!(locations);
    } else if status == "finished"
        && let Some(locations) = e["location"].as_array_mut()
    {
        for l in locations.iter_mut() {
            if l["status"] == json!("active") {
                l["status"] = json!("completed");
            }
        }
    }
    e["serviceProvider"] = match refs.service_provider {
        Some(r) => json!({"reference": r, "display": refs.institution}),
        None => json!({"display": refs.institution}),
    };
    // sensitivity: a sensitive service (minor-consented care for a minor), PD1-12's restriction
    let mut labels: Vec<(String, String)> = Vec::new();
    if let Some(code) = adt.sensitivity() {
        if refs.minor {
            let mut exts = e["extension"].as_array().cloned().unwrap_or_default();
            if !exts
                .iter()
                .any(|x| x["url"] == json!(crate::profile::MINOR_CONSENTED_CARE))
            {
                exts.push(json!({"url": crate::profile::MINOR_CONSENTED_CARE, "valueCode": code}));
            }
            e["extension"] = json!(exts);
        }
        labels.push((ACT_CODE.to_string(), code.to_string()));
        labels.push((
            crate::access::policy::CONFIDENTIALITY_SYSTEM.to_string(),
            "R".to_string(),
        ));
    }
    if adt.person.protected {
        labels.push((
            crate::access::policy::CONFIDENTIALITY_SYSTEM.to_string(),
            "R".to_string(),
        ));
    }
    crate::labels::add_labels(&mut e, &labels);
    Ok(e)
}

/// The alert's words (CMS's minimum content: the patient, the event, the treating
/// practitioner, the sending institution) — nothing clinical beyond the event.
pub fn alert_text(adt: &Adt, patient_name: &str, institution: &str) -> String {
    let when = adt
        .when()
        .and_then(|d| d.ms)
        .map(|ms| format!(" on {}", crate::notify::eastern(ms)))
        .unwrap_or_default();
    let clinician = adt
        .visit
        .attending
        .as_ref()
        .map(|a| format!(" Treating practitioner: {}.", a.display()))
        .unwrap_or_default();
    format!(
        "{patient_name} {} at {institution}{when}.{clinician} Sent by {institution} (HL7 ADT^{}).",
        adt.event.words(),
        adt.event.code()
    )
}

/// Whether a patient's Consents opt them out of hospital event alerts: an active Consent whose
/// `provision.type` is `deny`, coded (in `category` or `provision.code`) with the alliance's
/// notification code `hospital-events`.
pub fn opted_out(consents: &[Value]) -> bool {
    let coded = |v: Option<&Value>| {
        v.and_then(Value::as_array).into_iter().flatten().any(|cc| {
            cc.get("coding")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .any(|c| {
                    c.get("system").and_then(Value::as_str) == Some(crate::profile::NOTIFICATION)
                        && c.get("code").and_then(Value::as_str)
                            == Some(crate::profile::HOSPITAL_EVENTS)
                })
        })
    };
    consents.iter().any(|c| {
        c.get("status").and_then(Value::as_str) == Some("active")
            && c.pointer("/provision/type").and_then(Value::as_str) == Some("deny")
            && (coded(c.get("category")) || coded(c.pointer("/provision/code")))
    })
}
