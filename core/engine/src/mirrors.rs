//! The alias mirror worker: tells providers that keep aliases themselves (Getui with
//! `delegate_aliases`) of the binds and unbinds made through pushgate. Each change is stored
//! with the binding (see [`crate::model::AliasMirror`]) and sent from the store, so a failed
//! or interrupted call is retried with backoff across restarts until the provider takes it,
//! a newer change of the same device supersedes it, or the provider refuses it for good.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::clock::now_ms;
use crate::dispatcher::store_failed;
use crate::engine::Engine;
use crate::error::EngineError;
use crate::metrics as m;
use crate::model::{AliasMirror, MirrorOp};
use crate::provider::ProviderError;
use crate::store::WriteOp;

/// Most mirrors sent at once (each to another device).
const BATCH: usize = 32;
/// Longest sleep with nothing due; a binding change wakes the worker sooner.
const IDLE_WAIT: Duration = Duration::from_secs(1);
/// How long one mirror call may take at most (its claim outlasts it).
const MIRROR_WORK: Duration = Duration::from_secs(30);
/// Pause after a storage error.
const ERROR_PAUSE: Duration = Duration::from_millis(500);

impl Engine {
    /// Sends one mirror to its provider and records the outcome: done, retried later, or
    /// dropped (a permanent refusal, or a provider no longer configured).
    pub async fn mirror_alias(&self, mut mirror: AliasMirror) -> Result<(), EngineError> {
        let Some(provider) = self.providers.get(&mirror.provider).cloned() else {
            tracing::warn!(provider = %mirror.provider, "alias mirror for a provider no longer configured; dropped");
            return self.write(vec![WriteOp::FinishAliasMirror(mirror)]).await;
        };
        let call = async {
            match mirror.op {
                MirrorOp::Bind => {
                    provider
                        .alias_bound(&mirror.app, &mirror.alias, &mirror.cid)
                        .await
                }
                MirrorOp::Unbind => {
                    provider
                        .alias_unbound(&mirror.app, &mirror.alias, &mirror.cid)
                        .await
                }
            }
        };
        let timeout = provider.limits().send_timeout;
        let result = tokio::time::timeout(timeout, call)
            .await
            .unwrap_or_else(|_| {
                Err(ProviderError::transient(
                    "timeout",
                    format!("no answer within {} ms", timeout.as_millis()),
                ))
            });
        let op = match result {
            Ok(()) => WriteOp::FinishAliasMirror(mirror),
            Err(error) if error.is_transient() => {
                metrics::counter!(m::ALIAS_MIRROR_FAILURES_TOTAL, "provider" => mirror.provider.clone(), "retry" => "transient").increment(1);
                mirror.attempts += 1;
                let after = match error.retry {
                    crate::provider::Retry::Transient { after } => after,
                    crate::provider::Retry::Permanent => None,
                };
                let delay = self.settings.retry.delay(mirror.attempts, after);
                mirror.next_attempt_at = now_ms().saturating_add(delay.as_millis() as u64);
                tracing::warn!(provider = %mirror.provider, op = ?mirror.op, attempts = mirror.attempts, delay_ms = delay.as_millis() as u64, %error, "alias mirror failed; will retry");
                WriteOp::RetryAliasMirror(mirror)
            }
            Err(error) => {
                metrics::counter!(m::ALIAS_MIRROR_FAILURES_TOTAL, "provider" => mirror.provider.clone(), "retry" => "permanent").increment(1);
                tracing::error!(provider = %mirror.provider, op = ?mirror.op, %error, "provider refused an alias mirror; dropped (the local binding stands)");
                WriteOp::FinishAliasMirror(mirror)
            }
        };
        self.write(vec![op]).await
    }
}

/// Sends due alias mirrors until `shutdown` turns true.
pub async fn run_alias_mirrors(engine: Arc<Engine>, mut shutdown: watch::Receiver<bool>) {
    let store = engine.store().clone();
    while !*shutdown.borrow() {
        if store_failed(&engine, &mut shutdown).await {
            continue;
        }
        let now = now_ms();
        let lease = engine.lease(now, MIRROR_WORK);
        let due = match store.claim_alias_mirrors(now, BATCH, &lease).await {
            Ok(due) => due,
            Err(e) => {
                tracing::error!(error = %e, "alias mirror scan failed");
                tokio::time::sleep(ERROR_PAUSE).await;
                continue;
            }
        };
        if due.is_empty() {
            let wait = match store.next_alias_mirror().await.ok().flatten() {
                Some(t) if t > now => Duration::from_millis(t - now).min(IDLE_WAIT),
                _ => IDLE_WAIT,
            };
            tokio::select! {
                _ = engine.mirror_waker.notified() => {}
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.changed() => {}
            }
            continue;
        }
        // One mirror per device is pending at a time, so a batch touches each device once.
        let mut sends = JoinSet::new();
        for mirror in due {
            let engine = engine.clone();
            sends.spawn(async move {
                let id = mirror.id;
                let result = engine.mirror_alias(mirror).await;
                engine.release_mirror_claim(id).await;
                result
            });
        }
        while let Some(done) = sends.join_next().await {
            if let Ok(Err(e)) = done {
                tracing::error!(error = %e, "recording an alias mirror failed");
                tokio::time::sleep(ERROR_PAUSE).await;
            }
        }
    }
}
