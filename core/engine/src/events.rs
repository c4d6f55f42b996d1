//! The webhook event outbox worker: sends due events through an [`EventTransport`],
//! deletes them on success, reschedules with backoff on failure, drops them (counted and
//! logged) after the last attempt. Apps that take batches get their due events (other than
//! `upstream.received`, whose answer is per event) several to a call.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;

use crate::backoff::RetryPolicy;
use crate::clock::now_ms;
use crate::engine::{request_guards, Engine};
use crate::error::EngineError;
use crate::metrics as m;
use crate::model::{EventKind, EventRecord};
use crate::scan_cursor::ScanCursor;
use crate::store::WriteOp;

/// Why an event could not be delivered this time.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct EventFailure {
    pub message: String,
    /// The app server's Retry-After, if any.
    pub retry_after: Option<Duration>,
    /// No point retrying (the app has no webhook any more).
    pub permanent: bool,
}

/// Delivers one event to its app's server (the gateway implements it over HTTP).
#[async_trait]
pub trait EventTransport: Send + Sync {
    /// Sends the event; on a 2xx answer returns the answer's body (an app server may reply
    /// to `upstream.received` with messages to deliver).
    async fn deliver(&self, event: &EventRecord) -> Result<Vec<u8>, EventFailure>;

    /// Sends several events of one app in one call; all succeed or all fail.
    async fn deliver_batch(&self, events: &[EventRecord]) -> Result<(), EventFailure>;
}

/// How events are sent.
#[derive(Clone, Debug)]
pub struct EventSettings {
    pub concurrency: usize,
    pub retry: RetryPolicy,
    /// Longest one webhook call takes (an event's claim outlasts it).
    pub timeout: Duration,
    /// Apps that take up to this many events in one call (`webhook_batch_max` above 1).
    pub batch_max: std::collections::HashMap<String, usize>,
}

impl Default for EventSettings {
    fn default() -> Self {
        EventSettings {
            concurrency: 16,
            timeout: Duration::from_secs(10),
            batch_max: Default::default(),
            retry: RetryPolicy {
                base: Duration::from_secs(1),
                max_delay: Duration::from_secs(600),
                max_attempts: 15,
            },
        }
    }
}

impl Engine {
    /// Records the result of one event delivery (with the messages of an app server's answer
    /// to `upstream.received`).
    async fn finish_event(
        &self,
        mut event: EventRecord,
        result: Result<Vec<u8>, EventFailure>,
        retry: &RetryPolicy,
    ) -> Result<(), EngineError> {
        let mut ops = vec![WriteOp::DeleteEvent {
            due: event.next_attempt_at,
            id: event.id,
        }];
        let mut replies = Vec::new();
        event.attempts += 1;
        let mut done = true;
        match result {
            Ok(reply) => {
                metrics::counter!(m::WEBHOOK_DELIVERIES_TOTAL, "type" => event.kind.as_str(), "outcome" => "ok").increment(1);
                if event.kind == EventKind::UpstreamReceived {
                    replies = self.plan_replies(&event, &reply).await?;
                }
            }
            Err(failure) if failure.permanent || !retry.may_retry(event.attempts) => {
                metrics::counter!(m::WEBHOOK_DELIVERIES_TOTAL, "type" => event.kind.as_str(), "outcome" => "dropped").increment(1);
                metrics::counter!(m::WEBHOOKS_DROPPED_TOTAL, "app" => event.app.clone())
                    .increment(1);
                tracing::warn!(app = %event.app, event = %event.id, kind = event.kind.as_str(), attempts = event.attempts, error = %failure, "webhook event dropped after its last attempt");
            }
            Err(failure) => {
                metrics::counter!(m::WEBHOOK_DELIVERIES_TOTAL, "type" => event.kind.as_str(), "outcome" => "retry").increment(1);
                let delay = retry.delay(event.attempts, failure.retry_after);
                tracing::debug!(app = %event.app, event = %event.id, error = %failure, delay_ms = delay.as_millis() as u64, "webhook failed; will retry");
                event.next_attempt_at = now_ms().saturating_add(delay.as_millis() as u64);
                if event.ordering_key.is_some() {
                    // Keep the queued copy in step (attempts) for restarts.
                    ops.push(WriteOp::UpdateOrdered(event.clone()));
                }
                ops.push(WriteOp::PutEvent(event.clone()));
                done = false;
            }
        }
        if let (Some(key), true) = (&event.ordering_key, done) {
            ops.push(WriteOp::AdvanceOrdered {
                key: key.clone(),
                done: event.id,
                now: now_ms(),
            });
        }
        if replies.is_empty() {
            return self.write(ops).await;
        }
        // Replies take their request ids once: if they were accepted already (another node
        // took this event over after its lease ran out), the event is recorded without them.
        let guards = request_guards(&replies);
        let mut all = ops.clone();
        all.extend(replies);
        if !self.write_if(guards, all).await? {
            tracing::warn!(event = %event.id, "the replies to this event were accepted already; not again");
            self.write(ops).await?;
        }
        Ok(())
    }
}

