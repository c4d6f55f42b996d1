//! Message records this node wrote or read lately. A message record never changes once
//! written (it is only deleted, at the end of its retention), so the send and receipt steps
//! after an accept read it here instead of from the database. Bounded in entries (the oldest
//! go first) and in age, so a message another node deleted is forgotten within [`MAX_AGE`].

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use pushgate_api::model::{MessageId, MessageRecord};

/// Most records kept (at ~1 KiB each, a few MiB).
const CAPACITY: usize = 8192;
/// Longest a record is kept.
pub const MAX_AGE: Duration = Duration::from_secs(30);

#[derive(Default)]
pub struct MessageCache {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    records: HashMap<MessageId, (Instant, MessageRecord)>,
    /// Insertion order, for eviction (an id deleted meanwhile is skipped).
    order: VecDeque<MessageId>,
}

impl MessageCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The record of `id`, if kept and young enough.
    pub fn get(&self, id: MessageId) -> Option<MessageRecord> {
        let inner = self.lock();
        let (at, record) = inner.records.get(&id)?;
        (at.elapsed() < MAX_AGE).then(|| record.clone())
    }

    pub fn put(&self, record: MessageRecord) {
        let mut inner = self.lock();
        let id = record.id;
        if inner.records.insert(id, (Instant::now(), record)).is_none() {
            inner.order.push_back(id);
        }
        while inner.order.len() > CAPACITY {
            if let Some(old) = inner.order.pop_front() {
                inner.records.remove(&old);
            }
        }
    }

    pub fn remove(&self, id: MessageId) {
        self.lock().records.remove(&id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> MessageRecord {
        serde_json::from_value(serde_json::json!({
            "id": MessageId::generate().to_string(),
            "app": "a", "to": {"alias": "x"}, "payload": {}, "created_at": 0,
            "expires_at": 1, "delivery_count": 1
        }))
        .expect("record")
    }

    #[test]
    fn keeps_the_newest_records_and_forgets_deleted_ones() {
        let cache = MessageCache::default();
        let records: Vec<MessageRecord> = (0..CAPACITY + 10).map(|_| record()).collect();
        for r in &records {
            cache.put(r.clone());
        }
        assert!(cache.get(records[9].id).is_none(), "the oldest went");
        assert_eq!(cache.get(records[10].id).as_ref(), Some(&records[10]));
        let newest = records[CAPACITY + 9].id;
        assert_eq!(cache.get(newest).map(|r| r.id), Some(newest));
        cache.remove(newest);
        assert!(cache.get(newest).is_none());
        assert!(cache.lock().records.len() <= CAPACITY);
    }
}
