//! The sled engine: sled below, the commit journal and overlay above
//! ([`crate::layered::LayeredDb`]), group commits of the journal, and a background thread
//! that applies the overlay to sled and checkpoints. [`open`] gives the store over it.

use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use pushgate_engine::error::StoreError;
use pushgate_store_kv::{Kv, KvStore, Write1};
use sled::IVec;

use crate::group_commit::GroupCommit;
use crate::layered::{LayeredDb, Merged};

/// The store over sled (the embedded default).
pub type SledStore = KvStore<SledKv>;

/// How to open the sled store.
#[derive(Clone, Debug)]
pub struct SledOptions {
    /// sled's directory; the commit journal lives in its `journal` subdirectory.
    pub path: PathBuf,
    /// sled's page cache size in bytes.
    pub cache_capacity: u64,
    /// How long a commit that finds the store idle waits for other writers to share its
    /// flush (zero: none); a flush started by writers that waited through the last one does
    /// not wait.
    pub commit_window: Duration,
    /// How often journaled changes are applied to sled (changes that cancel out meanwhile
    /// never reach it).
    pub apply_interval: Duration,
    /// How often sled is flushed and the journal behind it dropped.
    pub checkpoint_interval: Duration,
}

impl SledOptions {
    /// Defaults for `path`: 64 MiB cache, no commit window, apply every 100 ms, a checkpoint
    /// every second.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        SledOptions {
            path: path.into(),
            cache_capacity: 64 * 1024 * 1024,
            commit_window: Duration::ZERO,
            apply_interval: Duration::from_millis(100),
            checkpoint_interval: Duration::from_secs(1),
        }
    }
}

/// sled behind its commit journal, as a key-value engine.
pub struct SledKv {
    db: Arc<LayeredDb>,
    commits: GroupCommit,
    /// Applies and checkpoints in the background; stops with a last checkpoint when the
    /// engine drops.
    _maintainer: Maintainer,
}

/// The background thread that applies the overlay to sled every `apply_interval`,
/// checkpoints every `checkpoint_interval`, and checkpoints once more when stopped.
struct Maintainer {
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: Option<JoinHandle<()>>,
}

