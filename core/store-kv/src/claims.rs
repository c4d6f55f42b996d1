//! Leases on due work held in this process: which deliveries or events are being sent, by
//! whom, until when. A claim whose lease has passed no longer holds.

use std::collections::{HashMap, HashSet};
use std::hash::Hash;
use std::sync::{Mutex, MutexGuard};

use pushgate_store::Lease;

/// Claims on items of one kind.
pub struct Claims<T> {
    by_item: Mutex<HashMap<T, Lease>>,
}

impl<T> Default for Claims<T> {
    fn default() -> Self {
        Claims {
            by_item: Mutex::new(HashMap::new()),
        }
    }
}

impl<T: Copy + Eq + Hash> Claims<T> {
    fn lock(&self) -> MutexGuard<'_, HashMap<T, Lease>> {
        self.by_item.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The items held by a live lease at `now` (a snapshot for a scan to skip).
    pub fn held(&self, now: u64) -> HashSet<T> {
        self.lock()
            .iter()
            .filter(|(_, lease)| lease.live(now))
            .map(|(item, _)| *item)
            .collect()
    }

    /// Claims those of `found` that no live lease holds by now (another scan may have taken
    /// some since); returns the ones claimed, in order.
    pub fn claim<E>(
        &self,
        found: Vec<E>,
        item: impl Fn(&E) -> T,
        lease: &Lease,
        now: u64,
    ) -> Vec<E> {
        let mut claims = self.lock();
        found
            .into_iter()
            .filter(|e| {
                let id = item(e);
                match claims.get(&id) {
                    Some(held) if held.live(now) => false,
                    _ => {
                        claims.insert(id, lease.clone());
                        true
                    }
                }
            })
            .collect()
    }

    /// Ends `owner`'s claim on `item` (a claim another owner took after it expired stays).
    pub fn release(&self, item: &T, owner: &str) {
        let mut claims = self.lock();
        if claims.get(item).is_some_and(|l| &*l.owner == owner) {
            claims.remove(item);
        }
    }

    /// Ends every claim on `items`, whoever holds it (their entries were taken out).
    pub fn end<'a>(&self, items: impl IntoIterator<Item = &'a T>)
    where
        T: 'a,
    {
        let mut items = items.into_iter().peekable();
        if items.peek().is_none() {
            return;
        }
        let mut claims = self.lock();
        for item in items {
            claims.remove(item);
        }
    }

    /// Whether a live lease holds `item` at `now`.
    pub fn is_held(&self, item: &T, now: u64) -> bool {
        self.lock().get(item).is_some_and(|l| l.live(now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(owner: &str, until: u64) -> Lease {
        Lease {
            owner: owner.into(),
            until,
        }
    }

    #[test]
    fn a_claim_holds_until_released_or_expired() {
        let claims = Claims::<u32>::default();
        assert_eq!(
            claims.claim(vec![1, 2], |i| *i, &lease("a", 100), 10),
            vec![1, 2]
        );
        assert_eq!(
            claims.claim(vec![1, 3], |i| *i, &lease("b", 100), 20),
            vec![3]
        );
        assert_eq!(claims.held(20), HashSet::from([1, 2, 3]));
        claims.release(&2, "b");
        assert!(claims.is_held(&2, 20), "only its owner releases it");
        claims.release(&2, "a");
        assert!(!claims.is_held(&2, 20));
        // A's lease on 1 passes: B may take it, and A's late release leaves B's claim.
        assert_eq!(
            claims.claim(vec![1], |i| *i, &lease("b", 300), 150),
            vec![1]
        );
        claims.release(&1, "a");
        assert!(claims.is_held(&1, 200));
        assert!(!claims.is_held(&1, 300));
    }
}
