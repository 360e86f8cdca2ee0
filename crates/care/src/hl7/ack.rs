//! The acknowledgement of a message (original mode): MSH, MSA with the code — AA (accepted:
//! committed), AE (application error: the message was understood but could not be applied;
//! nothing was written) or AR (rejected: not parseable, or a message type, event or version
//! this server does not take) — echoing the message's control id (MSH-10), and for AE/AR an
//! ERR segment with the place, the table 0357 code and the words.

use super::message::{Delimiters, Header, Hl7Error};

/// MSA-1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckCode {
    Accepted,
    Error,
    Rejected,
}

impl AckCode {
    pub fn code(self) -> &'static str {
        match self {
            AckCode::Accepted => "AA",
            AckCode::Error => "AE",
            AckCode::Rejected => "AR",
        }
    }

    pub fn parse(s: &str) -> Option<AckCode> {
        match s {
            "AA" => Some(AckCode::Accepted),
            "AE" => Some(AckCode::Error),
            "AR" => Some(AckCode::Rejected),
            _ => None,
        }
    }
}

/// What this server calls itself in the acknowledgements' MSH-3 and MSH-4 when the message
/// named no receiver.
pub const APPLICATION: &str = "CONTINUUM";

/// An acknowledgement of `original` (its header, when it could be read): `ack_id` is the ACK's
/// own control id, `now` its time (HL7 DTM), `text` MSA-3's words.
pub fn ack(
    original: Option<&Header>,
    code: AckCode,
    text: &str,
    error: Option<&Hl7Error>,
    ack_id: &str,
    now: &str,
) -> String {
    let d = Delimiters::default();
    let e = |s: &str| d.escape(s);
    let empty = Header::default();
    let h = original.unwrap_or(&empty);
    let or = |s: &str, default: &str| {
        if s.is_empty() {
            default.to_string()
        } else {
            e(s)
        }
    };
    let version = match h.version.as_str() {
        v if super::adt::version_supported(v) => v.to_string(),
        _ => "2.5.1".to_string(),
    };
    let processing = match h.processing_id.as_str() {
        "P" | "T" | "D" => h.processing_id.clone(),
        _ => "P".to_string(),
    };
    let message_type = if h.trigger.is_empty() {
        "ACK".to_string()
    } else {
        format!("ACK^{}^ACK", e(&h.trigger))
    };
    let mut out = format!(
        "MSH|^~\\&|{}|{}|{}|{}|{}||{}|{}|{}|{}\r",
        or(&h.receiving_application, APPLICATION),
        or(&h.receiving_facility, APPLICATION),
        e(&h.sending_application),
        e(&h.sending_facility),
        now,
        message_type,
        e(ack_id),
        processing,
        version,
    );
    out.push_str(&format!(
        "MSA|{}|{}|{}\r",
        code.code(),
        e(&h.control_id),
        e(text)
    ));
    if let Some(err) = error {
        let location = err
            .location
            .as_ref()
            .map(|l| {
                let mut s = format!("{}^{}", e(&l.segment), l.sequence);
                if let Some(f) = l.field {
                    s.push_str(&format!("^{f}"));
                    if let Some(c) = l.component {
                        s.push_str(&format!("^1^{c}"));
                    }
                }
                s
            })
            .unwrap_or_default();
        out.push_str(&format!(
            "ERR||{}|{}^{}^HL70357|E||||{}\r",
            location,
            err.code.code(),
            err.code.words(),
            e(&err.message)
        ));
    }
    out
}
