//! The register of FHIR Bulk Data export jobs (`bulk_export`): one row per `$export` kick-off —
//! who asked (the caller, kept to run the export under the same view), what was asked (the
//! request as JSON), where it stands, the files written so far — so that a job survives a
//! restart. A worker takes a job by a lease (a job whose lease lapsed — its worker died — is
//! taken again) and records each finished resource type, so a restarted job goes on from the
//! type it was writing.

use crate::db::SqlValue;
use crate::error::StoreError;
use crate::tx::Tx;

/// An export job as registered.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportJob {
    pub id: String,
    /// The subject id of the caller who asked (`client:…`, a user id): only they see the job.
    pub owner: String,
    /// The caller (subject and policy) as JSON, to export under their view.
    pub caller: String,
    /// The kick-off request URL, for the manifest's `request`.
    pub request_url: String,
    /// What was asked (level, types, `_since`, filters, patients) as JSON.
    pub params: String,
    /// `accepted`, `in-progress`, `completed`, `failed` or `cancelled`.
    pub status: String,
    /// The manifest's `transactionTime` (the kick-off).
    pub transaction_ms: i64,
    pub created_ms: i64,
    pub updated_ms: i64,
    /// When the worker's claim lapses (0: nobody holds the job).
    pub lease_ms: i64,
    /// The types finished, with their files, as a JSON array.
    pub output: String,
    /// Why it failed, in words.
    pub message: Option<String>,
}

const COLUMNS: &str = "id, owner, caller, request_url, params, status, transaction_ms, created_ms, updated_ms, lease_ms, output, message";

fn row(r: Vec<SqlValue>) -> Option<ExportJob> {
    let mut it = r.into_iter();
    Some(ExportJob {
        id: it.next()?.into_string()?,
        owner: it.next()?.into_string()?,
        caller: it.next()?.into_string()?,
        request_url: it.next()?.into_string()?,
        params: it.next()?.into_string()?,
        status: it.next()?.into_string()?,
        transaction_ms: it.next()?.as_i64()?,
        created_ms: it.next()?.as_i64()?,
        updated_ms: it.next()?.as_i64()?,
        lease_ms: it.next()?.as_i64()?,
        output: it.next()?.into_string()?,
        message: it.next().and_then(SqlValue::into_string),
    })
}

/// The states a worker may take a job in.
const RUNNABLE: &str = "status IN ('accepted', 'in-progress')";

