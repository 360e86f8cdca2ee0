//! HL7 v2 as the alliance's hospitals send it: a strict parser of our own ([`message`]), the
//! acknowledgement ([`ack`]), and what an ADT message means for the Encounter and the alert
//! ([`adt`]). Pure: the MLLP listener (`server::mllp`) frames the bytes, the application
//! (`server::app::adt`) resolves and writes.

pub mod ack;
pub mod adt;
pub mod message;
#[cfg(test)]
mod tests;

pub use ack::{AckCode, ack};
pub use adt::{Adt, Event};
pub use message::{ErrorCode, Header, Hl7Error, Location, Message};

/// A message refused: with AR (not understood or not taken) or AE (understood, not applied).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub ack: AckCode,
    pub error: Hl7Error,
}

/// Reads a message's bytes as far as the alliance needs: its header (for the acknowledgement,
/// whenever it can be read) and its ADT content, or the refusal.
pub fn read(bytes: &[u8]) -> (Option<Header>, Result<Adt, Refusal>) {
    let text = match message::decode(bytes) {
        Ok(t) => t,
        Err(error) => {
            let lossy = String::from_utf8_lossy(bytes);
            return (
                message::header(&lossy),
                Err(Refusal {
                    ack: AckCode::Rejected,
                    error,
                }),
            );
        }
    };
    let header = message::header(&text);
    let parsed = match message::parse(&text) {
        Ok(m) => m,
        Err(error) => {
            return (
                header,
                Err(Refusal {
                    ack: AckCode::Rejected,
                    error,
                }),
            );
        }
    };
    (header, adt::read(&parsed))
}

/// An HL7 DTM of an instant, in UTC (`20261202184500+0000`).
pub fn dtm_of(ms: i64) -> String {
    let days = ms.div_euclid(86_400_000);
    let (y, m, d) = crate::slots::civil_from_days(days);
    let rest = ms.rem_euclid(86_400_000) / 1000;
    format!(
        "{y:04}{m:02}{d:02}{:02}{:02}{:02}+0000",
        rest / 3600,
        rest / 60 % 60,
        rest % 60
    )
}
