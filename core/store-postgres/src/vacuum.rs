//! The queue tables churn: every message inserts and deletes rows in `outbox` and `events`,
//! and their claims scan by time from the oldest row, through every row deleted since the
//! table was last vacuumed. Autovacuum looks at a table once a
//! minute at most (`autovacuum_naptime`), so at a few hundred messages a second a claim read
//! thousands of dead index entries. Each node looks every second and vacuums a table that
//! holds [`DEAD_ROWS`] dead rows or more (skipping one another node is vacuuming; the count
//! drops with the vacuum, so nodes do not repeat it), so claims read live rows and little else.

use std::sync::{Arc, Weak};
use std::time::Duration;

use deadpool_postgres::Pool;

use crate::availability::Availability;

/// How often the queue tables are looked at.
const EVERY: Duration = Duration::from_secs(1);

/// Dead rows from which a queue table is vacuumed.
const DEAD_ROWS: i64 = 1000;

/// The queue tables.
const TABLES: [&str; 2] = ["outbox", "events"];

/// Looks at the queue tables every second while the store lives.
pub fn start(pool: Pool, availability: &Arc<Availability>) {
    let alive: Weak<Availability> = Arc::downgrade(availability);
    tokio::spawn(async move {
        let mut warned = false;
        loop {
            tokio::time::sleep(EVERY).await;
            if alive.upgrade().is_none() || pool.is_closed() {
                return;
            }
            let run = async {
                let client = pool.get().await.map_err(crate::error::pool)?;
                let dead = client
                    .query(
                        "SELECT relname::text FROM pg_stat_user_tables
                         WHERE relname = ANY($1) AND n_dead_tup >= $2",
                        &[&&TABLES[..], &DEAD_ROWS],
                    )
                    .await
                    .map_err(|e| crate::error::query(&e))?;
                for row in dead {
                    let name: &str = row.get(0);
                    // Only a name of ours goes into the statement. No truncation: it would
                    // wait for, then block, every claim and insert on the table.
                    if let Some(table) = TABLES.iter().find(|t| **t == name) {
                        client
                            .simple_query(&format!("VACUUM (SKIP_LOCKED, TRUNCATE false) {table}"))
                            .await
                            .map_err(|e| crate::error::query(&e))?;
                    }
                }
                Ok::<(), pushgate_api::error::StoreError>(())
            };
            match tokio::time::timeout(EVERY * 10, run).await {
                Ok(Ok(_)) => warned = false,
                // The health check reports an unreachable database; a vacuum refused for
                // another reason (not the tables' owner) is said once.
                Ok(Err(e)) if !warned => {
                    tracing::warn!(error = %e, "vacuuming the queue tables failed; autovacuum is left to it");
                    warned = true;
                }
                Ok(Err(e)) => tracing::debug!(error = %e, "vacuuming the queue tables failed"),
                Err(_) => tracing::debug!("vacuuming the queue tables took over 10 s"),
            }
        }
    });
}
