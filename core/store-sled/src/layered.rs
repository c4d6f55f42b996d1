//! sled below, the journal and an in-memory overlay of not-yet-applied batches above.
//!
//! A write is one atomic batch: it is encoded into the journal buffer and its keys go into
//! the overlay, both under one lock, and nothing touches the disk. A commit
//! ([`LayeredDb::commit_blocking`]) appends the buffer to the journal and syncs it. Every
//! 100 ms (by default) [`LayeredDb::apply_blocking`] applies the overlay to sled and empties it;
//! changes that cancel out in between (an outbox entry or webhook event created and done)
//! never reach sled. Readers look in the overlay first, so every batch becomes visible at
//! once, and sled only ever holds changes that are already durable in the journal.
//!
//! Why not sled's own batches and flushes: sled 0.34 writes and `sync_file_range`s an IO
//! buffer twice per `apply_batch`, and every flush holds a lock that stops all batches, so
//! those two were the gateway's throughput limit. Single-key inserts by one applier avoid
//! both, and the journal keeps each batch atomic across a crash.
//!
//! Recovery: sled stores the sequence number of the last batch it holds under
//! [`SEQUENCE_KEY`] (written after that batch's keys), and opening replays the journal
//! entries past it. A checkpoint flushes sled and deletes the journal segments it covers.

use std::collections::{BTreeMap, VecDeque};
use std::ops::Bound;
use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

use sled::IVec;

use crate::journal::{EntryBuffer, Journal, Write1, SEQUENCE_KEY};
use pushgate_engine::error::StoreError;
use pushgate_engine::metrics as m;

/// A key's newest unapplied change.
#[derive(Clone, Debug)]
struct Change {
    /// The batch that made it.
    seq: u64,
    /// The new value (`None`: deleted).
    value: Option<IVec>,
    /// Whether sled may hold the key (`None`: not asked yet; sled has not changed for this
    /// key since the change came in). If not, deleting the key only drops this change.
    in_sled: Option<bool>,
}

/// Overlaid changes on their way to sled, all synced up to sequence number `upto`.
struct Snapshot {
    upto: u64,
    changes: Vec<(IVec, Change)>,
}

/// A key and its overlaid value (`None`: deleted).
type Overlaid = (IVec, Option<IVec>);

struct Unapplied {
    buffer: EntryBuffer,
    overlay: BTreeMap<IVec, Change>,
}

/// The journaled, overlaid sled tree.
pub struct LayeredDb {
    db: sled::Db,
    unapplied: Mutex<Unapplied>,
    /// Held while appending to the journal, so appends keep the buffer's order.
    journal: Mutex<Journal>,
    /// Held while applying, so snapshots reach sled in order.
    applier: Mutex<()>,
    /// Set when the journal could not be written: nothing after it is durable, so every
    /// later commit fails until the process restarts and replays.
    failed: Mutex<Option<String>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn backend(e: sled::Error) -> StoreError {
    StoreError::Backend(e.to_string())
}

fn apply_one(db: &sled::Db, key: &[u8], value: Option<&[u8]>) -> Result<(), StoreError> {
    match value {
        Some(value) => db.insert(key, value).map(|_| ()),
        None => db.remove(key).map(|_| ()),
    }
    .map_err(backend)
}

fn set_sequence(db: &sled::Db, seq: u64) -> Result<(), StoreError> {
    db.insert(SEQUENCE_KEY, &seq.to_be_bytes())
        .map(|_| ())
        .map_err(backend)
}

/// The sequence number of the last batch sled holds (0: none).
fn sled_sequence(db: &sled::Db) -> Result<u64, StoreError> {
    Ok(db
        .get(SEQUENCE_KEY)
        .map_err(backend)?
        .and_then(|v| v.as_ref().try_into().ok())
        .map_or(0, u64::from_be_bytes))
}

impl LayeredDb {
    /// Opens the journal in `journal_dir`, replays into `db` what it lacks, flushes it and
    /// drops the replayed segments.
    pub fn open(db: sled::Db, journal_dir: &Path) -> Result<Self, StoreError> {
        let sled_seq = sled_sequence(&db)?;
        let recovered = Journal::open(journal_dir)?;
        let mut replayed = 0usize;
        let mut last_seq = sled_seq;
        for entry in &recovered.entries {
            if entry.seq > sled_seq {
                for (key, value) in &entry.writes {
                    apply_one(&db, key, value.as_deref())?;
                }
                set_sequence(&db, entry.seq)?;
                replayed += 1;
            }
            last_seq = last_seq.max(entry.seq);
        }
        if let Some(last) = recovered.old_segments.iter().max() {
            db.flush().map_err(backend)?;
            recovered.journal.remove_through(*last)?;
        }
        if replayed > 0 {
            tracing::info!(replayed, "replayed journal entries sled had not flushed");
        }
        metrics::gauge!(m::STORE_FAILED).set(0.0);
        Ok(LayeredDb {
            db,
            unapplied: Mutex::new(Unapplied {
                buffer: EntryBuffer::new(last_seq + 1),
                overlay: BTreeMap::new(),
            }),
            journal: Mutex::new(recovered.journal),
            applier: Mutex::new(()),
            failed: Mutex::new(None),
        })
    }