impl Tx<'_> {
    /// Registers a job.
    pub fn export_add(&mut self, job: &ExportJob) -> Result<(), StoreError> {
        self.conn().execute(
            &format!(
                "INSERT INTO bulk_export ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            ),
            &[
                job.id.as_str().into(),
                job.owner.as_str().into(),
                job.caller.as_str().into(),
                job.request_url.as_str().into(),
                job.params.as_str().into(),
                job.status.as_str().into(),
                job.transaction_ms.into(),
                job.created_ms.into(),
                job.updated_ms.into(),
                job.lease_ms.into(),
                job.output.as_str().into(),
                job.message.as_deref().into(),
            ],
        )?;
        Ok(())
    }

    /// A job by its id.
    pub fn export_job(&mut self, id: &str) -> Result<Option<ExportJob>, StoreError> {
        let rows = self.conn().query(
            &format!("SELECT {COLUMNS} FROM bulk_export WHERE id = ?"),
            &[id.into()],
        )?;
        Ok(rows.into_iter().next().and_then(row))
    }

    /// How many of an owner's jobs are waiting or running.
    pub fn export_running(&mut self, owner: &str) -> Result<i64, StoreError> {
        let rows = self.conn().query(
            &format!("SELECT COUNT(*) FROM bulk_export WHERE owner = ? AND {RUNNABLE}"),
            &[owner.into()],
        )?;
        Ok(rows
            .first()
            .and_then(|r| r.first())
            .and_then(SqlValue::as_i64)
            .unwrap_or(0))
    }

    /// Takes the oldest runnable job nobody holds (or whose holder's lease lapsed) until
    /// `lease_ms`; `None` when there is none.
    pub fn export_claim(
        &mut self,
        now_ms: i64,
        lease_ms: i64,
    ) -> Result<Option<ExportJob>, StoreError> {
        let rows = self.conn().query(
            &format!(
                "SELECT {COLUMNS} FROM bulk_export WHERE {RUNNABLE} AND lease_ms < ? ORDER BY created_ms, id LIMIT 1"
            ),
            &[now_ms.into()],
        )?;
        let Some(mut job) = rows.into_iter().next().and_then(row) else {
            return Ok(None);
        };
        // the lease is taken only if nobody took it in between (another server's worker)
        let taken = self.conn().execute(
            &format!(
                "UPDATE bulk_export SET status = 'in-progress', lease_ms = ?, updated_ms = ? WHERE id = ? AND {RUNNABLE} AND lease_ms < ?"
            ),
            &[lease_ms.into(), now_ms.into(), job.id.as_str().into(), now_ms.into()],
        )?;
        if taken == 0 {
            return Ok(None);
        }
        job.status = "in-progress".into();
        job.lease_ms = lease_ms;
        Ok(Some(job))
    }

    /// Records a finished type's files and releases the lease (the next step takes the job
    /// again), unless the job was cancelled meanwhile: whether it was recorded.
    pub fn export_progress(
        &mut self,
        id: &str,
        output: &str,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let n = self.conn().execute(
            &format!(
                "UPDATE bulk_export SET output = ?, updated_ms = ?, lease_ms = 0 WHERE id = ? AND {RUNNABLE}"
            ),
            &[output.into(), now_ms.into(), id.into()],
        )?;
        Ok(n > 0)
    }

    /// Extends a running job's lease (its worker is alive).
    pub fn export_renew(&mut self, id: &str, lease_ms: i64) -> Result<(), StoreError> {
        self.conn().execute(
            "UPDATE bulk_export SET lease_ms = ? WHERE id = ? AND status = 'in-progress'",
            &[lease_ms.into(), id.into()],
        )?;
        Ok(())
    }

    /// Ends a job (`completed`, `failed`, `cancelled`), releasing its lease; whether it was
    /// still running.
    pub fn export_finish(
        &mut self,
        id: &str,
        status: &str,
        message: Option<&str>,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let n = self.conn().execute(
            &format!(
                "UPDATE bulk_export SET status = ?, message = ?, updated_ms = ?, lease_ms = 0 WHERE id = ? AND {RUNNABLE}"
            ),
            &[status.into(), message.into(), now_ms.into(), id.into()],
        )?;
        Ok(n > 0)
    }

    /// Marks an ended job cancelled (its requester is done with it).
    pub fn export_cancel(&mut self, id: &str, now_ms: i64) -> Result<(), StoreError> {
        self.conn().execute(
            "UPDATE bulk_export SET status = 'cancelled', updated_ms = ?, lease_ms = 0 WHERE id = ?",
            &[now_ms.into(), id.into()],
        )?;
        Ok(())
    }

    /// Removes a job from the register.
    pub fn export_remove(&mut self, id: &str) -> Result<(), StoreError> {
        self.conn()
            .execute("DELETE FROM bulk_export WHERE id = ?", &[id.into()])?;
        Ok(())
    }

    /// Jobs that ended before `before_ms` (their files expire).
    pub fn export_expired(&mut self, before_ms: i64) -> Result<Vec<ExportJob>, StoreError> {
        let rows = self.conn().query(
            &format!(
                "SELECT {COLUMNS} FROM bulk_export WHERE NOT ({RUNNABLE}) AND updated_ms < ? ORDER BY updated_ms LIMIT 100"
            ),
            &[before_ms.into()],
        )?;
        Ok(rows.into_iter().filter_map(row).collect())
    }
}
