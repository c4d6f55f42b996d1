//! Every metric name pushgate emits, in one place, with its help text.
//!
//! Prefix `pushgate_`; counters end in `_total`; durations are `_seconds` histograms.
//! Labels are low-cardinality (`app`, `provider`, `outcome`, `state`, `route`, `code`,
//! `result`, `kind`): never an alias, a cid or a message id.

pub const HTTP_REQUESTS_TOTAL: &str = "pushgate_http_requests_total";
pub const HTTP_REQUEST_SECONDS: &str = "pushgate_http_request_duration_seconds";
pub const MESSAGES_ACCEPTED_TOTAL: &str = "pushgate_messages_accepted_total";
pub const DELIVERIES_TOTAL: &str = "pushgate_deliveries_total";
pub const PROVIDER_SEND_SECONDS: &str = "pushgate_provider_send_duration_seconds";
pub const RECEIPTS_TOTAL: &str = "pushgate_receipts_total";
pub const ACCEPT_TO_DELIVERED_SECONDS: &str = "pushgate_accept_to_delivered_seconds";
pub const OUTBOX_DEPTH: &str = "pushgate_outbox_depth";
pub const RETRIES_TOTAL: &str = "pushgate_retries_total";
pub const RECEIPT_TIMEOUTS_TOTAL: &str = "pushgate_receipt_timeouts_total";
pub const WEBHOOK_DELIVERIES_TOTAL: &str = "pushgate_webhook_deliveries_total";
pub const WEBHOOKS_DROPPED_TOTAL: &str = "pushgate_webhooks_dropped_total";
pub const CALLBACKS_REJECTED_TOTAL: &str = "pushgate_callbacks_rejected_total";
pub const CALLBACKS_UNSTORED_TOTAL: &str = "pushgate_callbacks_unstored_total";
pub const STORE_FLUSH_SECONDS: &str = "pushgate_store_flush_duration_seconds";
pub const STORE_FLUSHES_TOTAL: &str = "pushgate_store_flushes_total";
pub const STORE_CHECKPOINT_SECONDS: &str = "pushgate_store_checkpoint_duration_seconds";
pub const STORE_FAILED: &str = "pushgate_store_failed";
pub const ALIAS_BINDINGS_TOTAL: &str = "pushgate_alias_bindings_total";
pub const DEVICES_UNREGISTERED_TOTAL: &str = "pushgate_devices_unregistered_total";
pub const DEVICE_ACKS_TOTAL: &str = "pushgate_device_acks_total";
pub const ALIAS_MIRROR_FAILURES_TOTAL: &str = "pushgate_alias_mirror_failures_total";
pub const UPSTREAM_MESSAGES_TOTAL: &str = "pushgate_upstream_messages_total";
pub const UPSTREAM_REPLIES_TOTAL: &str = "pushgate_upstream_replies_total";
pub const UPSTREAM_RELAYS_TOTAL: &str = "pushgate_upstream_relays_total";
pub const CIRCUIT_STATE: &str = "pushgate_circuit_state";
pub const PLUGIN_LOADS_TOTAL: &str = "pushgate_plugin_loads_total";
pub const PLUGIN_FAULTS_TOTAL: &str = "pushgate_plugin_faults_total";
pub const MATRIX_NOTIFICATIONS_TOTAL: &str = "pushgate_matrix_notifications_total";
pub const EVENT_STREAM_READERS: &str = "pushgate_event_stream_readers";
pub const EVENT_STREAM_CUTOFFS_TOTAL: &str = "pushgate_event_stream_cutoffs_total";

/// `(name, help)` for every metric, for the exporter's HELP lines.
pub const DESCRIPTIONS: &[(&str, &str)] = &[
    (
        EVENT_STREAM_READERS,
        "Clients following an app's event stream (GET /v1/apps/{app}/events) on this node.",
    ),
    (
        EVENT_STREAM_CUTOFFS_TOTAL,
        "Event stream readers cut off for reading too slowly, by app.",
    ),
    (
        MATRIX_NOTIFICATIONS_TOTAL,
        "Matrix notify devices, by app_id and result (accepted, rejected, unknown_app, skipped, refused).",
    ),
    (HTTP_REQUESTS_TOTAL, "HTTP requests answered, by route and status code."),
    (HTTP_REQUEST_SECONDS, "HTTP request latency in seconds, by route."),
    (MESSAGES_ACCEPTED_TOTAL, "Messages accepted (202) by app."),
    (DELIVERIES_TOTAL, "Delivery outcomes by provider and outcome (sent, delivered, retry, failed, expired)."),
    (PROVIDER_SEND_SECONDS, "Latency of provider send calls in seconds, by provider."),
    (RECEIPTS_TOTAL, "Provider receipts by provider and result (applied, duplicate, orphaned, rejected)."),
    (ACCEPT_TO_DELIVERED_SECONDS, "Time from accepting a message to its delivery receipt, in seconds, by provider."),
    (OUTBOX_DEPTH, "Deliveries waiting in the durable outbox, by provider."),
    (RETRIES_TOTAL, "Deliveries scheduled for another attempt after a transient failure, by provider."),
    (RECEIPT_TIMEOUTS_TOTAL, "Sent deliveries sent again because no receipt came within the provider's receipt_timeout_ms, by provider."),
    (WEBHOOK_DELIVERIES_TOTAL, "Webhook event delivery attempts by event type and outcome (ok, retry, dropped)."),
    (WEBHOOKS_DROPPED_TOTAL, "Webhook events given up after the last attempt, by app."),
    (CALLBACKS_REJECTED_TOTAL, "Provider callback items rejected (bad signature, foreign app, malformed), by provider and kind."),
    (CALLBACKS_UNSTORED_TOTAL, "Provider callbacks refused because they could not be stored (the provider sends them again), by provider and kind."),
    (STORE_FLUSH_SECONDS, "Duration of group commits (journal write and fdatasync), in seconds."),
    (STORE_FLUSHES_TOTAL, "Group commits of the journal to disk."),
    (STORE_CHECKPOINT_SECONDS, "Duration of store checkpoints (sled flush, journal segments dropped), in seconds."),
    (STORE_FAILED, "1 once a journal write failed (commits fail until a restart), else 0."),
    (ALIAS_BINDINGS_TOTAL, "Alias binding changes by result (bound, moved, unbound)."),
    (DEVICES_UNREGISTERED_TOTAL, "Devices unbound because their provider reported them gone (Web Push 404/410), by provider."),
    (DEVICE_ACKS_TOTAL, "Device acknowledgements posted to /v1/device-acks by result (applied, duplicate, forged, limited)."),
    (ALIAS_MIRROR_FAILURES_TOTAL, "Failed mirrors of binds and unbinds to providers that keep aliases (delegate_aliases), by provider and retry (transient: retried, permanent: dropped)."),
    (UPSTREAM_MESSAGES_TOTAL, "Upstream messages from devices by provider and result (accepted, duplicate, unowned)."),
    (UPSTREAM_REPLIES_TOTAL, "Messages in app server replies to upstream events by result (accepted, rejected, malformed)."),
    (CIRCUIT_STATE, "Circuit breaker state by provider: 0 closed, 1 half-open, 2 open."),
    (PLUGIN_LOADS_TOTAL, "Plugin libraries loaded or refused, by plugin, version and result."),
    (PLUGIN_FAULTS_TOTAL, "Plugin misbehaviour contained by the host (panic, bad_json, unknown_status, huge_result, timeout), by plugin and kind."),
    (UPSTREAM_RELAYS_TOTAL, "Upstream envelopes relayed directly (upstream_relay) by result (accepted, rejected)."),
];
