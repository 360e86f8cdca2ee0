//! Integration tests of the HTTP API: the real server on port 0, a fresh database per test, each
//! test on SQLite and on PostgreSQL.

mod helpers;

mod access;
mod bad_input;
mod booking;
mod bundles;
mod conformance;
mod console;
mod crud;
mod examples;
mod export;
mod findcare;
mod fuzz;
mod hl7;
mod house;
mod identity;
mod leaks;
mod measures;
mod ops;
mod policy_matrix;
mod referrals;
mod search;
mod transition;
mod visits;
