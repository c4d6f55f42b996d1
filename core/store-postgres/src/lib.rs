//! pushgate-store-postgres: the store contract on PostgreSQL, shared by several gateway
//! processes on one database.
//!
//! - Writes go through a group-commit writer ([`writer`]): the `apply` calls that arrive
//!   together run in one transaction, committed with `synchronous_commit = on`, and each call
//!   returns once that transaction is committed.
//! - Due work (outbox, webhook events, message timers, alias mirrors) is claimed with
//!   `FOR UPDATE SKIP LOCKED`: the claim (`claimed_by`, `claim_until`) is written on the row,
//!   so a due item is in flight on one node at a time and a dead node's claims pass with
//!   their lease.
//! - Guards (new request id, new upstream msgid, delivery version) are checked in the
//!   writing transaction by statements that raise when they fail, so a transaction goes to
//!   the server whole, BEGIN to COMMIT, in one round trip. A race the check cannot see is
//!   caught by the primary key and the write is run again on its own, where the guard then
//!   fails.
//! - A device's binding is one row (its primary key keeps it on one alias); a bind counts
//!   its alias's devices under an advisory lock on the alias, so concurrent binds on
//!   different nodes keep the device limit.
//! - Message records, which never change once written, are kept for a while by the node
//!   that wrote or read them ([`messages`]): the send and receipt steps do not read them again.
//! - The queue tables (outbox, events) are vacuumed every second
//!   ([`vacuum`]): their claims scan by time, and rows deleted since the last vacuum slow
//!   them down.
//! - The schema is migrated at open under a transaction-level advisory lock ([`migrate`]).

mod availability;
mod codec;
mod counts;
mod delivery;
mod error;
mod identity;
mod messages;
pub mod migrate;
mod ops;
mod vacuum;
mod writer;

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use pushgate_api::error::StoreError;

use crate::availability::Availability;
use crate::counts::Counts;
use crate::messages::MessageCache;
use crate::writer::Writer;

/// How to reach the database.
#[derive(Clone)]
pub struct PgOptions {
    /// `postgres://user:password@host:port/database` (or the key=value form).
    pub url: String,
    /// Most connections this process opens.
    pub pool_size: usize,
    /// Shown in `pg_stat_activity.application_name`.
    pub application_name: String,
}

impl std::fmt::Debug for PgOptions {
    /// Never prints the URL: it may carry the password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgOptions")
            .field("url", &"<redacted>")
            .field("pool_size", &self.pool_size)
            .field("application_name", &self.application_name)
            .finish()
    }
}

/// Whether `url` is a PostgreSQL URL (or key=value string); the reason if not. The reason
/// never repeats the URL, which may hold a password.
pub fn check_url(url: &str) -> Result<(), String> {
    url.parse::<tokio_postgres::Config>()
        .map(|_| ())
        .map_err(|e| format!("not a PostgreSQL URL: {e}"))
}

/// How long a request waits for a pooled connection, or for a new one, before it fails
/// (`503 storage_unavailable`).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The store on PostgreSQL.
pub struct PgStore {
    pool: Pool,
    writer: Writer,
    counts: Counts,
    messages: MessageCache,
    availability: Arc<Availability>,
}

/// Connects, migrates the schema and starts the writer and the health check. Fails with a
/// message naming the problem when the database cannot be reached or its schema is newer
/// than this build.
pub async fn open(options: &PgOptions) -> Result<PgStore, StoreError> {
    let mut config: tokio_postgres::Config = options
        .url
        .parse()
        .map_err(|e| StoreError::Backend(format!("[store] url is not a PostgreSQL URL: {e}")))?;
    config
        .application_name(&options.application_name)
        .connect_timeout(CONNECT_TIMEOUT)
        .keepalives(true)
        .keepalives_idle(Duration::from_secs(30))
        // 202 means committed: never let a server default turn commits asynchronous.
        .options("-c synchronous_commit=on");
    let manager = Manager::from_config(
        config,
        tokio_postgres::NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    let pool_size = options.pool_size.max(2);
    let pool = Pool::builder(manager)
        .max_size(pool_size)
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(CONNECT_TIMEOUT))
        .create_timeout(Some(CONNECT_TIMEOUT))
        .recycle_timeout(Some(CONNECT_TIMEOUT))
        .build()
        .map_err(|e| StoreError::Backend(format!("PostgreSQL pool: {e}")))?;
    migrate::run(&pool).await?;
    let availability = Arc::new(Availability::default());
    availability.watch(pool.clone());
    vacuum::start(pool.clone(), &availability);
    // Half the pool writes (each writer holds one connection per group); the rest reads.
    let writers = (pool_size / 2).clamp(1, 8);
    let writer = Writer::start(pool.clone(), writers, availability.clone());
    Ok(PgStore {
        pool,
        writer,
        counts: Counts::new(Duration::from_secs(1)),
        messages: MessageCache::default(),
        availability,
    })
}

impl PgStore {
    /// A pooled connection; fails as `storage unavailable` when none comes in time.
    async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        self.pool.get().await.map_err(|e| {
            let error = error::pool(e);
            self.availability.down(&error);
            error
        })
    }

    /// Marks the database unreachable when `error` says so.
    fn note<T>(&self, result: Result<T, tokio_postgres::Error>) -> Result<T, StoreError> {
        result.map_err(|e| {
            let error = error::query(&e);
            if error::is_connection(&e) {
                self.availability.down(&error);
            }
            error
        })
    }
}