impl Maintainer {
    fn start(db: Arc<LayeredDb>, options: &SledOptions) -> Result<Self, StoreError> {
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let signal = stop.clone();
        let (apply_every, checkpoint_every) = (options.apply_interval, options.checkpoint_interval);
        let thread = std::thread::Builder::new()
            .name("pushgate-store".into())
            .spawn(move || {
                let mut last_checkpoint = Instant::now();
                loop {
                    let (flag, wake) = &*signal;
                    let stopped = {
                        let guard = flag.lock().unwrap_or_else(|p| p.into_inner());
                        let (guard, _) = wake
                            .wait_timeout_while(guard, apply_every, |stopped| !*stopped)
                            .unwrap_or_else(|p| p.into_inner());
                        *guard
                    };
                    if db.failure().is_some() {
                        // Failed: a restart replays the journal; nothing here can help.
                        if stopped {
                            return;
                        }
                        continue;
                    }
                    let result = if stopped || last_checkpoint.elapsed() >= checkpoint_every {
                        last_checkpoint = Instant::now();
                        db.checkpoint()
                    } else {
                        db.apply_blocking()
                    };
                    if let Err(e) = result {
                        // sled refuses every operation after an I/O error: no point going on.
                        tracing::error!(error = %e, "store maintenance failed");
                        db.fail(format!("applying to sled or checkpointing failed: {e}"));
                    }
                    if stopped {
                        return;
                    }
                }
            })
            .map_err(|e| StoreError::Backend(format!("cannot start the store thread: {e}")))?;
        Ok(Maintainer {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Maintainer {
    fn drop(&mut self) {
        let (flag, wake) = &*self.stop;
        *flag.lock().unwrap_or_else(|p| p.into_inner()) = true;
        wake.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Opens (or creates) the sled store, replaying the journal into sled; must run inside a
/// Tokio runtime (group commits sync the journal on its blocking pool).
pub fn open(options: &SledOptions) -> Result<SledStore, StoreError> {
    KvStore::new(SledKv::open(options)?)
}

impl SledKv {
    /// Opens (or creates) the store, replaying the journal into sled; must run inside a
    /// Tokio runtime (group commits sync the journal on its blocking pool).
    fn open(options: &SledOptions) -> Result<Self, StoreError> {
        let db = sled::Config::new()
            .path(&options.path)
            .cache_capacity(options.cache_capacity)
            .mode(sled::Mode::HighThroughput)
            // Durability comes from the journal; sled is flushed by checkpoints only.
            .flush_every_ms(None)
            .open()
            .map_err(|e| {
                StoreError::Backend(format!(
                    "cannot open data dir {}: {e}",
                    options.path.display()
                ))
            })?;
        let db = Arc::new(LayeredDb::open(db, &options.path.join("journal"))?);
        let committer = db.clone();
        let commits = GroupCommit::start(
            Box::new(move || {
                let db = committer.clone();
                Box::pin(async move {
                    tokio::task::spawn_blocking(move || db.commit_blocking())
                        .await
                        .map_err(|e| StoreError::Backend(format!("journal sync stopped: {e}")))?
                })
            }),
            options.commit_window,
        );
        let maintainer = Maintainer::start(db.clone(), options)?;
        Ok(SledKv {
            db,
            commits,
            _maintainer: maintainer,
        })
    }

    /// Marks the engine failed, as a journal write error does: every later commit fails until
    /// a restart replays the journal. For fault-injection tests of what callers do then.
    pub fn fail(&self, reason: &str) {
        self.db.fail(reason.to_string());
    }

    /// The journaled sled tree (for this crate's tests).
    #[cfg(test)]
    pub(crate) fn layered(&self) -> &LayeredDb {
        &self.db
    }
}

#[async_trait]
impl Kv for SledKv {
    type Bytes = IVec;
    type Iter<'a> = Merged<'a>;

    fn get(&self, key: &[u8]) -> Result<Option<IVec>, StoreError> {
        self.db.get(key)
    }

    fn range(&self, start: Vec<u8>, end: Option<Vec<u8>>) -> Merged<'_> {
        self.db.range(start, end)
    }

    fn write(&self, batch: Vec<Write1>) -> Result<(), StoreError> {
        self.db.write(batch)
    }

    async fn commit(&self) -> Result<(), StoreError> {
        self.commits.commit().await
    }

    fn failure(&self) -> Option<String> {
        self.db.failure()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::{EntryBuffer, Journal};
    use pushgate_engine::model::{AliasMirror, DeliveryId, DeviceRef, MessageId, MirrorOp};
    use pushgate_engine::store::{no_mirrors, DeliveryStore, IdentityStore, Timer, WriteOp};
    use pushgate_store_kv::keys;

    fn open(dir: &std::path::Path) -> SledStore {
        super::open(&SledOptions::new(dir)).expect("open store")
    }

    fn device(cid: &str) -> DeviceRef {
        DeviceRef {
            provider: "mock".into(),
            cid: cid.into(),
        }
    }

    #[tokio::test]
    async fn the_journal_replays_what_sled_lacks_and_skips_what_it_has() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = open(dir.path());
        store
            .bind_device(
                "app",
                "alice",
                pushgate_engine::store::Binding::of(device("c1"), 4, 1),
                &no_mirrors,
            )
            .await
            .expect("bind");
        store.commit().await.expect("commit");
        store.kv().layered().apply_blocking().expect("apply");
        let sled_seq = store.kv().layered().sled_sequence().expect("seq");
        drop(store); // final checkpoint: sled holds everything, the journal is empty

        // A journal as a crash would leave it: one entry sled already has (it wrote that
        // buffer itself), one it lacks.
        let journal_dir = dir.path().join("journal");
        let mut journal = Journal::open(&journal_dir).expect("journal").journal;
        let mut buffer = EntryBuffer::new(sled_seq);
        buffer.push(&[(keys::device("app", &device("c1")), Some(b"stale".to_vec()))]);
        buffer.push(&[(keys::device("app", &device("c9")), Some(b"alice".to_vec()))]);
        journal.append_synced(&buffer.take().0).expect("sync");
        drop(journal);

        let store = open(dir.path());
        assert_eq!(
            store
                .device_alias("app", &device("c1"))
                .await
                .expect("read")
                .as_deref(),
            Some("alice"),
            "an entry sled already holds is not applied again"
        );
        assert_eq!(
            store
                .device_alias("app", &device("c9"))
                .await
                .expect("read")
                .as_deref(),
            Some("alice"),
            "an entry sled lacks is replayed"
        );
        assert_eq!(
            store.kv().layered().sled_sequence().expect("seq"),
            sled_seq + 1
        );
        let segments = std::fs::read_dir(&journal_dir).expect("dir").count();
        assert_eq!(
            segments, 1,
            "replayed segments are dropped, one new segment is open"
        );
    }

    #[tokio::test]
    async fn outbox_survives_reopen_and_keeps_its_depth() {
        let dir = tempfile::tempdir().expect("tempdir");
        let id = DeliveryId {
            message: MessageId::generate(),
            index: 0,
        };
        {
            let store = open(dir.path());
            store
                .apply(vec![
                    WriteOp::Schedule {
                        provider: "mock".into(),
                        due: 10,
                        id,
                        app: "demo".into(),
                    },
                    WriteOp::ScheduleExpiry {
                        at: 20,
                        message: id.message,
                    },
                ])
                .await
                .expect("apply");
            store.commit().await.expect("commit");
            assert_eq!(store.outbox_depth("mock").await.expect("depth"), 1);
            assert_eq!(store.backlog("demo").await.expect("backlog"), 1);
        }
        let store = open(dir.path());
        assert_eq!(store.outbox_depth("mock").await.expect("depth"), 1);
        assert_eq!(
            store.backlog("demo").await.expect("backlog"),
            1,
            "counted again at open"
        );
        assert_eq!(store.next_due("mock").await.expect("next"), Some(10));
        let lease = |owner: &str| pushgate_engine::store::Lease {
            owner: owner.into(),
            until: 1_000,
        };
        assert!(store
            .claim_due("mock", 0, 9, 10, &lease("a"))
            .await
            .expect("due")
            .is_empty());
        assert!(store
            .claim_due("mock", 11, 20, 10, &lease("a"))
            .await
            .expect("due")
            .is_empty());
        assert_eq!(
            store
                .claim_due("mock", 0, 10, 10, &lease("a"))
                .await
                .expect("due"),
            vec![(10, id)]
        );
        assert!(store.claimed(id, 10).await.expect("claimed"));
        assert!(
            store
                .claim_due("mock", 0, 10, 10, &lease("b"))
                .await
                .expect("due")
                .is_empty(),
            "held by a's claim"
        );
        store.release(id, "a").await.expect("release");
        assert!(!store.claimed(id, 10).await.expect("claimed"));
        assert_eq!(
            store.claim_timers(25, 10, &lease("t")).await.expect("exp"),
            vec![(20, id.message, Timer::Expire)]
        );
        store
            .apply(vec![WriteOp::Unschedule {
                provider: "mock".into(),
                due: 10,
                id,
            }])
            .await
            .expect("apply");
        assert_eq!(store.outbox_depth("mock").await.expect("depth"), 0);
        assert_eq!(store.backlog("demo").await.expect("backlog"), 0);
        assert_eq!(store.next_due("mock").await.expect("next"), None);
    }

    #[tokio::test]
    async fn an_alias_mirror_queued_with_a_bind_survives_a_restart() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = open(dir.path());
        let mirror = |cid: &str, alias: &str, due: u64| AliasMirror {
            id: MessageId::generate(),
            app: "app".into(),
            provider: "getui".into(),
            cid: cid.into(),
            alias: alias.into(),
            op: MirrorOp::Bind,
            attempts: 0,
            next_attempt_at: due,
            created_at: due,
        };
        // Queued with a bind, in the same write, and still there after a restart.
        store
            .bind_device(
                "app",
                "dave",
                pushgate_engine::store::Binding::of(device("c9"), 4, 1),
                &|devices| {
                    devices
                        .iter()
                        .map(|d| WriteOp::QueueAliasMirror(mirror(&d.cid, "dave", 60)))
                        .collect()
                },
            )
            .await
            .expect("bind");
        store.commit().await.expect("commit");
        drop(store);
        let store = open(dir.path());
        let due = store
            .claim_alias_mirrors(
                100,
                10,
                &pushgate_engine::store::Lease {
                    owner: "t".into(),
                    until: 0,
                },
            )
            .await
            .expect("due");
        assert_eq!(due.len(), 1);
        assert_eq!((due[0].cid.as_str(), due[0].alias.as_str()), ("c9", "dave"));
    }
}
