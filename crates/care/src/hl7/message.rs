//! A strict parser of HL7 v2 messages (the ER7 "pipe and hat" encoding): the delimiters are
//! read from MSH, then segments, fields, repetitions, components and subcomponents, each value
//! unescaped. What it refuses, it refuses with the HL7 error code (table 0357) and the place
//! (`PID-7`), so the acknowledgement can say what was wrong. It never panics, whatever the
//! bytes (property-tested in `tests.rs`).
//!
//! Deliberate choices: segments end with a carriage return (the standard), and a line feed or
//! CR LF is taken as one too (files and test tools send them); blank lines are skipped. The
//! text is UTF-8, or ISO 8859-1 when MSH-18 says so. Batches (FHS/BHS) are not taken.

use std::fmt;

/// HL7 table 0357 (message error condition codes) — the ones this server answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// 100: segment sequence error (a segment missing, misplaced or malformed).
    SegmentSequence,
    /// 101: required field missing.
    RequiredField,
    /// 102: data type error (a date that is not a date, a bad escape).
    DataType,
    /// 103: table value not found (a code the tables do not have).
    TableValue,
    /// 200: unsupported message type.
    UnsupportedMessageType,
    /// 201: unsupported event code.
    UnsupportedEvent,
    /// 202: unsupported processing id.
    UnsupportedProcessingId,
    /// 203: unsupported version id.
    UnsupportedVersion,
    /// 204: unknown key identifier (no such patient).
    UnknownKey,
    /// 207: application internal error.
    Internal,
}

impl ErrorCode {
    pub fn code(self) -> &'static str {
        match self {
            ErrorCode::SegmentSequence => "100",
            ErrorCode::RequiredField => "101",
            ErrorCode::DataType => "102",
            ErrorCode::TableValue => "103",
            ErrorCode::UnsupportedMessageType => "200",
            ErrorCode::UnsupportedEvent => "201",
            ErrorCode::UnsupportedProcessingId => "202",
            ErrorCode::UnsupportedVersion => "203",
            ErrorCode::UnknownKey => "204",
            ErrorCode::Internal => "207",
        }
    }

    pub fn words(self) -> &'static str {
        match self {
            ErrorCode::SegmentSequence => "Segment sequence error",
            ErrorCode::RequiredField => "Required field missing",
            ErrorCode::DataType => "Data type error",
            ErrorCode::TableValue => "Table value not found",
            ErrorCode::UnsupportedMessageType => "Unsupported message type",
            ErrorCode::UnsupportedEvent => "Unsupported event code",
            ErrorCode::UnsupportedProcessingId => "Unsupported processing id",
            ErrorCode::UnsupportedVersion => "Unsupported version id",
            ErrorCode::UnknownKey => "Unknown key identifier",
            ErrorCode::Internal => "Application internal error",
        }
    }
}

/// Where in a message something is: a segment (and its number among segments of that name,
/// from 1), a field, a component.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Location {
    pub segment: String,
    pub sequence: usize,
    pub field: Option<usize>,
    pub component: Option<usize>,
}

impl Location {
    pub fn segment(segment: &str) -> Location {
        Location {
            segment: segment.to_string(),
            sequence: 1,
            field: None,
            component: None,
        }
    }

    pub fn field(segment: &str, field: usize) -> Location {
        Location {
            field: Some(field),
            ..Location::segment(segment)
        }
    }

    pub fn component(segment: &str, field: usize, component: usize) -> Location {
        Location {
            component: Some(component),
            ..Location::field(segment, field)
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.segment)?;
        if let Some(field) = self.field {
            write!(f, "-{field}")?;
            if let Some(c) = self.component {
                write!(f, ".{c}")?;
            }
        }
        Ok(())
    }
}

/// Why a message was refused: the HL7 error code, where, and the words for a person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hl7Error {
    pub code: ErrorCode,
    pub location: Option<Location>,
    pub message: String,
}

impl Hl7Error {
    pub fn new(code: ErrorCode, location: Option<Location>, message: impl Into<String>) -> Self {
        Hl7Error {
            code,
            location,
            message: message.into(),
        }
    }
}

impl fmt::Display for Hl7Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.location {
            Some(l) => write!(f, "{l}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

/// The encoding characters of a message (MSH-1 and MSH-2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delimiters {
    pub field: char,
    pub component: char,
    pub repetition: char,
    pub escape: char,
    pub subcomponent: char,
}

impl Default for Delimiters {
    fn default() -> Self {
        Delimiters {
            field: '|',
            component: '^',
            repetition: '~',
            escape: '\\',
            subcomponent: '&',
        }
    }
}

impl Delimiters {
    /// MSH-2 as written with these delimiters.
    pub fn encoding_characters(&self) -> String {
        [
            self.component,
            self.repetition,
            self.escape,
            self.subcomponent,
        ]
        .iter()
        .collect()
    }

