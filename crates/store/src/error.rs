//! Store errors: failures of the storage itself, never rejections of the ledger.

/// Why the store could not do what was asked. A rejection by the ledger is
/// not a store error: it is an answer, carried in [`crate::Executed`].
#[derive(Clone, Debug, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be reached or written right now (locked, gone,
    /// out of disk). Nothing was applied; retrying later may succeed.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// Stored data does not decode: a bug or a damaged database.
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// Anything else: a bug in a query or an unexpected database state.
    #[error("store error: {0}")]
    Internal(String),
    /// The store is shutting down or its writer has stopped.
    #[error("store closed")]
    Closed,
}

impl From<rusqlite::Error> for StoreError {
    fn from(error: rusqlite::Error) -> Self {
        use rusqlite::ErrorCode;
        match &error {
            rusqlite::Error::SqliteFailure(e, _)
                if matches!(
                    e.code,
                    ErrorCode::DatabaseBusy
                        | ErrorCode::DatabaseLocked
                        | ErrorCode::DiskFull
                        | ErrorCode::SystemIoFailure
                        | ErrorCode::CannotOpen
                        | ErrorCode::ReadOnly
                        | ErrorCode::OutOfMemory
                ) =>
            {
                StoreError::Unavailable(error.to_string())
            }
            rusqlite::Error::FromSqlConversionFailure(..)
            | rusqlite::Error::InvalidColumnType(..)
            | rusqlite::Error::IntegralValueOutOfRange(..) => {
                StoreError::Corrupt(error.to_string())
            }
            _ => StoreError::Internal(error.to_string()),
        }
    }
}
