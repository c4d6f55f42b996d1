//! PostgreSQL errors as store errors, and which of them a retry can cure.

use pushgate_api::error::StoreError;
use tokio_postgres::error::SqlState;

/// A failed statement.
pub fn query(e: &tokio_postgres::Error) -> StoreError {
    match e.as_db_error() {
        Some(db) => StoreError::Backend(format!(
            "PostgreSQL: {} ({})",
            db.message(),
            db.code().code()
        )),
        None => StoreError::Backend(format!("PostgreSQL unreachable: {e}")),
    }
}

/// No connection from the pool.
pub fn pool(e: deadpool_postgres::PoolError) -> StoreError {
    StoreError::Backend(format!("PostgreSQL unreachable: {e}"))
}

/// Whether the connection failed (not the statement): closed, never made, or ended by a
/// server shutting down or starting up.
pub fn is_connection(e: &tokio_postgres::Error) -> bool {
    e.is_closed()
        || e.as_db_error().is_none()
        || matches!(
            e.code(),
            Some(c) if *c == SqlState::ADMIN_SHUTDOWN
                || *c == SqlState::CRASH_SHUTDOWN
                || *c == SqlState::CANNOT_CONNECT_NOW
        )
}

/// Whether running the transaction again may succeed: a deadlock, a serialization failure,
/// or a unique key another transaction took first.
pub fn is_race(e: &tokio_postgres::Error) -> bool {
    matches!(
        e.code(),
        Some(c) if *c == SqlState::T_R_SERIALIZATION_FAILURE
            || *c == SqlState::T_R_DEADLOCK_DETECTED
            || *c == SqlState::UNIQUE_VIOLATION
    )
}
