//! pushgate-store-sled: the embedded default store. The key-value layer of
//! `pushgate-store-kv` over sled behind a commit journal: batches are visible at once through
//! an in-memory overlay, durable after a group commit fsyncs the journal, and applied to sled
//! by a background thread (see [`sled::SledKv`]).

mod group_commit;
mod journal;
mod layered;
mod sled;

pub use group_commit::{FlushFn, GroupCommit};
pub use sled::{open, SledKv, SledOptions, SledStore};
