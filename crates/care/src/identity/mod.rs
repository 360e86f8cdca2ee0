//! Patient identity (product C6): deciding whether two records name the same person — pure,
//! no I/O. `normalize` prepares field values, `compare` turns a pair of records into agreement
//! levels, `model` is the Fellegi–Sunter model (u from random pairs, m and λ by EM, term
//! frequencies, grades), and `link` runs the whole linkage of record sets with several
//! blocking keys.

pub mod compare;
pub mod link;
pub mod model;
pub mod normalize;
pub mod patient;
pub mod review;

pub use compare::{Field, Prepared, Record, compare, prepare, prepare_with, share_identifier};
pub use link::{Link, LinkConfig, Linked, judge, link, score_pair};
pub use model::{Grade, Model, Thresholds};
pub use normalize::NameRules;