    /// Records one atomic batch: visible to readers at once, durable after the next commit.
    pub fn write(&self, writes: Vec<Write1>) -> Result<(), StoreError> {
        let mut unapplied = lock(&self.unapplied);
        let seq = unapplied.buffer.push(&writes);
        for (key, value) in writes {
            let key = IVec::from(key);
            let value = value.map(IVec::from);
            let mut in_sled = unapplied.overlay.get(&key).and_then(|c| c.in_sled);
            if value.is_none() {
                // Only a deletion needs the answer. Asked under the lock: an applied change
                // leaves the overlay only after it is in sled, so sled's answer is current.
                let present = match in_sled {
                    Some(known) => known,
                    None => self.db.contains_key(&key).map_err(backend)?,
                };
                if !present {
                    // Written and deleted before it ever reached sled: nothing to apply.
                    unapplied.overlay.remove(&key);
                    continue;
                }
                in_sled = Some(true);
            }
            unapplied.overlay.insert(
                key,
                Change {
                    seq,
                    value,
                    in_sled,
                },
            );
        }
        Ok(())
    }

    /// The current value of `key`.
    pub fn get(&self, key: &[u8]) -> Result<Option<IVec>, StoreError> {
        if let Some(change) = lock(&self.unapplied).overlay.get(key) {
            return Ok(change.value.clone());
        }
        self.db.get(key).map_err(backend)
    }

    /// Keys from `start` (inclusive) to `end` (exclusive; `None`: no bound), in order.
    pub fn range(&self, start: Vec<u8>, end: Option<Vec<u8>>) -> Merged<'_> {
        let below = match &end {
            Some(end) => self.db.range(start.as_slice()..end.as_slice()),
            None => self.db.range(start.as_slice()..),
        };
        Merged {
            layered: self,
            overlay: VecDeque::new(),
            next_overlay: Some(Bound::Included(IVec::from(start))),
            end: end.map(IVec::from),
            below: below.peekable(),
        }
    }

    /// Up to [`OVERLAY_CHUNK`] overlaid keys from `from` to `end`.
    fn overlay_chunk(&self, from: Bound<IVec>, end: Option<&IVec>) -> Vec<Overlaid> {
        let upper = match end {
            Some(end) => Bound::Excluded(end.as_ref()),
            None => Bound::Unbounded,
        };
        let lower = match &from {
            Bound::Included(k) => Bound::Included(k.as_ref()),
            Bound::Excluded(k) => Bound::Excluded(k.as_ref()),
            Bound::Unbounded => Bound::Unbounded,
        };
        lock(&self.unapplied)
            .overlay
            .range::<[u8], _>((lower, upper))
            .take(OVERLAY_CHUNK)
            .map(|(k, change)| (k.clone(), change.value.clone()))
            .collect()
    }

