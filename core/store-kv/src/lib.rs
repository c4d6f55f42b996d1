//! pushgate-store-kv: the storage contract of `pushgate-store` implemented once over any
//! ordered key-value engine ([`Kv`]), and the in-memory engine ([`memory`]). The sled
//! backend (`pushgate-store-sled`) is this over sled behind its commit journal.

mod alias_codec;
mod claims;
pub mod keys;
mod kv;
mod kv_store;
pub mod memory;
mod record_codec;

pub use kv::{prefix_end, Kv, Write1};
pub use kv_store::KvStore;
pub use memory::{memory_store, MemoryStore};
