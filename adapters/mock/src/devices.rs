//! The simulated devices' inboxes: in memory (bounded per device) or in a sled database
//! under `state_dir`, flushed before a send is acknowledged, as a real provider would.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::Path;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::error::MockError;

/// A message as the device received it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InboxEntry {
    pub message_id: String,
    /// The provider request id (pushgate's delivery id); repeats are dropped.
    pub request_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    pub payload: serde_json::Value,
    pub received_at: u64,
    /// The provider data the device was bound with, as the send carried it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_data: Option<serde_json::Value>,
    /// What the phone would show while the app is not running.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notification: Option<pushgate_api::model::Notification>,
}

#[derive(Default)]
pub(crate) struct MemoryInbox {
    entries: VecDeque<InboxEntry>,
    seen: HashSet<String>,
}

/// Where a persistent inbox database keeps its generated receipt-signing key.
const SECRET_KEY: &[u8] = b"k\0receipt-secret";

/// Where inboxes live.
pub(crate) enum Inboxes {
    Memory {
        devices: Mutex<HashMap<String, MemoryInbox>>,
        limit: usize,
    },
    Persistent {
        db: sled::Db,
    },
}

/// Flushes the inbox database on Tokio's blocking pool. (sled's `flush_async` runs the flush
/// on sled's own IO pool, where many concurrent flushes wait for the writes queued behind
/// them: under load, sends stalled for seconds.)
async fn flush(db: &sled::Db) -> Result<(), String> {
    let db = db.clone();
    tokio::task::spawn_blocking(move || db.flush())
        .await
        .map_err(|e| e.to_string())?
        .map(|_| ())
        .map_err(|e| e.to_string())
}

fn state_error(path: &Path, e: impl std::fmt::Display) -> MockError {
    MockError::State {
        path: path.display().to_string(),
        reason: e.to_string(),
    }
}

impl Inboxes {
    /// In-memory inboxes keeping the last `limit` messages per device.
    pub fn memory(limit: usize) -> Self {
        Inboxes::Memory {
            devices: Mutex::new(HashMap::new()),
            limit,
        }
    }

    /// Inboxes kept in a sled database at `dir`.
    pub fn persistent(dir: &Path) -> Result<Self, MockError> {
        let db = sled::Config::new()
            .path(dir)
            .cache_capacity(16 * 1024 * 1024)
            // Every change a restart needs is flushed explicitly; no background flusher
            // thread holds the database open after it is dropped.
            .flush_every_ms(None)
            .open()
            .map_err(|e| state_error(dir, e))?;
        Ok(Inboxes::Persistent { db })
    }

    /// The key the devices sign their receipts with when the config sets none: random, and
    /// kept with the persistent inboxes, so receipts the devices still owe when the gateway
    /// restarts verify after it (as a real provider's master secret outlives restarts).
    pub fn signing_secret(&self) -> Result<Vec<u8>, String> {
        let fresh = || rand::random::<[u8; 32]>().to_vec();
        let Inboxes::Persistent { db } = self else {
            return Ok(fresh());
        };
        let candidate = fresh();
        let previous = db
            .compare_and_swap(
                SECRET_KEY,
                None as Option<&[u8]>,
                Some(candidate.as_slice()),
            )
            .map_err(|e| e.to_string())?;
        let secret = match previous {
            Ok(()) => candidate,
            Err(existing) => existing.current.map(|v| v.to_vec()).unwrap_or(candidate),
        };
        db.flush().map_err(|e| e.to_string())?;
        Ok(secret)
    }

    /// Stores a message for `cid` and the receipt the device owes for it, atomically; false
    /// if this request id was seen before (the message is dropped, the receipt kept again:
    /// the device acknowledges a repeat, so a send whose receipt was lost still completes).
    pub async fn receive(
        &self,
        cid: &str,
        entry: InboxEntry,
        receipt: Option<&str>,
    ) -> Result<bool, String> {
        let reference = entry.request_id.clone();
        match self {
            Inboxes::Memory { devices, limit } => {
                let mut devices = devices.lock().unwrap_or_else(|p| p.into_inner());
                let inbox = devices.entry(cid.to_string()).or_default();
                if !inbox.seen.insert(entry.request_id.clone()) {
                    return Ok(false);
                }
                inbox.entries.push_back(entry);
                while inbox.entries.len() > *limit {
                    if let Some(old) = inbox.entries.pop_front() {
                        inbox.seen.remove(&old.request_id);
                    }
                }
                Ok(true)
            }
            Inboxes::Persistent { db } => {
                let seen_key = [b"s\0".as_slice(), entry.request_id.as_bytes()].concat();
                // Oldest first; unique because a request id is stored once.
                let key = [
                    b"i\0".as_slice(),
                    cid.as_bytes(),
                    b"\0",
                    &entry.received_at.to_be_bytes(),
                    entry.request_id.as_bytes(),
                ]
                .concat();
                let value = serde_json::to_vec(&entry).map_err(|e| e.to_string())?;
                let receipt_key = [b"r\0".as_slice(), reference.as_bytes()].concat();
                // One transaction: a crash never leaves the request id marked seen without
                // the message (a resend would then be dropped and the device never get it).
                let first = db
                    .transaction(|tx| {
                        let first = tx.get(&seen_key)?.is_none();
                        if first {
                            tx.insert(seen_key.as_slice(), cid.as_bytes())?;
                            tx.insert(key.as_slice(), value.as_slice())?;
                        }
                        if let Some(line) = receipt {
                            tx.insert(receipt_key.as_slice(), line.as_bytes())?;
                        }
                        Ok::<bool, sled::transaction::ConflictableTransactionError<()>>(first)
                    })
                    .map_err(|e| format!("{e:?}"))?;
                flush(db).await?;
                Ok(first)
            }
        }
    }

