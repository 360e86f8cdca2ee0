//! The versioned FHIR resource store: resources as JSON in a current table and a history
//! table, search index rows written in the same transaction, and search over them. One
//! implementation for SQLite (embedded default) and PostgreSQL, behind one SQL surface.

pub mod access;
pub mod audit;
pub mod db;
pub mod error;
pub mod identity;
mod identity_links;
pub mod migrations;
mod outbox;
mod pool;
mod postgres;
mod search_sql;
mod sqlite;
mod tx;

pub use access::{AuditTrail, Caller, CallerTx, Refusal, WritePermit};
pub use db::{Conn, Dialect, Row, SqlValue};
pub use error::StoreError;
pub use identity_links::IdentityPair;
pub use outbox::{Message, NewMessage};
pub use pool::{DatabaseUrl, Store, StoreOptions};
pub use tx::{
    DIRECTORY_SNAPSHOT_TYPES, HistoryEntry, HistoryPage, HistoryScope, INDEX_TABLES, Method,
    NewResource, SearchPage, Stored, Tx,
};
