//! The alliance's rules, as pure code: nothing here does I/O or knows about HTTP or SQL.
//! Time comes from an injected [`Clock`], so every rule is testable at any instant.

pub mod access;
pub mod booking;
pub mod clock;
pub mod findcare;
pub mod geo;
pub mod hl7;
pub mod identity;
pub mod labels;
pub mod measures;
pub mod notify;
pub mod plausible;
pub mod profile;
pub mod referral;
pub mod relationships;
pub mod slots;
pub mod transition;
pub mod waitlist;

pub use clock::{Clock, FixedClock, SystemClock};

/// 64-bit FNV-1a of some bytes: a hash that is the same on every build and machine, for
/// values that are stored (identity blocking keys) or shared between servers (advisory locks).
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in bytes {
        h ^= *b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}
