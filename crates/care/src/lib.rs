//! The alliance's rules, as pure code: nothing here does I/O or knows about HTTP or SQL.
//! Time comes from an injected [`Clock`], so every rule is testable at any instant.

pub mod access;
pub mod booking;
pub mod clock;
pub mod findcare;
pub mod geo;
pub mod identity;
pub mod labels;
pub mod notify;
pub mod profile;
pub mod relationships;
pub mod slots;
pub mod waitlist;

pub use clock::{Clock, FixedClock, SystemClock};
