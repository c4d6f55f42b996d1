//! What a callback did: the answers of the engine's receipt and upstream paths.

/// Counts of what a receipts callback did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ReceiptReport {
    pub applied: usize,
    pub duplicates: usize,
    pub early: usize,
    pub rejected: usize,
}

/// Counts of what an upstream callback did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct UpstreamReport {
    pub accepted: usize,
    pub duplicates: usize,
    pub rejected: usize,
    pub relayed: usize,
}