    /// Forgets receipts the gateway took.
    pub fn receipts_taken(&self, references: &[String]) {
        if let Inboxes::Persistent { db } = self {
            for reference in references {
                let _ = db.remove([b"r\0".as_slice(), reference.as_bytes()].concat());
            }
        }
    }

    /// Receipts kept from an earlier run.
    pub fn pending_receipts(&self) -> Vec<(String, String)> {
        match self {
            Inboxes::Memory { .. } => Vec::new(),
            Inboxes::Persistent { db } => db
                .scan_prefix(b"r\0")
                .filter_map(Result::ok)
                .map(|(k, v)| {
                    (
                        String::from_utf8_lossy(&k[2..]).into_owned(),
                        String::from_utf8_lossy(&v).into_owned(),
                    )
                })
                .collect(),
        }
    }

    /// Everything `cid` received, oldest first.
    pub fn inbox(&self, cid: &str) -> Result<Vec<InboxEntry>, String> {
        match self {
            Inboxes::Memory { devices, .. } => Ok(devices
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(cid)
                .map(|i| i.entries.iter().cloned().collect())
                .unwrap_or_default()),
            Inboxes::Persistent { db } => {
                let prefix = [b"i\0".as_slice(), cid.as_bytes(), b"\0"].concat();
                db.scan_prefix(prefix)
                    .map(|item| {
                        let (_, v) = item.map_err(|e| e.to_string())?;
                        serde_json::from_slice(&v).map_err(|e| e.to_string())
                    })
                    .collect()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(request_id: &str) -> InboxEntry {
        InboxEntry {
            message_id: "m".into(),
            request_id: request_id.into(),
            from: None,
            payload: serde_json::json!({"n": request_id}),
            received_at: 1,
            device_data: None,
            notification: None,
        }
    }

    #[tokio::test]
    async fn memory_inboxes_dedupe_and_stay_bounded() {
        let inboxes = Inboxes::memory(2);
        assert_eq!(inboxes.receive("c1", entry("a"), None).await, Ok(true));
        assert_eq!(inboxes.receive("c1", entry("a"), None).await, Ok(false));
        inboxes.receive("c1", entry("b"), None).await.ok();
        inboxes.receive("c1", entry("c"), None).await.ok();
        let got: Vec<String> = inboxes
            .inbox("c1")
            .unwrap_or_default()
            .into_iter()
            .map(|e| e.request_id)
            .collect();
        assert_eq!(got, vec!["b", "c"]);
        assert!(inboxes.inbox("c2").unwrap_or_default().is_empty());
    }

    #[test]
    fn a_generated_secret_outlives_a_restart_of_persistent_inboxes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = Inboxes::persistent(dir.path())
            .expect("open")
            .signing_secret()
            .expect("secret");
        let again = Inboxes::persistent(dir.path())
            .expect("reopen")
            .signing_secret()
            .expect("secret");
        assert_eq!(first, again);
        assert_eq!(first.len(), 32);
        let memory = Inboxes::memory(1).signing_secret().expect("secret");
        assert_ne!(memory, first, "in-memory inboxes get a fresh key");
    }

    #[tokio::test]
    async fn persistent_inboxes_survive_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let inboxes = Inboxes::persistent(dir.path()).expect("open");
            assert_eq!(
                inboxes.receive("c1", entry("a"), Some("line-a")).await,
                Ok(true)
            );
            assert_eq!(
                inboxes.receive("c1", entry("a"), Some("line-a")).await,
                Ok(false)
            );
        }
        let inboxes = Inboxes::persistent(dir.path()).expect("reopen");
        assert_eq!(
            inboxes.pending_receipts(),
            vec![("a".to_string(), "line-a".to_string())]
        );
        inboxes.receipts_taken(&["a".to_string()]);
        assert!(inboxes.pending_receipts().is_empty());
        assert_eq!(inboxes.receive("c1", entry("a"), None).await, Ok(false));
        assert_eq!(inboxes.inbox("c1").map(|v| v.len()), Ok(1));
    }
}
