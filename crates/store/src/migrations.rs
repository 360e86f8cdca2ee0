//! Versioned schema migrations, run at start-up: each in its own transaction, recorded in
//! `schema_migrations`, never downgrading. SQL is written once with a few dialect placeholders.

use crate::db::{Conn, Dialect};
use crate::error::StoreError;

/// A data step of a migration, run in its transaction.
type DataStep = fn(&mut dyn Conn) -> Result<(), StoreError>;

/// One schema step. Placeholders: `{pk}` an auto-assigned 64-bit primary key, `{pk_seq}` one
/// whose numbers are never reused, `{text_c}` text
/// compared byte-wise (ranges and prefixes), `{real}` a double.
struct Migration {
    version: i64,
    name: &'static str,
    sql: &'static str,
    /// Rows to derive in Rust after the SQL (what SQL alone cannot parse, such as JSON bodies).
    data: Option<DataStep>,
}

const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "resources, history and search index",
        sql: r#"
CREATE TABLE resources (
    rid {pk},
    rtype {text_c} NOT NULL,
    id {text_c} NOT NULL,
    version BIGINT NOT NULL,
    last_updated BIGINT NOT NULL,
    deleted BIGINT NOT NULL DEFAULT 0,
    body TEXT,
    UNIQUE (rtype, id)
);
CREATE INDEX resources_type_updated ON resources (rtype, last_updated);

CREATE TABLE history (
    hid {pk},
    rid BIGINT NOT NULL,
    rtype {text_c} NOT NULL,
    id {text_c} NOT NULL,
    version BIGINT NOT NULL,
    last_updated BIGINT NOT NULL,
    method TEXT NOT NULL,
    body TEXT,
    UNIQUE (rtype, id, version)
);
CREATE INDEX history_type_updated ON history (rtype, last_updated);
CREATE INDEX history_updated ON history (last_updated);

CREATE TABLE idx_string (
    rid BIGINT NOT NULL, rtype {text_c} NOT NULL, param {text_c} NOT NULL,
    norm {text_c} NOT NULL, exact {text_c} NOT NULL
);
CREATE INDEX idx_string_lookup ON idx_string (rtype, param, norm);
CREATE INDEX idx_string_rid ON idx_string (rid);

CREATE TABLE idx_token (
    rid BIGINT NOT NULL, rtype {text_c} NOT NULL, param {text_c} NOT NULL,
    system {text_c}, code {text_c}, text {text_c}
);
CREATE INDEX idx_token_lookup ON idx_token (rtype, param, code, system);
CREATE INDEX idx_token_rid ON idx_token (rid);

CREATE TABLE idx_reference (
    rid BIGINT NOT NULL, rtype {text_c} NOT NULL, param {text_c} NOT NULL,
    target_type {text_c}, target_id {text_c}, url {text_c}
);
CREATE INDEX idx_reference_lookup ON idx_reference (rtype, param, target_id, target_type);
CREATE INDEX idx_reference_url ON idx_reference (rtype, param, url);
CREATE INDEX idx_reference_target ON idx_reference (target_type, target_id);
CREATE INDEX idx_reference_rid ON idx_reference (rid);

CREATE TABLE idx_date (
    rid BIGINT NOT NULL, rtype {text_c} NOT NULL, param {text_c} NOT NULL,
    low BIGINT NOT NULL, high BIGINT NOT NULL
);
CREATE INDEX idx_date_low ON idx_date (rtype, param, low);
CREATE INDEX idx_date_high ON idx_date (rtype, param, high);
CREATE INDEX idx_date_rid ON idx_date (rid);

CREATE TABLE idx_number (
    rid BIGINT NOT NULL, rtype {text_c} NOT NULL, param {text_c} NOT NULL,
    value {real} NOT NULL
);
CREATE INDEX idx_number_lookup ON idx_number (rtype, param, value);
CREATE INDEX idx_number_rid ON idx_number (rid);

