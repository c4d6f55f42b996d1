//! Where a due-work scan (provider outbox, webhook events) starts.
//!
//! Work is keyed by due time, and items stay in their index while in flight, so scanning
//! from the start each time steps over everything in flight. The cursor remembers the due
//! time of the last item taken: items before it are in flight or already done, and new items
//! are due from now on. A scan from the cursor that finds nothing is redone from the start
//! before the worker idles, and a scan starts from the start at least every
//! [`FULL_SCAN_EVERY`] however much the cursor finds, so an item the cursor passed by (a
//! claim released without a new due time, a dead node's expired lease, a clock step
//! backwards) waits at most that long, even under a backlog that fills every scan.

use std::time::{Duration, Instant};

/// How often a worker scans from the start even while its cursor finds work.
pub const FULL_SCAN_EVERY: Duration = Duration::from_secs(1);

/// A due-time scan cursor; see the module docs.
#[derive(Debug)]
pub struct ScanCursor {
    from: u64,
    last_full_scan: Instant,
}

impl Default for ScanCursor {
    fn default() -> Self {
        ScanCursor {
            from: 0,
            last_full_scan: Instant::now(),
        }
    }
}

impl ScanCursor {
    /// The due time the next scan starts at (0: the start).
    pub fn from(&self) -> u64 {
        self.from
    }

    /// Starts the next scan from the start: after a scan that found less than it asked for
    /// (the worker then waits for new work), so an item that became visible behind the
    /// cursor (written with an earlier due time than the last one taken) is not left waiting.
    pub fn restart(&mut self) {
        self.from = 0;
    }

    /// Records a scan's result: the due time of the last item it returned, and whether the
    /// worker has nothing in flight. True if the caller should scan again, from the start,
    /// before waiting. After [`FULL_SCAN_EVERY`] without a scan from the start, the next scan
    /// starts there whatever this one found.
    pub fn scanned(&mut self, last_due: Option<u64>, idle: bool, now: Instant) -> bool {
        let from_start = self.from == 0;
        if from_start {
            self.last_full_scan = now;
        }
        let full_scan_due = now.duration_since(self.last_full_scan) >= FULL_SCAN_EVERY;
        match last_due {
            Some(_) if full_scan_due => {
                self.from = 0;
                false
            }
            Some(due) => {
                self.from = due;
                false
            }
            None if !from_start && (idle || full_scan_due) => {
                self.from = 0;
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cursor_follows_work_and_falls_back_to_full_scans() {
        let t0 = Instant::now();
        let mut cursor = ScanCursor::default();
        assert_eq!(cursor.from(), 0);
        assert!(!cursor.scanned(Some(100), false, t0));
        assert_eq!(
            cursor.from(),
            100,
            "the next scan starts at the last item taken"
        );
        assert!(!cursor.scanned(Some(120), false, t0));
        // Nothing new, work still in flight, a full scan was recent: wait, keep the cursor.
        assert!(!cursor.scanned(None, false, t0 + Duration::from_millis(10)));
        assert_eq!(cursor.from(), 120);
        // Nothing new and idle: scan from the start once more before waiting.
        assert!(cursor.scanned(None, true, t0 + Duration::from_millis(20)));
        assert_eq!(cursor.from(), 0);
        // That full scan found nothing either: wait.
        assert!(!cursor.scanned(None, true, t0 + Duration::from_millis(21)));
        // Busy for longer than FULL_SCAN_EVERY: a full scan is due even with work in flight.
        let t1 = t0 + Duration::from_millis(30);
        assert!(!cursor.scanned(Some(200), false, t1));
        assert!(!cursor.scanned(None, false, t1 + Duration::from_millis(500)));
        assert!(cursor.scanned(None, false, t1 + FULL_SCAN_EVERY));
        assert_eq!(cursor.from(), 0);
    }

    #[test]
    fn a_backlog_that_fills_every_scan_still_gets_full_scans() {
        let t0 = Instant::now();
        let mut cursor = ScanCursor::default();
        // Every scan finds work (a paced provider takes one item a scan from a backlog).
        let mut due = 0;
        let mut from_start_at = Vec::new();
        for ms in 0..3_500u64 {
            if cursor.from() == 0 {
                from_start_at.push(ms);
            }
            due += 10;
            assert!(!cursor.scanned(Some(due), false, t0 + Duration::from_millis(ms)));
        }
        assert_eq!(
            from_start_at,
            vec![0, 1_001, 2_002, 3_003],
            "an item behind the cursor waits at most FULL_SCAN_EVERY (and one scan)"
        );
    }
}
