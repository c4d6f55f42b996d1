//! pushgate-sendmessage: strategy 2 (SendMessage upstream forwarding) as core's
//! `UpstreamRouter`. A device's upstream message is forwarded to the app's message server
//! as an `upstream.received` event, one queue per sender so the server sees a sender's
//! messages in order; the server's `{"messages": [...]}` answer is delivered from the
//! sender; with `upstream_relay`, `{"to": "<alias>", "body": …}` envelopes are delivered
//! directly too.

mod config;
mod replies;
mod router;

pub use config::SendMessageSettings;
pub use replies::parse as parse_replies;
pub use router::{envelope, event_data, ordering_key, SendMessageRouter};