    /// Every key starting with `prefix`, in order.
    #[cfg(test)]
    pub fn scan_prefix(&self, prefix: &[u8]) -> Merged<'_> {
        self.range(prefix.to_vec(), pushgate_store_kv::prefix_end(prefix))
    }

    /// Makes every batch written so far durable: appends them to the journal and syncs it.
    /// Blocking.
    ///
    /// When the overlay has grown past [`OVERLAY_SOFT_LIMIT`] keys (writers outpacing the
    /// store thread), the committer applies it too before returning: that holds writers back
    /// and keeps memory bounded.
    pub fn commit_blocking(&self) -> Result<(), StoreError> {
        {
            let mut journal = lock(&self.journal);
            self.check_failed()?;
            let (bytes, _) = lock(&self.unapplied).buffer.take();
            self.append(&mut journal, &bytes)?;
        }
        if lock(&self.unapplied).overlay.len() > OVERLAY_SOFT_LIMIT {
            self.apply_blocking()?;
        }
        Ok(())
    }

    /// Commits, then applies every overlaid change to sled and drops it from the overlay.
    /// Changes wait in the overlay between applies, so a key written and deleted meanwhile
    /// (an outbox entry, a webhook event) never reaches sled at all. Blocking.
    pub fn apply_blocking(&self) -> Result<(), StoreError> {
        let _applier = lock(&self.applier);
        let snapshot = {
            let mut journal = lock(&self.journal);
            self.snapshot_and_sync(&mut journal)?
        };
        self.apply_snapshot(snapshot)
    }

    /// Why the store failed (a journal write, or sled while applying or checkpointing), if
    /// it did. Changes since the last good commit may show in reads but are not durable.
    pub fn failure(&self) -> Option<String> {
        lock(&self.failed).clone()
    }

    fn check_failed(&self) -> Result<(), StoreError> {
        match lock(&self.failed).as_ref() {
            Some(reason) => Err(StoreError::Backend(format!(
                "the store failed earlier ({reason}); restart to recover"
            ))),
            None => Ok(()),
        }
    }

    /// Marks the store failed (the first reason stays): commits fail from now on, and the
    /// gateway stops so that a restart replays the journal (see [`LayeredDb::failure`]).
    pub fn fail(&self, reason: String) {
        metrics::gauge!(m::STORE_FAILED).set(1.0);
        let mut failed = lock(&self.failed);
        if failed.is_none() {
            *failed = Some(reason);
        }
    }

    fn append(&self, journal: &mut Journal, bytes: &[u8]) -> Result<(), StoreError> {
        journal.append_synced(bytes).inspect_err(|e| {
            tracing::error!(error = %e, "journal write failed; commits fail until a restart");
            self.fail(format!("journal write failed: {e}"));
        })
    }

    /// Takes every overlaid change (marking it as possibly in sled) and makes sure all of
    /// them are synced in the journal; returns them with the last sequence number.
    fn snapshot_and_sync(&self, journal: &mut Journal) -> Result<Snapshot, StoreError> {
        self.check_failed()?;
        let (bytes, upto, changes) = {
            let mut unapplied = lock(&self.unapplied);
            let (bytes, upto) = unapplied.buffer.take();
            let changes: Vec<(IVec, Change)> = unapplied
                .overlay
                .iter_mut()
                .map(|(k, change)| {
                    // From here on sled may hold it, whatever happens to it next.
                    change.in_sled = Some(true);
                    (k.clone(), change.clone())
                })
                .collect();
            (bytes, upto, changes)
        };
        // Every change in the snapshot is in `bytes` or in an earlier, synced append.
        self.append(journal, &bytes)?;
        Ok(Snapshot { upto, changes })
    }

    /// Writes a snapshot's changes to sled, then drops from the overlay those not changed
    /// again since. Commits go on meanwhile.
    fn apply_snapshot(&self, snapshot: Snapshot) -> Result<(), StoreError> {
        if snapshot.changes.is_empty() {
            return Ok(());
        }
        for (key, change) in &snapshot.changes {
            apply_one(&self.db, key, change.value.as_deref())?;
        }
        set_sequence(&self.db, snapshot.upto)?;
        let mut unapplied = lock(&self.unapplied);
        for (key, change) in snapshot.changes {
            if unapplied.overlay.get(&key).map(|c| c.seq) == Some(change.seq) {
                unapplied.overlay.remove(&key);
            }
        }
        Ok(())
    }

    /// Commits, flushes sled and deletes the journal segments that sled now covers. Blocking.
    pub fn checkpoint(&self) -> Result<(), StoreError> {
        let started = Instant::now();
        let _applier = lock(&self.applier);
        let (snapshot, covered) = {
            let mut journal = lock(&self.journal);
            let snapshot = self.snapshot_and_sync(&mut journal)?;
            // Segments up to `covered` hold nothing newer than the snapshot.
            (snapshot, journal.rotate()?)
        };
        self.apply_snapshot(snapshot)?;
        self.db.flush().map_err(backend)?;
        lock(&self.journal).remove_through(covered)?;
        metrics::histogram!(m::STORE_CHECKPOINT_SECONDS).record(started.elapsed().as_secs_f64());
        Ok(())
    }

    /// The sled tree underneath (for reads that must not see the overlay: tests).
    #[cfg(test)]
    pub fn sled(&self) -> &sled::Db {
        &self.db
    }

    /// The sequence number stored in sled.
    #[cfg(test)]
    pub fn sled_sequence(&self) -> Result<u64, StoreError> {
        sled_sequence(&self.db)
    }
}

