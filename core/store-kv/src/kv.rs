//! What a key-value engine gives [`crate::KvStore`]: point reads, ordered range scans, atomic
//! batches and a durability point.

use std::ops::Deref;

use async_trait::async_trait;
use pushgate_api::error::StoreError;

/// One write of a batch: a key and its new value, or `None` to delete it.
pub type Write1 = (Vec<u8>, Option<Vec<u8>>);

/// An ordered key-value engine.
#[async_trait]
pub trait Kv: Send + Sync + 'static {
    /// A value (or key) as the engine hands it out.
    type Bytes: Deref<Target = [u8]> + AsRef<[u8]> + Send;
    /// Keys in order, each with its value.
    type Iter<'a>: Iterator<Item = Result<(Self::Bytes, Self::Bytes), StoreError>> + 'a
    where
        Self: 'a;

    /// The value of `key`, as of every batch written before.
    fn get(&self, key: &[u8]) -> Result<Option<Self::Bytes>, StoreError>;

    /// Keys from `start` (inclusive) to `end` (exclusive; `None`: no bound), in order. A batch
    /// written during the scan may or may not show in it, but each key shows once at most.
    fn range(&self, start: Vec<u8>, end: Option<Vec<u8>>) -> Self::Iter<'_>;

    /// Every key starting with `prefix`, in order.
    fn scan_prefix(&self, prefix: &[u8]) -> Self::Iter<'_> {
        self.range(prefix.to_vec(), prefix_end(prefix))
    }

    /// Applies one batch atomically (all or none): visible to reads at once, durable after
    /// the next [`Kv::commit`] (or the engine's own background sync).
    fn write(&self, batch: Vec<Write1>) -> Result<(), StoreError>;

    /// Returns once every batch written before the call is durable.
    async fn commit(&self) -> Result<(), StoreError>;

    /// Why the engine takes no writes any more, if it failed.
    fn failure(&self) -> Option<String> {
        None
    }
}

/// The smallest key greater than every key starting with `prefix` (`None`: no such key).
pub fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_handles_the_top_byte() {
        assert_eq!(prefix_end(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(prefix_end(&[b'a', 0xff]), Some(b"b".to_vec()));
        assert_eq!(prefix_end(&[0xff]), None);
    }
}
