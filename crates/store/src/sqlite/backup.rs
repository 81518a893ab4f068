//! Online backup and restore of the SQLite store, through SQLite's backup
//! API.
//!
//! A backup copies every page of the database within one read transaction
//! of the source, so the copy is the database as of one commit: every
//! write acknowledged before the backup began is in it, none half. In WAL
//! mode a reader does not block the writer, so the server keeps serving
//! while the copy is made. A restore checks the copy first (the same
//! audit `creditd verify` runs) and only then writes it over the target.

use std::path::Path;

use rusqlite::backup::Backup;
use rusqlite::{Connection, OpenFlags};

use crate::StoreError;

/// What a backup or a restore copied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Copied {
    /// The database's pages.
    pub pages: i64,
    /// Their size, in bytes.
    pub bytes: i64,
    /// The newest transaction in the copy, if any.
    pub last_transaction: Option<i64>,
}

fn open_read_only(path: &Path) -> Result<Connection, StoreError> {
    if !path.exists() {
        return Err(StoreError::Internal(format!(
            "{} does not exist",
            path.display()
        )));
    }
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    Ok(conn)
}

/// Copies `from` into `to` in one step of the backup API: one read
/// transaction of `from`, so one consistent state of it.
fn copy(from: &Connection, to: &mut Connection) -> Result<(), StoreError> {
    let backup = Backup::new(from, to)?;
    // All pages at once: a step of every page holds one read transaction
    // of the source from start to end.
    backup.step(-1)?;
    Ok(())
}

fn describe(conn: &Connection) -> Result<Copied, StoreError> {
    let pages: i64 = conn.query_row("PRAGMA page_count", [], |r| r.get(0))?;
    let size: i64 = conn.query_row("PRAGMA page_size", [], |r| r.get(0))?;
    let has_journal: bool = conn.query_row(
        "SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = 'transactions'",
        [],
        |r| r.get(0),
    )?;
    let last_transaction = if has_journal {
        conn.query_row("SELECT max(id) FROM transactions", [], |r| r.get(0))?
    } else {
        None
    };
    Ok(Copied {
        pages,
        bytes: pages * size,
        last_transaction,
    })
}

/// Writes a consistent copy of the database at `from` to the new file `to`,
/// while `from` may be served.
pub fn backup(from: &Path, to: &Path) -> Result<Copied, StoreError> {
    if to.exists() {
        return Err(StoreError::Internal(format!(
            "{} exists already; a backup writes a new file",
            to.display()
        )));
    }
    let source = open_read_only(from)?;
    let mut target = Connection::open(to)?;
    copy(&source, &mut target)?;
    // The copy is a file of its own, whole without a WAL beside it.
    target.pragma_update(None, "journal_mode", "DELETE")?;
    describe(&target)
}

/// Writes the backup at `from` over the database at `to`, once the backup
/// passes the ledger's audit; `to` must not be served meanwhile. Answers
/// what was copied, or the audit's violations and nothing written.
pub fn restore(from: &Path, to: &Path) -> Result<Copied, StoreError> {
    let source = open_read_only(from)?;
    let report = super::read::audit(&source)?;
    if !report.is_clean() {
        return Err(StoreError::Corrupt(format!(
            "{} fails the audit ({} violations); nothing was restored",
            from.display(),
            report.violations.len() + report.orphans.len()
        )));
    }
    let mut target = Connection::open(to)?;
    target.busy_timeout(std::time::Duration::from_secs(5))?;
    copy(&source, &mut target)?;
    target.pragma_update(None, "journal_mode", "WAL")?;
    describe(&target)
}