    /// `value` with every delimiter escaped, to write it into a message.
    pub fn escape(&self, value: &str) -> String {
        let mut out = String::with_capacity(value.len());
        for c in value.chars() {
            let seq = if c == self.escape {
                "E"
            } else if c == self.field {
                "F"
            } else if c == self.component {
                "S"
            } else if c == self.subcomponent {
                "T"
            } else if c == self.repetition {
                "R"
            } else if c == '\r' || c == '\n' {
                ".br"
            } else {
                out.push(c);
                continue;
            };
            out.push(self.escape);
            out.push_str(seq);
            out.push(self.escape);
        }
        out
    }
}

/// One repetition of a field: its components, each a list of subcomponents (unescaped).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Repetition(pub Vec<Vec<String>>);

impl Repetition {
    /// Component `n` (from 1), its first subcomponent; "" when absent.
    pub fn component(&self, n: usize) -> &str {
        self.subcomponent(n, 1)
    }

    /// Subcomponent `s` (from 1) of component `n` (from 1); "" when absent.
    pub fn subcomponent(&self, n: usize, s: usize) -> &str {
        n.checked_sub(1)
            .and_then(|i| self.0.get(i))
            .and_then(|c| s.checked_sub(1).and_then(|j| c.get(j)))
            .map(|v| v.as_str())
            .unwrap_or("")
    }

    /// Every component empty.
    pub fn is_empty(&self) -> bool {
        self.0.iter().flatten().all(|s| s.is_empty())
    }
}

/// A field: its repetitions.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Field(pub Vec<Repetition>);

impl Field {
    pub fn first(&self) -> Option<&Repetition> {
        self.0.first()
    }

    pub fn is_empty(&self) -> bool {
        self.0.iter().all(Repetition::is_empty)
    }
}

/// A segment: its name and fields, `fields[n]` being field `n` (`fields[0]` is empty; for MSH,
/// `fields[1]` is the field separator and `fields[2]` the encoding characters, as written).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    pub id: String,
    pub fields: Vec<Field>,
}

impl Segment {
    /// Field `n` (from 1).
    pub fn field(&self, n: usize) -> Option<&Field> {
        if n == 0 { None } else { self.fields.get(n) }
    }

    /// The first repetition's component `c` of field `n`; "" when absent.
    pub fn get(&self, n: usize, c: usize) -> &str {
        self.field(n)
            .and_then(Field::first)
            .map(|r| r.component(c))
            .unwrap_or("")
    }

    /// Every non-empty repetition of field `n`.
    pub fn repeats(&self, n: usize) -> impl Iterator<Item = &Repetition> {
        self.field(n)
            .into_iter()
            .flat_map(|f| f.0.iter())
            .filter(|r| !r.is_empty())
    }
}

/// A parsed message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub delimiters: Delimiters,
    pub segments: Vec<Segment>,
}

impl Message {
    pub fn msh(&self) -> &Segment {
        &self.segments[0]
    }

    /// The first segment named `id`.
    pub fn segment(&self, id: &str) -> Option<&Segment> {
        self.segments.iter().find(|s| s.id == id)
    }
}

/// The most segments one message may have.
pub const MAX_SEGMENTS: usize = 5_000;

/// Decodes the bytes: UTF-8, or ISO 8859-1 when the header names it (MSH-18).
pub fn decode(bytes: &[u8]) -> Result<String, Hl7Error> {
    match std::str::from_utf8(bytes) {
        Ok(s) => Ok(s.to_string()),
        Err(_) => {
            let header_end = bytes
                .iter()
                .position(|b| *b == b'\r' || *b == b'\n')
                .unwrap_or(bytes.len());
            let header = String::from_utf8_lossy(&bytes[..header_end]);
            if header.contains("8859/1") {
                Ok(bytes.iter().map(|b| char::from(*b)).collect())
            } else {
                Err(Hl7Error::new(
                    ErrorCode::DataType,
                    Some(Location::field("MSH", 18)),
                    "the message is not UTF-8 text, and MSH-18 names no other character set (8859/1 is also read)",
                ))
            }
        }
    }
}

/// The lines (segments) of a message's text.
fn lines(text: &str) -> impl Iterator<Item = &str> {
    text.split(['\r', '\n']).filter(|l| !l.is_empty())
}

