//! Embedded, versioned schema migrations, applied at open in one transaction under an
//! advisory lock: nodes starting at the same moment apply each version once, the others
//! wait and find it applied. A database migrated by a newer pushgate is refused.

use deadpool_postgres::Pool;
use pushgate_api::error::StoreError;

use crate::error;

/// The migrations, in order: `(version, name, sql)`.
pub const MIGRATIONS: &[(i32, &str, &str)] = &[
    (1, "initial", include_str!("../migrations/0001_initial.sql")),
    (
        2,
        "dispatchers",
        include_str!("../migrations/0002_dispatchers.sql"),
    ),
    (
        3,
        "gone_devices",
        include_str!("../migrations/0003_gone_devices.sql"),
    ),
    (
        4,
        "event_log",
        include_str!("../migrations/0004_event_log.sql"),
    ),
    (
        5,
        "write_guard",
        include_str!("../migrations/0005_write_guard.sql"),
    ),
];

/// The advisory lock key migrations hold ("pushgate" in ASCII).
const MIGRATION_LOCK: i64 = 0x7075_7368_6761_7465;

/// Brings the schema up to date; returns the versions it applied.
pub async fn run(pool: &Pool) -> Result<Vec<i32>, StoreError> {
    let mut client = pool.get().await.map_err(|e| {
        StoreError::Backend(format!(
            "cannot connect to PostgreSQL ([store] url): {}",
            error::pool(e)
        ))
    })?;
    let fail = |e: tokio_postgres::Error| {
        StoreError::Backend(format!("migrating the schema: {}", error::query(&e)))
    };
    let tx = client.transaction().await.map_err(fail)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(fail)?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS pushgate_migrations (
             version    integer PRIMARY KEY,
             name       text NOT NULL,
             applied_at timestamptz NOT NULL DEFAULT now()
         )",
    )
    .await
    .map_err(fail)?;
    let applied: Vec<i32> = tx
        .query(
            "SELECT version FROM pushgate_migrations ORDER BY version",
            &[],
        )
        .await
        .map_err(fail)?
        .iter()
        .map(|row| row.get(0))
        .collect();
    let known = MIGRATIONS.last().map(|(v, _, _)| *v).unwrap_or(0);
    if let Some(newest) = applied.iter().max().filter(|v| **v > known) {
        return Err(StoreError::Backend(format!(
            "the database schema is at version {newest}, newer than this pushgate knows \
             ({known}): run the newer pushgate, or another database"
        )));
    }
    let mut done = Vec::new();
    for (version, name, sql) in MIGRATIONS {
        if applied.contains(version) {
            continue;
        }
        tx.batch_execute(sql).await.map_err(fail)?;
        tx.execute(
            "INSERT INTO pushgate_migrations (version, name) VALUES ($1, $2)",
            &[version, name],
        )
        .await
        .map_err(fail)?;
        tracing::info!(version, name, "applied schema migration");
        done.push(*version);
    }
    tx.commit().await.map_err(fail)?;
    Ok(done)
}