CREATE TABLE idx_quantity (
    rid BIGINT NOT NULL, rtype {text_c} NOT NULL, param {text_c} NOT NULL,
    value {real} NOT NULL, system {text_c}, code {text_c}
);
CREATE INDEX idx_quantity_lookup ON idx_quantity (rtype, param, code, value);
CREATE INDEX idx_quantity_rid ON idx_quantity (rid);

CREATE TABLE idx_uri (
    rid BIGINT NOT NULL, rtype {text_c} NOT NULL, param {text_c} NOT NULL,
    value {text_c} NOT NULL
);
CREATE INDEX idx_uri_lookup ON idx_uri (rtype, param, value);
CREATE INDEX idx_uri_rid ON idx_uri (rid);
"#,
        data: None,
    },
    Migration {
        version: 2,
        name: "access control: compartments, care relationships, identities, break-the-glass, audit chain",
        sql: r#"
CREATE TABLE compartments (rid BIGINT NOT NULL, patient_id {text_c} NOT NULL);
CREATE INDEX compartments_patient ON compartments (patient_id, rid);
CREATE INDEX compartments_rid ON compartments (rid);

CREATE TABLE care_relationships (
    patient_id {text_c} NOT NULL, organization_id {text_c} NOT NULL, source_rid BIGINT NOT NULL
);
CREATE INDEX care_relationships_org ON care_relationships (organization_id, patient_id);
CREATE INDEX care_relationships_patient ON care_relationships (patient_id);
CREATE INDEX care_relationships_source ON care_relationships (source_rid);

CREATE TABLE users (
    id {text_c} PRIMARY KEY,
    username {text_c} NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    display_name TEXT,
    roles TEXT NOT NULL,
    fhir_user TEXT,
    disabled BIGINT NOT NULL DEFAULT 0,
    failed_logins BIGINT NOT NULL DEFAULT 0,
    locked_until BIGINT,
    created_at BIGINT NOT NULL
);

CREATE TABLE sessions (
    token_hash {text_c} PRIMARY KEY,
    user_id {text_c} NOT NULL,
    csrf_token TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX sessions_user ON sessions (user_id);

CREATE TABLE api_clients (
    client_id {text_c} PRIMARY KEY,
    name TEXT NOT NULL,
    secret_hash TEXT NOT NULL,
    scopes TEXT NOT NULL,
    roles TEXT NOT NULL,
    fhir_user TEXT,
    disabled BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL
);

CREATE TABLE signing_keys (
    kid {text_c} PRIMARY KEY,
    algorithm TEXT NOT NULL,
    private_key TEXT NOT NULL,
    public_jwk TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    retired_at BIGINT
);

CREATE TABLE setup_tokens (token_hash {text_c} PRIMARY KEY, expires_at BIGINT NOT NULL);

CREATE TABLE break_glass (
    id {pk},
    subject {text_c} NOT NULL,
    patient_id {text_c} NOT NULL,
    reason TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX break_glass_subject ON break_glass (subject, expires_at);

CREATE TABLE audit_chain (
    seq {pk},
    rid BIGINT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
"#,
        data: None,
    },
    Migration {
        version: 3,
        name: "composite and position search indexes",
        sql: r#"
CREATE TABLE idx_composite (
    rid BIGINT NOT NULL, rtype {text_c} NOT NULL, param {text_c} NOT NULL,
    a_system {text_c}, a_code {text_c},
    b_system {text_c}, b_code {text_c}, b_num {real}, b_low BIGINT, b_high BIGINT, b_text {text_c}
);
CREATE INDEX idx_composite_lookup ON idx_composite (rtype, param, a_code, b_code);
CREATE INDEX idx_composite_rid ON idx_composite (rid);

CREATE TABLE idx_geo (
    rid BIGINT NOT NULL, rtype {text_c} NOT NULL, param {text_c} NOT NULL,
    lat {real} NOT NULL, lng {real} NOT NULL
);
CREATE INDEX idx_geo_lookup ON idx_geo (rtype, param, lat, lng);
CREATE INDEX idx_geo_rid ON idx_geo (rid);
"#,
        data: None,
    },
    Migration {
        version: 4,
        name: "date ranges split by width; resources in id order per type",
        // A date row spanning at most 367 days is `narrow`: a bound on its `high` bounds
        // its `low` too, so any date condition becomes one range on (param, wide=0, low).
        // The few wide rows (long periods) are found by either end.
        sql: r#"
ALTER TABLE idx_date ADD COLUMN wide BIGINT NOT NULL DEFAULT 0;
UPDATE idx_date SET wide = 1 WHERE high - low > 31708800000;
DROP INDEX idx_date_low;
DROP INDEX idx_date_high;
CREATE INDEX idx_date_low ON idx_date (rtype, param, wide, low);
CREATE INDEX idx_date_high ON idx_date (rtype, param, wide, high);
CREATE INDEX resources_type_rid ON resources (rtype, deleted, rid);
DROP INDEX idx_reference_target;
DROP INDEX idx_reference_url;
CREATE INDEX idx_reference_url ON idx_reference (rtype, param, url) WHERE url IS NOT NULL;
"#,
        data: None,
    },
    Migration {
        version: 5,
        name: "date rows in three width classes; covering lookup indexes",
        // `wide` becomes a class: 0 spans at most a day, 1 at most 367 days, 2 more. The
        // lookup indexes end with the resource's row id, so collecting a condition's matches
        // reads the index alone.
        sql: r#"
UPDATE idx_date SET wide = CASE WHEN high - low <= 86400000 THEN 0 WHEN high - low <= 31708800000 THEN 1 ELSE 2 END;
DROP INDEX idx_date_low;
DROP INDEX idx_date_high;
CREATE INDEX idx_date_low ON idx_date (rtype, param, wide, low, high, rid);
CREATE INDEX idx_date_high ON idx_date (rtype, param, wide, high, low, rid);
DROP INDEX idx_string_lookup;
CREATE INDEX idx_string_lookup ON idx_string (rtype, param, norm, rid);
DROP INDEX idx_token_lookup;
CREATE INDEX idx_token_lookup ON idx_token (rtype, param, code, system, rid);
DROP INDEX idx_reference_lookup;
CREATE INDEX idx_reference_lookup ON idx_reference (rtype, param, target_id, target_type, rid);
DROP INDEX idx_reference_url;
CREATE INDEX idx_reference_url ON idx_reference (rtype, param, url, rid) WHERE url IS NOT NULL;
DROP INDEX idx_number_lookup;
CREATE INDEX idx_number_lookup ON idx_number (rtype, param, value, rid);
DROP INDEX idx_quantity_lookup;
CREATE INDEX idx_quantity_lookup ON idx_quantity (rtype, param, code, value, rid);
DROP INDEX idx_uri_lookup;
CREATE INDEX idx_uri_lookup ON idx_uri (rtype, param, value, rid);
"#,
        data: None,
    },
    Migration {
        version: 6,
        name: "free slots by schedule and start",
        // one row per free Slot, kept with each Slot version: the first free slot of a
        // schedule is one index seek
        sql: r#"
CREATE TABLE slot_free (
    rid BIGINT NOT NULL,
    schedule_id {text_c} NOT NULL,
    start_ms BIGINT NOT NULL,
    end_ms BIGINT NOT NULL,
    slot_id {text_c} NOT NULL
);
CREATE INDEX slot_free_schedule ON slot_free (schedule_id, start_ms);
CREATE INDEX slot_free_rid ON slot_free (rid);
"#,
        // the rows are (re)built by migration 8, which adds a column
        data: None,
    },
    Migration {
        version: 7,
        name: "directory version",
        // bumped in the transaction of every write to the directory types the care finder
        // caches, so a cached snapshot is checked with one read, on any number of servers
        sql: r#"
CREATE TABLE directory_version (
    id BIGINT PRIMARY KEY,
    version BIGINT NOT NULL
);
INSERT INTO directory_version (id, version) VALUES (1, 0);
"#,
        data: None,
    },
    Migration {
        version: 8,
        name: "held slots, video rooms and the notification outbox",
        // a held slot is listed with its hold's expiry, so a lapsed hold reads as free before
        // the sweeper frees it; a video visit's room token finds its appointment; messages are
        // written in the transaction of the change they announce and delivered from here
        sql: r#"
ALTER TABLE slot_free ADD COLUMN hold_until BIGINT;
DELETE FROM slot_free;
CREATE TABLE video_visit (
    token {text_c} PRIMARY KEY,
    appointment_id {text_c} NOT NULL
);
CREATE UNIQUE INDEX video_visit_appointment ON video_visit (appointment_id);
CREATE TABLE outbox (
    id {text_c} PRIMARY KEY,
    event_key {text_c} NOT NULL,
    recipient {text_c} NOT NULL,
    kind {text_c} NOT NULL,
    channel {text_c} NOT NULL,
    target TEXT,
    communication_id {text_c},
    payload TEXT NOT NULL,
    due_ms BIGINT NOT NULL,
    attempts BIGINT NOT NULL,
    state {text_c} NOT NULL,
    last_error TEXT,
    sent_ms BIGINT,
    created_ms BIGINT NOT NULL
);
CREATE UNIQUE INDEX outbox_event ON outbox (event_key, recipient);
CREATE INDEX outbox_due ON outbox (state, due_ms);
"#,
        data: Some(backfill_slot_free),
    },
    Migration {
        version: 9,
        name: "identity links and the review queue",
        // every pair the linkage engine has graded at least possible: auto-linked (certain),
        // waiting for a person (probable, possible), or decided — the register of links, so
        // that each can be undone
        sql: r#"
CREATE TABLE identity_review (
    id {text_c} PRIMARY KEY,
    left_id {text_c} NOT NULL,
    right_id {text_c} NOT NULL,
    score {real} NOT NULL,
    grade {text_c} NOT NULL,
    state {text_c} NOT NULL,
    created_ms BIGINT NOT NULL,
    decided_ms BIGINT,
    decided_by {text_c}
);
CREATE UNIQUE INDEX identity_review_pair ON identity_review (left_id, right_id);
CREATE INDEX identity_review_state ON identity_review (state, created_ms);
CREATE INDEX identity_review_right ON identity_review (right_id);
"#,
        data: None,
    },
    Migration {
        version: 10,
        name: "identity blocking keys",
        // each Patient's blocking keys (care::identity::link::blocking_keys, 64-bit FNV-1a):
        // a Patient write compares the new record only with the Patients of its keys' blocks,
        // and skips a block grown past the cap — the cost of a write is bounded whatever the
        // data
        sql: r#"
CREATE TABLE identity_key (
    key BIGINT NOT NULL,
    patient_id {text_c} NOT NULL,
    PRIMARY KEY (key, patient_id)
);
CREATE INDEX identity_key_patient ON identity_key (patient_id);
"#,
        data: Some(crate::identity_links::backfill_identity_keys),
    },
    Migration {
        version: 11,
        name: "database identity",
        // a random value naming this database: the server reports it at /healthz, so a
        // command run against another database than the running server's can say so
        sql: r#"
CREATE TABLE database_identity (
    id BIGINT PRIMARY KEY,
    value {text_c} NOT NULL
);
"#,
        data: Some(name_the_database),
    },
    Migration {
        version: 12,
        name: "the audit trail in a store of its own: writes' events pending until sealed",
        // a write's AuditEvent is stored here in the write's transaction and moved into the
        // audit store's chain after commit; the sequence never reuses a number (the writer
        // removes the rows up to the last one sealed)
        sql: r#"
CREATE TABLE audit_pending (
    pseq {pk_seq},
    id {text_c} NOT NULL,
    body TEXT NOT NULL
);
"#,
        data: None,
    },
    Migration {
        version: 13,
        name: "the referral register",
        // one row per referral Task (focus = a ServiceRequest), derived from its JSON with
        // each version (store::referrals): worklists and measures read it, not Task bodies;
        // `next_due_ms` is set exactly while the referral is open (a far-future value when
        // nothing more is due), so each worklist is one ordered range of an index;
        // `flag` is what the service-level job last marked (at-risk, overdue) and for which
        // due time
        sql: r#"
CREATE TABLE referrals (
    rid BIGINT PRIMARY KEY,
    task_id {text_c} NOT NULL,
    patient_id {text_c} NOT NULL,
    requester_org {text_c} NOT NULL,
    owner_org {text_c} NOT NULL,
    service {text_c} NOT NULL,
    priority {text_c} NOT NULL,
    status {text_c} NOT NULL,
    business_status {text_c},
    authored_ms BIGINT NOT NULL,
    accepted_ms BIGINT,
    booked_ms BIGINT,
    seen_ms BIGINT,
    reported_ms BIGINT,
    closed_ms BIGINT,
    accept_due_ms BIGINT NOT NULL,
    book_due_ms BIGINT NOT NULL,
    seen_due_ms BIGINT NOT NULL,
    next_due_ms BIGINT,
    flag {text_c},
    flagged_due_ms BIGINT
);
CREATE UNIQUE INDEX referrals_task ON referrals (task_id);
CREATE INDEX referrals_owner_due ON referrals (owner_org, next_due_ms, task_id);
CREATE INDEX referrals_owner_closed ON referrals (owner_org, closed_ms, task_id);
CREATE INDEX referrals_requester_due ON referrals (requester_org, next_due_ms, task_id);
CREATE INDEX referrals_requester_closed ON referrals (requester_org, closed_ms, task_id);
CREATE INDEX referrals_measures ON referrals (authored_ms, rid, task_id, patient_id, requester_org, owner_org, service, priority, status, accepted_ms, booked_ms, seen_ms, reported_ms, closed_ms, accept_due_ms, book_due_ms, seen_due_ms);
CREATE INDEX referrals_due ON referrals (next_due_ms);
"#,
        data: Some(crate::referrals::backfill),
    },
    Migration {
        version: 14,
        name: "the register of HL7 v2 messages received",
        // one row per message applied or held (store::hospital_events), unique on the sender
        // and its control id so a resent message changes nothing; the text kept for replay
        sql: r#"
CREATE TABLE hl7_message (
    id {text_c} PRIMARY KEY,
    sender {text_c} NOT NULL,
    control_id {text_c} NOT NULL,
    received_ms BIGINT NOT NULL,
    event {text_c} NOT NULL,
    state {text_c} NOT NULL,
    patient_id {text_c},
    encounter_id {text_c},
    detail TEXT NOT NULL,
    raw TEXT NOT NULL
);
CREATE UNIQUE INDEX hl7_message_key ON hl7_message (sender, control_id);
CREATE INDEX hl7_message_state ON hl7_message (state, patient_id, received_ms);
CREATE INDEX hl7_message_received ON hl7_message (received_ms);
"#,
        data: None,
    },
    Migration {
        version: 15,
        name: "the register of Bulk Data export jobs",
        // one row per $export kick-off (store::exports): who asked, what, where it stands and
        // the files written so far, so that a job survives a restart
        sql: r#"
CREATE TABLE bulk_export (
    id {text_c} PRIMARY KEY,
    owner {text_c} NOT NULL,
    caller TEXT NOT NULL,
    request_url TEXT NOT NULL,
    params TEXT NOT NULL,
    status {text_c} NOT NULL,
    transaction_ms BIGINT NOT NULL,
    created_ms BIGINT NOT NULL,
    updated_ms BIGINT NOT NULL,
    lease_ms BIGINT NOT NULL,
    output TEXT NOT NULL,
    message TEXT
);
CREATE INDEX bulk_export_status ON bulk_export (status, created_ms);
CREATE INDEX bulk_export_owner ON bulk_export (owner, status);
"#,
        data: None,
    },
];

fn name_the_database(conn: &mut dyn Conn) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO database_identity (id, value) VALUES (1, ?)",
        &[uuid::Uuid::new_v4().to_string().into()],
    )?;
    Ok(())
}

