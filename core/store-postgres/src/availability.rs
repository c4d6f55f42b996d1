//! Whether the database answers: set by failed requests and a once-a-second check, read by
//! `/readyz` (through `DeliveryStore::unavailable`).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use deadpool_postgres::Pool;
use pushgate_api::error::StoreError;

/// How often the health check runs.
const CHECK_EVERY: Duration = Duration::from_secs(1);

#[derive(Default)]
pub struct Availability {
    down: Mutex<Option<String>>,
}

impl Availability {
    fn slot(&self) -> std::sync::MutexGuard<'_, Option<String>> {
        self.down.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Why the database is unreachable, if it is.
    pub fn reason(&self) -> Option<String> {
        self.slot().clone()
    }

    pub fn down(&self, error: &StoreError) {
        let mut slot = self.slot();
        if slot.is_none() {
            tracing::warn!(error = %error, "PostgreSQL is unreachable; requests answer 503 until it is back");
        }
        *slot = Some(error.to_string());
    }

    pub fn up(&self) {
        let mut slot = self.slot();
        if slot.take().is_some() {
            tracing::info!("PostgreSQL is reachable again");
        }
    }

    /// Checks the database every second while the pool lives.
    pub fn watch(self: &Arc<Self>, pool: Pool) {
        let me = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(CHECK_EVERY).await;
                let Some(me) = me.upgrade() else { return };
                if pool.is_closed() {
                    return;
                }
                let check = async {
                    let client = pool.get().await.map_err(crate::error::pool)?;
                    client
                        .simple_query("SELECT 1")
                        .await
                        .map_err(|e| crate::error::query(&e))
                };
                match tokio::time::timeout(CHECK_EVERY * 5, check).await {
                    Ok(Ok(_)) => me.up(),
                    Ok(Err(e)) => me.down(&e),
                    Err(_) => me.down(&StoreError::Backend(
                        "PostgreSQL did not answer a health check within 5 s".into(),
                    )),
                }
            }
        });
    }
}
