//! Settings of the SendMessage strategy, from each app's `[[apps]]` entry.

use std::collections::HashSet;

/// Which apps relay `{"to": "<alias>", "body": …}` envelopes themselves.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SendMessageSettings {
    /// Apps with `upstream_relay = true`.
    pub relay_apps: HashSet<String>,
}
