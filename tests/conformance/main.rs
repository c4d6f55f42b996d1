//! One conformance suite for every provider: the real gateway binary, configured with the
//! provider, against the provider's emulator or peer over real HTTP. Each provider gets the
//! same checks ([`suite::run`]): a message is sent and becomes `delivered` through the
//! provider's receipts or device acks, carrying the delivery's idempotency key to the
//! provider; a permanent refusal fails the delivery with the provider's code and keeps the
//! device; transient failures are retried; a device the provider reports gone is unbound with
//! `device.unregistered`; the metrics carry the provider's label.
//!
//! A new adapter gets its tests by implementing [`suite::Peer`] in `peers.rs` and adding one
//! line below. The suite needs a peer to say how its provider answers; it never skips a check
//! silently (a provider with no "device gone" answer prints so).

#[path = "../support/mod.rs"]
mod support;

mod peers;
mod suite;

macro_rules! conformance {
    ($test:ident, $peer:ty) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $test() {
            suite::run::<$peer>().await;
        }
    };
}

conformance!(mock_conforms, peers::MockPeer);
conformance!(getui_conforms, peers::GetuiPeer);
conformance!(fcm_conforms, peers::FcmPeer);
conformance!(apns_conforms, peers::ApnsPeer);
conformance!(webpush_conforms, peers::WebPushPeer);
conformance!(plugin_conforms, peers::PluginPeer);