/// Reads the delimiters from the start of MSH.
fn delimiters(msh: &str) -> Result<Delimiters, Hl7Error> {
    let bad = |msg: &str| {
        Hl7Error::new(
            ErrorCode::SegmentSequence,
            Some(Location::field("MSH", 2)),
            msg,
        )
    };
    let mut chars = msh.chars().skip(3);
    let field = chars.next().ok_or_else(|| {
        Hl7Error::new(
            ErrorCode::SegmentSequence,
            Some(Location::segment("MSH")),
            "MSH ends before its field separator",
        )
    })?;
    let encoding: Vec<char> = chars.take_while(|c| *c != field).collect();
    if encoding.len() < 4 || encoding.len() > 5 {
        return Err(bad(
            "MSH-2 must hold the four encoding characters (component, repetition, escape, subcomponent), such as ^~\\&",
        ));
    }
    let d = Delimiters {
        field,
        component: encoding[0],
        repetition: encoding[1],
        escape: encoding[2],
        subcomponent: encoding[3],
    };
    let mut all = vec![d.field, d.component, d.repetition, d.escape, d.subcomponent];
    if let Some(t) = encoding.get(4) {
        all.push(*t); // v2.7's truncation character
    }
    if all
        .iter()
        .any(|c| c.is_alphanumeric() || c.is_whitespace() || c.is_control())
    {
        return Err(bad(
            "the delimiters must be punctuation (letters, digits, spaces and control characters cannot be delimiters)",
        ));
    }
    let mut sorted = all.clone();
    sorted.sort_unstable();
    sorted.dedup();
    if sorted.len() != all.len() {
        return Err(bad("the delimiters must be five different characters"));
    }
    Ok(d)
}

/// Parses a message's text.
pub fn parse(text: &str) -> Result<Message, Hl7Error> {
    let mut lines = lines(text);
    let first = lines.next().unwrap_or("");
    if !first.starts_with("MSH") {
        let what = if first.starts_with("FHS") || first.starts_with("BHS") {
            "batches (FHS/BHS) are not taken; send one message per frame"
        } else {
            "a message must begin with its MSH segment"
        };
        return Err(Hl7Error::new(
            ErrorCode::SegmentSequence,
            Some(Location::segment("MSH")),
            what,
        ));
    }
    let d = delimiters(first)?;
    let mut segments = vec![parse_msh(first, &d)?];
    let mut counts: Vec<(String, usize)> = Vec::new();
    for line in lines {
        if segments.len() >= MAX_SEGMENTS {
            return Err(Hl7Error::new(
                ErrorCode::SegmentSequence,
                None,
                format!("a message may have at most {MAX_SEGMENTS} segments"),
            ));
        }
        let id: String = line.split(d.field).next().unwrap_or("").to_string();
        let sequence = match counts.iter_mut().find(|(s, _)| *s == id) {
            Some((_, n)) => {
                *n += 1;
                *n
            }
            None => {
                counts.push((id.clone(), 1));
                1
            }
        };
        if !is_segment_id(&id) {
            let shown: String = id.chars().take(12).collect();
            return Err(Hl7Error::new(
                ErrorCode::SegmentSequence,
                None,
                format!(
                    "segment {} begins with '{shown}', which is not a segment name (three capital letters or digits, such as PID)",
                    segments.len() + 1
                ),
            ));
        }
        if id == "MSH" {
            return Err(Hl7Error::new(
                ErrorCode::SegmentSequence,
                Some(Location::segment("MSH")),
                "a second MSH segment: send one message per frame",
            ));
        }
        let mut fields = vec![Field::default()];
        for (n, raw) in line.split(d.field).enumerate().skip(1) {
            fields.push(parse_field(raw, &d).map_err(|message| {
                Hl7Error::new(
                    ErrorCode::DataType,
                    Some(Location {
                        sequence,
                        ..Location::field(&id, n)
                    }),
                    message,
                )
            })?);
        }
        segments.push(Segment { id, fields });
    }
    Ok(Message {
        delimiters: d,
        segments,
    })
}

fn is_segment_id(id: &str) -> bool {
    let b = id.as_bytes();
    b.len() == 3
        && b[0].is_ascii_uppercase()
        && b[1..]
            .iter()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
}

