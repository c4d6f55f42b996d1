//! The in-memory key-value engine: a B-tree under a lock. Nothing outlives the process; for
//! the engine's unit tests and for trying things out.

use std::collections::{BTreeMap, VecDeque};
use std::ops::Bound;
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use pushgate_api::error::StoreError;

use crate::kv::{Kv, Write1};
use crate::KvStore;

/// A key and its value.
type Entry = (Arc<[u8]>, Arc<[u8]>);

/// How many entries a range scan copies out under the lock at a time.
const CHUNK: usize = 64;

/// The in-memory store.
pub type MemoryStore = KvStore<MemoryKv>;

/// A fresh, empty in-memory store.
pub fn memory_store() -> MemoryStore {
    match KvStore::new(MemoryKv::default()) {
        Ok(store) => store,
        Err(_) => unreachable!("an empty map has no outbox to count"),
    }
}

/// Keys and values in a B-tree.
#[derive(Default)]
pub struct MemoryKv {
    map: Mutex<BTreeMap<Vec<u8>, Arc<[u8]>>>,
}

impl MemoryKv {
    fn lock(&self) -> MutexGuard<'_, BTreeMap<Vec<u8>, Arc<[u8]>>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A range scan that copies `CHUNK` entries at a time (the lock is not held between).
pub struct MemoryIter<'a> {
    kv: &'a MemoryKv,
    next: Option<Bound<Vec<u8>>>,
    end: Option<Vec<u8>>,
    chunk: VecDeque<Entry>,
}

impl Iterator for MemoryIter<'_> {
    type Item = Result<Entry, StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.chunk.is_empty() {
            let from = self.next.take()?;
            let upper = match &self.end {
                Some(end) => Bound::Excluded(end.clone()),
                None => Bound::Unbounded,
            };
            let map = self.kv.lock();
            self.chunk = map
                .range((from, upper))
                .take(CHUNK)
                .map(|(k, v)| (Arc::from(k.as_slice()), v.clone()))
                .collect();
            if self.chunk.len() == CHUNK {
                self.next = self.chunk.back().map(|(k, _)| Bound::Excluded(k.to_vec()));
            }
        }
        self.chunk.pop_front().map(Ok)
    }
}

#[async_trait]
impl Kv for MemoryKv {
    type Bytes = Arc<[u8]>;
    type Iter<'a> = MemoryIter<'a>;

    fn get(&self, key: &[u8]) -> Result<Option<Arc<[u8]>>, StoreError> {
        Ok(self.lock().get(key).cloned())
    }

    fn range(&self, start: Vec<u8>, end: Option<Vec<u8>>) -> MemoryIter<'_> {
        MemoryIter {
            kv: self,
            next: Some(Bound::Included(start)),
            end,
            chunk: VecDeque::new(),
        }
    }

    fn write(&self, batch: Vec<Write1>) -> Result<(), StoreError> {
        let mut map = self.lock();
        for (key, value) in batch {
            match value {
                Some(value) => {
                    map.insert(key, Arc::from(value));
                }
                None => {
                    map.remove(&key);
                }
            }
        }
        Ok(())
    }

    async fn commit(&self) -> Result<(), StoreError> {
        Ok(())
    }
}