/// Fills `slot_free` from the Slots already stored (free ones, and held ones with their expiry).
fn backfill_slot_free(conn: &mut dyn Conn) -> Result<(), StoreError> {
    let rows = conn.query(
        "SELECT rid, id, body FROM resources WHERE rtype = 'Slot' AND deleted = 0",
        &[],
    )?;
    for row in rows {
        let mut it = row.into_iter();
        let (Some(rid), Some(id), Some(body)) = (
            it.next().and_then(|v| v.as_i64()),
            it.next().and_then(crate::db::SqlValue::into_string),
            it.next().and_then(crate::db::SqlValue::into_string),
        ) else {
            continue;
        };
        let Ok(slot) = serde_json::from_str::<serde_json::Value>(&body) else {
            continue;
        };
        if let Some(free) = crate::directory::FreeSlot::of(&id, &slot) {
            free.insert(conn, rid)?;
        }
    }
    Ok(())
}

/// The newest schema version this binary knows.
pub fn latest_version() -> i64 {
    MIGRATIONS.last().map(|m| m.version).unwrap_or(0)
}

fn render(sql: &str, dialect: Dialect) -> String {
    let (pk, pk_seq, text_c, real) = match dialect {
        Dialect::Sqlite => (
            "INTEGER PRIMARY KEY",
            "INTEGER PRIMARY KEY AUTOINCREMENT",
            "TEXT",
            "REAL",
        ),
        Dialect::Postgres => (
            "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY",
            "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY",
            "TEXT COLLATE \"C\"",
            "DOUBLE PRECISION",
        ),
    };
    sql.replace("{pk_seq}", pk_seq)
        .replace("{pk}", pk)
        .replace("{text_c}", text_c)
        .replace("{real}", real)
}