fn parse_msh(line: &str, d: &Delimiters) -> Result<Segment, Hl7Error> {
    // MSH-1 is the field separator itself, MSH-2 the encoding characters as written
    let after = &line[3 + d.field.len_utf8()..];
    let (encoding, rest) = match after.split_once(d.field) {
        Some((e, r)) => (e, Some(r)),
        None => (after, None),
    };
    let literal = |s: &str| Field(vec![Repetition(vec![vec![s.to_string()]])]);
    let mut fields = vec![
        Field::default(),
        literal(&d.field.to_string()),
        literal(encoding),
    ];
    if let Some(rest) = rest {
        for (i, raw) in rest.split(d.field).enumerate() {
            fields.push(parse_field(raw, d).map_err(|message| {
                Hl7Error::new(
                    ErrorCode::DataType,
                    Some(Location::field("MSH", i + 3)),
                    message,
                )
            })?);
        }
    }
    Ok(Segment {
        id: "MSH".into(),
        fields,
    })
}

fn parse_field(raw: &str, d: &Delimiters) -> Result<Field, String> {
    raw.split(d.repetition)
        .map(|rep| {
            rep.split(d.component)
                .map(|c| c.split(d.subcomponent).map(|s| unescape(s, d)).collect())
                .collect::<Result<Vec<Vec<String>>, String>>()
                .map(Repetition)
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Field)
}

/// A value with its escape sequences replaced (\F\ \S\ \T\ \R\ \E\, \Xhh…\, \.br\; the
/// highlighting ones, \H\ and \N\, dropped). The HL7 null `""` reads as empty.
pub fn unescape(value: &str, d: &Delimiters) -> Result<String, String> {
    if value == "\"\"" {
        return Ok(String::new());
    }
    if !value.contains(d.escape) {
        return Ok(value.to_string());
    }
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(start) = rest.find(d.escape) {
        out.push_str(&rest[..start]);
        let after = &rest[start + d.escape.len_utf8()..];
        let Some(end) = after.find(d.escape) else {
            return Err(format!(
                "an escape sequence is not closed (each one is written between two '{}')",
                d.escape
            ));
        };
        let seq = &after[..end];
        match seq {
            "F" => out.push(d.field),
            "S" => out.push(d.component),
            "T" => out.push(d.subcomponent),
            "R" => out.push(d.repetition),
            "E" => out.push(d.escape),
            ".br" => out.push('\n'),
            "H" | "N" => {}
            _ if seq.starts_with('X') && seq.len() > 1 => {
                let hex = &seq[1..];
                if !hex.len().is_multiple_of(2) || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(format!("escape \\{seq}\\ is not hexadecimal bytes"));
                }
                let bytes: Vec<u8> = (0..hex.len())
                    .step_by(2)
                    .filter_map(|i| u8::from_str_radix(&hex[i..i + 2], 16).ok())
                    .collect();
                match String::from_utf8(bytes) {
                    Ok(s) => out.push_str(&s),
                    Err(e) => out.extend(e.into_bytes().iter().map(|b| char::from(*b))),
                }
            }
            _ => {
                let shown: String = seq.chars().take(12).collect();
                return Err(format!(
                    "unknown escape sequence \\{shown}\\ (known: \\F\\ \\S\\ \\T\\ \\R\\ \\E\\ \\Xhh\\ \\.br\\)"
                ));
            }
        }
        rest = &after[end + d.escape.len_utf8()..];
    }
    out.push_str(rest);
    Ok(out)
}

/// What the acknowledgement needs of a message's header, read even when the rest of the
/// message cannot be.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Header {
    pub sending_application: String,
    pub sending_facility: String,
    pub receiving_application: String,
    pub receiving_facility: String,
    pub message_type: String,
    pub trigger: String,
    pub control_id: String,
    pub processing_id: String,
    pub version: String,
}

/// The header of a message, as far as its first segment can be read (`None` when it does not
/// begin with a readable MSH).
pub fn header(text: &str) -> Option<Header> {
    let first = lines(text).next()?;
    if !first.starts_with("MSH") {
        return None;
    }
    let d = delimiters(first).ok()?;
    let msh = parse_msh(first, &d).ok()?;
    Some(header_of(&msh))
}

fn header_of(msh: &Segment) -> Header {
    Header {
        sending_application: msh.get(3, 1).to_string(),
        sending_facility: msh.get(4, 1).to_string(),
        receiving_application: msh.get(5, 1).to_string(),
        receiving_facility: msh.get(6, 1).to_string(),
        message_type: msh.get(9, 1).to_string(),
        trigger: msh.get(9, 2).to_string(),
        control_id: msh.get(10, 1).to_string(),
        processing_id: msh.get(11, 1).to_string(),
        version: msh.get(12, 1).to_string(),
    }
}

impl Message {
    pub fn header(&self) -> Header {
        header_of(self.msh())
    }
}
