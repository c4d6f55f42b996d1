//! The queue tables churn: every message inserts and deletes rows in `outbox` and `events`,
//! and their claims scan by time from the oldest row, through every row deleted since the
//! table was last vacuumed. Autovacuum looks at a table once a
//! minute at most (`autovacuum_naptime`), so at a few hundred messages a second a claim read
//! thousands of dead index entries. Each node vacuums those tables every second (skipping a
//! table another node is vacuuming), so claims read live rows and little else.

use std::sync::{Arc, Weak};
use std::time::Duration;

use deadpool_postgres::Pool;

use crate::availability::Availability;

/// How often the queue tables are vacuumed.
const EVERY: Duration = Duration::from_secs(1);

const VACUUM: &str = "VACUUM (SKIP_LOCKED, TRUNCATE false) outbox, events";

/// Vacuums the queue tables every second while the store lives.
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
                client
                    .simple_query(VACUUM)
                    .await
                    .map_err(|e| crate::error::query(&e))
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
