//! The write-ahead log's bookkeeping between a SQLite database's checkpoint thread, which copies
//! the log back into the file, and the log's one writer, which rewinds it (the resource
//! database's writer; the audit store's appender).

use crate::db::Conn;

/// The write-ahead log's state as the checkpoint thread last saw it: frames in the log, and
/// frames already copied into the database file.
#[derive(Default)]
pub(crate) struct WalState {
    pub(crate) log: std::sync::atomic::AtomicI64,
    pub(crate) copied: std::sync::atomic::AtomicI64,
}

impl WalState {
    /// Rewinds a large write-ahead log once the checkpoint thread has copied it (run by the
    /// log's only writer, between its commits: a RESTART checkpoint then has little left to
    /// copy and only waits for readers).
    pub(crate) fn rewind_if_copied(&self, conn: &mut dyn Conn, sql: &str) {
        let log = self.log.load(std::sync::atomic::Ordering::Relaxed);
        let copied = self.copied.load(std::sync::atomic::Ordering::Relaxed);
        if log > WAL_REWIND_FRAMES && log - copied < 2_048 {
            let _ = conn.batch(sql);
            self.log.store(0, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

/// Frames (of 4 KiB) past which the writer rewinds the log once it has been copied.
const WAL_REWIND_FRAMES: i64 = 16_384;