/// Runs the event worker until `shutdown` turns true, then waits for sends in flight.
pub async fn run_events(
    engine: Arc<Engine>,
    transport: Arc<dyn EventTransport>,
    settings: EventSettings,
    mut shutdown: watch::Receiver<bool>,
) {
    // With batches, a claim takes enough events to fill them.
    let per_call = settings
        .batch_max
        .values()
        .copied()
        .max()
        .unwrap_or(1)
        .max(1);
    let permits = Arc::new(Semaphore::new(settings.concurrency.max(1)));
    let mut tasks = JoinSet::new();
    let store = engine.store().clone();
    let mut cursor = ScanCursor::default();
    while !*shutdown.borrow() {
        while tasks.try_join_next().is_some() {}
        if crate::dispatcher::store_failed(&engine, &mut shutdown).await {
            continue;
        }
        let free = permits.available_permits();
        let now = now_ms();
        let asked = free * per_call;
        let due = if free == 0 {
            Ok(Vec::new())
        } else {
            let lease = engine.lease(now, settings.timeout);
            store.claim_events(cursor.from(), now, asked, &lease).await
        };
        let due = match due {
            Ok(due) => due,
            Err(e) => {
                tracing::error!(error = %e, "event outbox scan failed");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        let idle = free >= settings.concurrency.max(1);
        let last_due = due.last().map(|e| e.next_attempt_at);
        if cursor.scanned(last_due, idle, std::time::Instant::now()) {
            continue;
        }
        if due.is_empty() {
            // Look up the next retry time only when no event is in flight: a retry written
            // meanwhile wakes this loop.
            let next = if free < settings.concurrency.max(1) {
                None
            } else {
                store.next_event_due().await.ok().flatten()
            };
            let wait = match next {
                Some(t) if t > now => Duration::from_millis(t - now).min(Duration::from_secs(1)),
                _ => Duration::from_secs(1),
            };
            tokio::select! {
                _ = engine.event_waker.notified() => {}
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.changed() => {}
            }
            continue;
        }
        // Fewer than asked: nothing else is due now, so wait for new events instead of
        // scanning again at once.
        let drained = due.len() < asked;
        for calls in batches(due, &settings.batch_max) {
            let Ok(permit) = permits.clone().acquire_owned().await else {
                for event in &calls {
                    engine.release_event_claim(event.id).await;
                }
                continue;
            };
            let engine = engine.clone();
            let transport = transport.clone();
            let retry = settings.retry;
            let permits = permits.clone();
            tasks.spawn(async move {
                let results = match calls.as_slice() {
                    [event] => vec![transport.deliver(event).await],
                    events => {
                        let result = transport
                            .deliver_batch(events)
                            .await
                            .map(|()| Vec::new())
                            .map_err(|mut failure| {
                                // One retry time for the whole batch, so it stays one.
                                let attempts = events.iter().map(|e| e.attempts).max().unwrap_or(0);
                                let ceiling = retry.ceiling(attempts + 1);
                                failure.retry_after =
                                    Some(failure.retry_after.map_or(ceiling, |h| h.max(ceiling)));
                                failure
                            });
                        vec![result; events.len()]
                    }
                };
                for (event, result) in calls.into_iter().zip(results) {
                    let id = event.id;
                    // A recorded result took the event out, and its claim with it.
                    if let Err(e) = engine.finish_event(event, result, &retry).await {
                        tracing::error!(event = %id, error = %e, "recording a webhook result failed");
                        engine.release_event_claim(id).await;
                    }
                }
                // A freed permit matters to a worker that ran out of them; new and retried
                // events wake it by themselves.
                let wanted = permits.available_permits() == 0;
                drop(permit);
                if wanted {
                    engine.event_waker.notify_one();
                }
            });
        }
        if drained {
            cursor.restart();
            tokio::select! {
                _ = engine.event_waker.notified() => {}
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = shutdown.changed() => {}
            }
        }
    }
    while tasks.join_next().await.is_some() {}
}

/// The calls `due` makes: for an app in `batch_max`, its events other than
/// `upstream.received` in groups of up to its maximum (oldest first); every other event alone.
fn batches(
    due: Vec<EventRecord>,
    batch_max: &std::collections::HashMap<String, usize>,
) -> Vec<Vec<EventRecord>> {
    let mut calls: Vec<Vec<EventRecord>> = Vec::new();
    let mut open: std::collections::HashMap<String, usize> = Default::default();
    for event in due {
        let max = batch_max.get(&event.app).copied().unwrap_or(1);
        if max <= 1 || event.kind == EventKind::UpstreamReceived {
            calls.push(vec![event]);
            continue;
        }
        match open.get(&event.app).copied() {
            Some(i) if calls[i].len() < max => calls[i].push(event),
            _ => {
                open.insert(event.app.clone(), calls.len());
                calls.push(vec![event]);
            }
        }
    }
    calls
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::MessageId;

    fn event(app: &str, kind: EventKind) -> EventRecord {
        EventRecord {
            id: MessageId::generate(),
            app: app.into(),
            kind,
            created_at: 1,
            data: serde_json::json!({}),
            attempts: 0,
            next_attempt_at: 1,
            ordering_key: None,
        }
    }

    #[test]
    fn batching_apps_get_groups_and_the_rest_singles() {
        let due = vec![
            event("a", EventKind::MessageDelivered),
            event("b", EventKind::MessageDelivered),
            event("a", EventKind::MessageFailed),
            event("a", EventKind::UpstreamReceived),
            event("a", EventKind::MessageDelivered),
            event("b", EventKind::MessageDelivered),
        ];
        let ids: Vec<MessageId> = due.iter().map(|e| e.id).collect();
        let max = [("a".to_string(), 2)].into_iter().collect();
        let calls = batches(due, &max);
        let shape: Vec<Vec<MessageId>> = calls
            .iter()
            .map(|c| c.iter().map(|e| e.id).collect())
            .collect();
        assert_eq!(
            shape,
            vec![
                vec![ids[0], ids[2]],
                vec![ids[1]],
                vec![ids[3]],
                vec![ids[4]],
                vec![ids[5]]
            ]
        );
    }
}