/// Brings the schema up to date; returns the versions applied.
pub fn migrate(conn: &mut dyn Conn) -> Result<Vec<i64>, StoreError> {
    conn.batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
            version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)",
    )?;
    let rows = conn.query("SELECT MAX(version) FROM schema_migrations", &[])?;
    let current = rows
        .first()
        .and_then(|r| r.first())
        .and_then(|v| v.as_i64())
        .unwrap_or(0);
    if current > latest_version() {
        return Err(StoreError::SchemaTooNew {
            found: current,
            known: latest_version(),
        });
    }
    let mut applied = Vec::new();
    for m in MIGRATIONS.iter().filter(|m| m.version > current) {
        let begin = match conn.dialect() {
            Dialect::Sqlite => "BEGIN IMMEDIATE",
            Dialect::Postgres => "BEGIN",
        };
        conn.batch(begin)?;
        let result = (|| {
            if conn.dialect() == Dialect::Postgres {
                // one migrator at a time when several servers start together
                conn.batch("LOCK TABLE schema_migrations IN EXCLUSIVE MODE")?;
                let again = conn.query(
                    "SELECT COUNT(*) FROM schema_migrations WHERE version = ?",
                    &[m.version.into()],
                )?;
                if again[0][0].as_i64() != Some(0) {
                    return Ok(false);
                }
            }
            conn.batch(&render(m.sql, conn.dialect()))?;
            if let Some(data) = m.data {
                data(conn)?;
            }
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as i64)
                .unwrap_or(0);
            conn.execute(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                &[m.version.into(), m.name.into(), now.into()],
            )?;
            Ok(true)
        })();
        match result {
            Ok(done) => {
                conn.batch("COMMIT")?;
                if done {
                    applied.push(m.version);
                }
            }
            Err(e) => {
                let _ = conn.batch("ROLLBACK");
                return Err(e);
            }
        }
    }
    Ok(applied)
}
