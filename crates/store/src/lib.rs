//! The versioned FHIR resource store: resources as JSON in a current table and a history
//! table, search index rows written in the same transaction, and search over them. One
//! implementation for SQLite (embedded default) and PostgreSQL, behind one SQL surface.

pub mod access;
pub mod accounts;
pub mod audit;
pub mod db;
mod directory;
pub mod error;
mod exports;
mod filter;
mod hospital_events;
mod identity_links;
mod index_rows;
pub mod measures;
pub mod migrations;
mod outbox;
mod pool;
mod postgres;
mod record;
pub mod referrals;
mod search;
mod sqlite;
mod tx;
mod wal;

pub use access::{AuditTrail, Caller, CallerTx, OnBehalf, Refusal, WritePermit};
pub use db::{Conn, Dialect, Row, SqlValue};
pub use error::StoreError;
pub use exports::ExportJob;
pub use hospital_events::Hl7Message;
pub use identity_links::IdentityPair;
pub use outbox::{Message, NewMessage};
pub use pool::{DatabaseUrl, Store, StoreOptions, audit_path};
pub use tx::{
    DIRECTORY_SNAPSHOT_TYPES, HistoryEntry, HistoryPage, HistoryScope, INDEX_TABLES, Method,
    NewResource, SearchPage, Stored, Tx,
};