/// Overlaid keys beyond which a commit also applies the overlay (see `commit_blocking`).
const OVERLAY_SOFT_LIMIT: usize = 50_000;

/// How many overlaid keys a range scan copies at a time (a scan that stops early, such as
/// "the first key", copies no more).
const OVERLAY_CHUNK: usize = 32;

/// The overlay merged over sled's iterator; the overlay wins on equal keys and its deletions
/// hide sled's entries. The overlay is read in chunks, each a consistent snapshot.
pub struct Merged<'a> {
    layered: &'a LayeredDb,
    /// The current chunk of overlaid keys.
    overlay: VecDeque<Overlaid>,
    /// Where the next chunk starts (`None`: the overlay's part of the range is done).
    next_overlay: Option<Bound<IVec>>,
    end: Option<IVec>,
    below: std::iter::Peekable<sled::Iter>,
}

impl Merged<'_> {
    fn peek_overlay(&mut self) -> Option<&Overlaid> {
        if self.overlay.is_empty() {
            if let Some(from) = self.next_overlay.take() {
                let chunk = self.layered.overlay_chunk(from, self.end.as_ref());
                if chunk.len() == OVERLAY_CHUNK {
                    self.next_overlay = chunk.last().map(|(k, _)| Bound::Excluded(k.clone()));
                }
                self.overlay = chunk.into();
            }
        }
        self.overlay.front()
    }
}

