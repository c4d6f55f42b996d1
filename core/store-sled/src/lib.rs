//! pushgate-store-sled: the embedded default store. sled keeps everything in one tree
//! ([`keys`] gives its layout) behind a commit journal: batches are visible at once through
//! an in-memory overlay, durable after a group commit fsyncs the journal, and applied to
//! sled by a background thread (see [`SledStore`]).

mod alias_codec;
mod group_commit;
mod journal;
pub mod keys;
mod layered;
mod sled_store;

pub use group_commit::{FlushFn, GroupCommit};
pub use sled_store::{SledOptions, SledStore};