impl Iterator for Merged<'_> {
    type Item = Result<(IVec, IVec), StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let below_key = match self.below.peek() {
                Some(Ok((k, _))) => Some(k.clone()),
                Some(Err(_)) => {
                    return self.below.next().map(|r| r.map_err(backend));
                }
                None => None,
            };
            let take_overlay = match (self.peek_overlay(), &below_key) {
                (None, None) => return None,
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (Some((ok, _)), Some(bk)) => ok <= bk,
            };
            if !take_overlay {
                return self.below.next().map(|r| r.map_err(backend));
            }
            let (key, value) = self.overlay.pop_front()?;
            if below_key.as_ref() == Some(&key) {
                self.below.next(); // shadowed by the overlay
            }
            if let Some(value) = value {
                return Some(Ok((key, value)));
            }
            // A deletion: skip the key.
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(dir: &Path) -> LayeredDb {
        let db = sled::Config::new()
            .path(dir.join("sled"))
            .open()
            .expect("sled");
        LayeredDb::open(db, &dir.join("journal")).expect("open")
    }

    fn put(k: &str, v: &str) -> Write1 {
        (k.as_bytes().to_vec(), Some(v.as_bytes().to_vec()))
    }

    fn del(k: &str) -> Write1 {
        (k.as_bytes().to_vec(), None)
    }

    fn keys(db: &LayeredDb, prefix: &str) -> Vec<String> {
        db.scan_prefix(prefix.as_bytes())
            .filter(|r| !matches!(r, Ok((k, _)) if k.as_ref() == SEQUENCE_KEY))
            .map(|r| {
                let (k, v) = r.expect("item");
                format!(
                    "{}={}",
                    String::from_utf8_lossy(&k),
                    String::from_utf8_lossy(&v)
                )
            })
            .collect()
    }

    #[test]
    fn reads_merge_the_overlay_over_sled() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = open(dir.path());
        db.write(vec![put("k1", "a"), put("k2", "b"), put("k4", "d")])
            .expect("write");
        db.commit_blocking().expect("commit");
        assert!(
            db.sled().get("k1").expect("get").is_none(),
            "committed, not applied"
        );
        db.apply_blocking().expect("apply");
        assert!(db.sled().get("k1").expect("get").is_some(), "applied");
        db.write(vec![
            put("k2", "B"),
            del("k4"),
            put("k3", "c"),
            put("k5", "e"),
        ])
        .expect("write");
        assert_eq!(db.get(b"k2").expect("get").as_deref(), Some(&b"B"[..]));
        assert!(db.get(b"k4").expect("get").is_none());
        assert_eq!(keys(&db, "k"), ["k1=a", "k2=B", "k3=c", "k5=e"]);
        let bounded: Vec<_> = db
            .range(b"k2".to_vec(), Some(b"k5".to_vec()))
            .map(|r| r.expect("item").0)
            .collect();
        assert_eq!(bounded, [&b"k2"[..], &b"k3"[..]]);
        db.apply_blocking().expect("apply");
        assert_eq!(keys(&db, "k"), ["k1=a", "k2=B", "k3=c", "k5=e"]);
        assert!(
            db.sled().get("k4").expect("get").is_none(),
            "deletion applied"
        );
    }

    #[test]
    fn a_key_created_and_deleted_between_applies_never_reaches_sled() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = open(dir.path());
        db.write(vec![put("job", "1"), put("record", "x")])
            .expect("write");
        db.commit_blocking().expect("commit");
        db.write(vec![del("job")]).expect("write");
        assert!(db.get(b"job").expect("get").is_none());
        assert_eq!(
            lock(&db.unapplied).overlay.len(),
            1,
            "only `record` is left"
        );
        db.apply_blocking().expect("apply");
        assert!(db.sled().get("job").expect("get").is_none());

        // Once applied, a deletion must reach sled.
        db.write(vec![del("record")]).expect("write");
        db.apply_blocking().expect("apply");
        assert!(db.sled().get("record").expect("get").is_none());
        assert!(lock(&db.unapplied).overlay.is_empty());
    }

    #[test]
    fn committed_batches_come_back_from_the_journal_and_others_do_not() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let db = open(dir.path());
            db.write(vec![put("a", "1")]).expect("write");
            db.apply_blocking().expect("apply");
            db.write(vec![put("a", "2"), put("b", "1")]).expect("write");
            db.commit_blocking().expect("commit");
            db.write(vec![put("lost", "never committed")])
                .expect("write");
            // Dropped without applying: sled holds only the first batch; the second comes
            // back from the journal; the uncommitted one is gone everywhere.
        }
        let db = open(dir.path());
        assert_eq!(keys(&db, ""), ["a=2", "b=1"]);
        assert_eq!(db.sled_sequence().expect("seq"), 2);
        db.write(vec![put("c", "1")]).expect("write");
        db.checkpoint().expect("checkpoint");
        let segments = std::fs::read_dir(dir.path().join("journal"))
            .expect("dir")
            .count();
        assert_eq!(segments, 1, "only the new, empty segment is left");
        drop(db);
        assert_eq!(keys(&open(dir.path()), ""), ["a=2", "b=1", "c=1"]);
    }

    #[test]
    fn long_scans_cross_overlay_chunks_in_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = open(dir.path());
        let mut model = std::collections::BTreeMap::new();
        let key = |i: usize| format!("k{i:03}");
        for i in (0..200).step_by(2) {
            db.write(vec![put(&key(i), "sled")]).expect("write");
            model.insert(key(i), "sled".to_string());
        }
        db.apply_blocking().expect("apply");
        for i in 0..200 {
            match i % 6 {
                1 | 3 => {
                    db.write(vec![put(&key(i), "overlay")]).expect("write");
                    model.insert(key(i), "overlay".to_string());
                }
                0 => {
                    db.write(vec![del(&key(i))]).expect("write");
                    model.remove(&key(i));
                }
                _ => {}
            }
        }
        let expected: Vec<String> = model.iter().map(|(k, v)| format!("{k}={v}")).collect();
        assert!(lock(&db.unapplied).overlay.len() > 2 * OVERLAY_CHUNK);
        assert_eq!(keys(&db, "k"), expected);
        let first = db.scan_prefix(b"k").next().expect("one").expect("item").0;
        assert_eq!(first.as_ref(), b"k001", "k000 is deleted in the overlay");
    }
}
