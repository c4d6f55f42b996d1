//! Write ops and guards as SQL statements, and running them in a transaction (pipelined:
//! a job's statements go to the server together and run in order).

use futures_util::future::join_all;
use pushgate_api::model::{AliasMirror, DeliveryRecord, EventRecord};
use pushgate_store::{Guard, Removable, WriteOp};
use tokio_postgres::types::ToSql;

use crate::codec::{self, ms};

pub type Param = Box<dyn ToSql + Sync + Send>;

/// One statement with its owned parameters.
pub struct Stmt {
    pub sql: &'static str,
    pub params: Vec<Param>,
}

macro_rules! stmt {
    ($sql:expr $(, $p:expr)* $(,)?) => {
        Stmt { sql: $sql, params: vec![$(Box::new($p) as Param),*] }
    };
}

impl Stmt {
    pub fn refs(&self) -> Vec<&(dyn ToSql + Sync)> {
        self.params
            .iter()
            .map(|p| p.as_ref() as &(dyn ToSql + Sync))
            .collect()
    }
}

/// The SQLSTATE `pushgate_guard` raises when a guard does not hold (migration 0005).
const GUARD_FAILED: &str = "PGG01";

/// Whether `e` is a guard that did not hold.
pub fn is_guard_failure(e: &tokio_postgres::Error) -> bool {
    e.code().is_some_and(|c| c.code() == GUARD_FAILED)
}

/// Runs `stmts` in order on `client`, sent together (one round trip for all of them). Every
/// statement is awaited, so none is left running; the error is the first statement's that
/// failed (those after it in a transaction fail only because it did).
pub async fn execute<'s, C: deadpool_postgres::GenericClient + Sync>(
    client: &C,
    stmts: impl IntoIterator<Item = &'s Stmt>,
) -> Result<(), tokio_postgres::Error> {
    let stmts: Vec<&Stmt> = stmts.into_iter().collect();
    let mut prepared = Vec::with_capacity(stmts.len());
    for s in &stmts {
        prepared.push(client.prepare_cached(s.sql).await?);
    }
    let params: Vec<_> = stmts.iter().map(|s| s.refs()).collect();
    let results = join_all(
        prepared
            .iter()
            .zip(&params)
            .map(|(statement, params)| client.execute(statement, params)),
    )
    .await;
    match results.into_iter().find_map(Result::err) {
        Some(first) => Err(first),
        None => Ok(()),
    }
}

/// A guard as a statement that raises when it does not hold, so that it can be sent ahead of
/// the statements it guards. A delivery version check locks the row until the transaction
/// ends, so no other writer changes it in between.
pub fn guard(guard: &Guard) -> Stmt {
    match guard {
        Guard::NewRequest { app, request_id } => stmt!(
            "SELECT pushgate_guard(NOT EXISTS
                 (SELECT 1 FROM idempotency WHERE app = $1 AND request_id = $2))",
            app.clone(),
            request_id.clone(),
        ),
        Guard::NewUpstream { provider, msgid } => stmt!(
            "SELECT pushgate_guard(NOT EXISTS
                 (SELECT 1 FROM upstream WHERE provider = $1 AND msgid = $2))",
            provider.clone(),
            msgid.clone(),
        ),
        Guard::DeliveryVersion { id, version } => {
            let (message, idx) = codec::delivery(*id);
            stmt!(
                "SELECT pushgate_guard(coalesce(
                     (SELECT version FROM deliveries WHERE message = $1 AND idx = $2 FOR UPDATE),
                     0) = $3)",
                message,
                idx,
                ms(*version),
            )
        }
    }
}

/// The statements of `ops`, in order.
pub fn plan(ops: Vec<WriteOp>) -> Vec<Stmt> {
    plan_guarded(Vec::new(), ops).1
}

/// The statements of `ops` under `guards`, in order, and the guards left to check apart: a
/// delivery written over the version it was read at is one statement that writes only over
/// that version and raises otherwise (its guard and its write in one). Pairs of ops that one
/// statement does (see [`pair`]) are planned as one.
pub fn plan_guarded(mut guards: Vec<Guard>, ops: Vec<WriteOp>) -> (Vec<Guard>, Vec<Stmt>) {
    let mut out = Vec::with_capacity(ops.len());
    let mut ops = ops.into_iter().peekable();
    while let Some(op) = ops.next() {
        if let Some(both) = pair(&op, ops.peek()) {
            ops.next();
            out.push(both);
            continue;
        }
        match op {
            WriteOp::PutDelivery(d) => {
                let guard = guards
                    .iter()
                    .position(|g| matches!(g, Guard::DeliveryVersion { id, .. } if *id == d.id));
                match guard.map(|at| guards.remove(at)) {
                    Some(Guard::DeliveryVersion { version, .. }) => {
                        out.push(delivery_over(&d, version))
                    }
                    _ => plan_one(WriteOp::PutDelivery(d), &mut out),
                }
            }
            op => plan_one(op, &mut out),
        }
    }
    (guards, out)
}

/// One statement for two ops in a row that often come together: an event logged and queued
/// for its webhook, and a delivery's outbox entry moved to another time (a send recorded and
/// its receipt timeout scheduled).
fn pair(first: &WriteOp, next: Option<&WriteOp>) -> Option<Stmt> {
    match (first, next?) {
        (WriteOp::LogEvent(logged), WriteOp::PutEvent(queued)) if logged == queued => {
            let e = queued;
            Some(stmt!(
                "WITH logged AS (
                     INSERT INTO event_log (app, id, created_at, record) VALUES ($1, $2, $3, $4)
                     ON CONFLICT (app, id) DO NOTHING)
                 INSERT INTO events (due, id, record) VALUES ($5, $2, $4)
                 ON CONFLICT (due, id) DO UPDATE SET record = EXCLUDED.record",
                e.app.clone(),
                codec::id(e.id),
                ms(e.id.0.timestamp_ms()),
                codec::encode(e),
                ms(e.next_attempt_at),
            ))
        }
        // Different times: the DELETE and the INSERT touch different rows (one statement's
        // parts do not see each other's changes).
        (
            WriteOp::Unschedule { provider, due, id },
            WriteOp::Schedule {
                provider: to,
                due: at,
                id: same,
                app,
            },
        ) if id == same && due != at => {
            let (message, idx) = codec::delivery(*id);
            Some(stmt!(
                "WITH gone AS (
                     DELETE FROM outbox
                     WHERE provider = $1 AND due = $2 AND message = $3 AND idx = $4)
                 INSERT INTO outbox (provider, due, message, idx, app) VALUES ($5, $6, $3, $4, $7)
                 ON CONFLICT (provider, due, message, idx) DO UPDATE SET app = EXCLUDED.app",
                provider.clone(),
                ms(*due),
                message,
                idx,
                to.clone(),
                ms(*at),
                app.clone(),
            ))
        }
        _ => None,
    }
}

/// Writes `d` if its stored version is `read_at` (0: also if there is none), else raises.
fn delivery_over(d: &DeliveryRecord, read_at: u64) -> Stmt {
    let (message, idx) = codec::delivery(d.id);
    let (version, record, read_at) = (ms(d.version), codec::encode(d), ms(read_at));
    if read_at == 0 {
        stmt!(
            "WITH w AS (
                 INSERT INTO deliveries (message, idx, version, record) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (message, idx) DO UPDATE
                 SET version = EXCLUDED.version, record = EXCLUDED.record
                 WHERE deliveries.version = 0
                 RETURNING 1)
             SELECT pushgate_guard(EXISTS (SELECT 1 FROM w))",
            message,
            idx,
            version,
            record,
        )
    } else {
        stmt!(
            "WITH w AS (
                 UPDATE deliveries SET version = $3, record = $4
                 WHERE message = $1 AND idx = $2 AND version = $5
                 RETURNING 1)
             SELECT pushgate_guard(EXISTS (SELECT 1 FROM w))",
            message,
            idx,
            version,
            record,
            read_at,
        )
    }
}

/// Serialises the writers of one ordering key's queue (its head is decided by what the
/// queue holds, which a concurrent transaction cannot see before it commits).
const LOCK_ORDERED: &str = "SELECT pg_advisory_xact_lock(hashtextextended('ordered:' || $1, 0))";

fn plan_one(op: WriteOp, out: &mut Vec<Stmt>) {
    match op {
        WriteOp::PutMessage(m) => out.push(stmt!(
            "INSERT INTO messages (id, record) VALUES ($1, $2)
             ON CONFLICT (id) DO UPDATE SET record = EXCLUDED.record",
            codec::id(m.id),
            codec::encode(&m),
        )),
        WriteOp::PutDelivery(d) => {
            let (message, idx) = codec::delivery(d.id);
            out.push(stmt!(
                "INSERT INTO deliveries (message, idx, version, record) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (message, idx) DO UPDATE
                 SET version = EXCLUDED.version, record = EXCLUDED.record",
                message,
                idx,
                ms(d.version),
                codec::encode(&d),
            ))
        }
        WriteOp::Schedule {
            provider,
            due,
            id,
            app,
        } => {
            let (message, idx) = codec::delivery(id);
            out.push(stmt!(
                "INSERT INTO outbox (provider, due, message, idx, app) VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (provider, due, message, idx) DO UPDATE SET app = EXCLUDED.app",
                provider,
                ms(due),
                message,
                idx,
                app,
            ))
        }
        WriteOp::Unschedule { provider, due, id } => {
            let (message, idx) = codec::delivery(id);
            out.push(stmt!(
                "DELETE FROM outbox WHERE provider = $1 AND due = $2 AND message = $3 AND idx = $4",
                provider,
                ms(due),
                message,
                idx,
            ))
        }
        WriteOp::PutReference {
            provider,
            reference,
            id,
        } => {
            let (message, idx) = codec::delivery(id);
            out.push(stmt!(
                "INSERT INTO refs (provider, reference, message, idx) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (provider, reference) DO UPDATE
                 SET message = EXCLUDED.message, idx = EXCLUDED.idx",
                provider,
                reference,
                message,
                idx,
            ))
        }
        // No ON CONFLICT: a request id another node took first fails the write, which runs
        // again on its own and finds its `NewRequest` guard failing.
        WriteOp::PutIdempotency {
            app,
            request_id,
            entry,
        } => out.push(stmt!(
            "INSERT INTO idempotency (app, request_id, record) VALUES ($1, $2, $3)",
            app,
            request_id,
            codec::encode(&entry),
        )),
        WriteOp::ScheduleExpiry { at, message } => out.push(timer(at, message, false)),
        WriteOp::SchedulePurge { at, message } => out.push(timer(at, message, true)),
        WriteOp::DeleteMessage(id) => {
            out.push(stmt!("DELETE FROM messages WHERE id = $1", codec::id(id)))
        }
        WriteOp::DeleteDelivery(id) => {
            let (message, idx) = codec::delivery(id);
            out.push(stmt!(
                "DELETE FROM deliveries WHERE message = $1 AND idx = $2",
                message,
                idx
            ))
        }
        WriteOp::DeleteReference {
            provider,
            reference,
        } => out.push(stmt!(
            "DELETE FROM refs WHERE provider = $1 AND reference = $2",
            provider,
            reference
        )),
        WriteOp::DeleteIdempotency { app, request_id } => out.push(stmt!(
            "DELETE FROM idempotency WHERE app = $1 AND request_id = $2",
            app,
            request_id
        )),
        WriteOp::UnscheduleExpiry { at, message } => out.push(stmt!(
            "DELETE FROM timers WHERE at = $1 AND message = $2",
            ms(at),
            codec::id(message)
        )),
        WriteOp::PutEvent(e) => out.push(put_event(e.next_attempt_at, &e)),
        WriteOp::LogEvent(e) => out.push(stmt!(
            "INSERT INTO event_log (app, id, created_at, record) VALUES ($1, $2, $3, $4)
             ON CONFLICT (app, id) DO NOTHING",
            e.app.clone(),
            codec::id(e.id),
            ms(e.id.0.timestamp_ms()),
            codec::encode(&e),
        )),
        WriteOp::DeleteEvent { due, id } => out.push(stmt!(
            "DELETE FROM events WHERE due = $1 AND id = $2",
            ms(due),
            codec::id(id)
        )),
        WriteOp::PutEarlyReceipt { provider, receipt } => out.push(stmt!(
            "INSERT INTO early_receipts (provider, reference, record) VALUES ($1, $2, $3)
             ON CONFLICT (provider, reference) DO UPDATE SET record = EXCLUDED.record",
            provider,
            receipt.provider_ref.clone(),
            codec::encode(&receipt),
        )),
        WriteOp::DeleteEarlyReceipt {
            provider,
            reference,
        } => out.push(stmt!(
            "DELETE FROM early_receipts WHERE provider = $1 AND reference = $2",
            provider,
            reference
        )),
        WriteOp::PutGoneDevice { device, at } => out.push(stmt!(
            "INSERT INTO gone_devices (provider, cid, at) VALUES ($1, $2, $3)
             ON CONFLICT (provider, cid) DO UPDATE SET at = EXCLUDED.at",
            device.provider,
            device.cid,
            ms(at)
        )),
        WriteOp::DeleteGoneDevice(device) => out.push(stmt!(
            "DELETE FROM gone_devices WHERE provider = $1 AND cid = $2",
            device.provider,
            device.cid
        )),
        // No ON CONFLICT, as for request ids (the `NewUpstream` guard).
        WriteOp::PutUpstream(u) => out.push(stmt!(
            "INSERT INTO upstream (provider, msgid, record) VALUES ($1, $2, $3)",
            u.provider.clone(),
            u.msgid.clone(),
            codec::encode(&u),
        )),
        WriteOp::ScheduleRemoval { at, id, target } => {
            let (kind, provider, name) = match target {
                Removable::Upstream { provider, msgid } => ("upstream", provider, msgid),
                Removable::EarlyReceipt {
                    provider,
                    reference,
                } => ("early_receipt", provider, reference),
            };
            out.push(stmt!(
                "INSERT INTO removals (at, id, kind, provider, name) VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (at, id) DO UPDATE
                 SET kind = EXCLUDED.kind, provider = EXCLUDED.provider, name = EXCLUDED.name",
                ms(at),
                codec::id(id),
                kind.to_string(),
                provider,
                name,
            ))
        }
        WriteOp::EnqueueOrdered(e) => {
            let Some(key) = e.ordering_key.clone() else {
                // Not ordered after all: an ordinary event.
                out.push(put_event(e.next_attempt_at, &e));
                return;
            };
            out.push(stmt!(LOCK_ORDERED, key.clone()));
            // The head of an empty queue is due at once.
            out.push(stmt!(
                "INSERT INTO events (due, id, record)
                 SELECT $1, $2, $3 WHERE NOT EXISTS (SELECT 1 FROM ordered_events WHERE key = $4)
                 ON CONFLICT (due, id) DO NOTHING",
                ms(e.next_attempt_at),
                codec::id(e.id),
                codec::encode(&e),
                key.clone(),
            ));
            out.push(put_ordered(key, &e));
        }
        WriteOp::UpdateOrdered(e) => {
            if let Some(key) = e.ordering_key.clone() {
                out.push(put_ordered(key, &e));
            }
        }
        WriteOp::AdvanceOrdered { key, done, now } => {
            out.push(stmt!(LOCK_ORDERED, key.clone()));
            out.push(stmt!(
                "DELETE FROM ordered_events WHERE key = $1 AND id = $2",
                key.clone(),
                codec::id(done)
            ));
            // The next one becomes due now (its record's time is the row's `due`).
            out.push(stmt!(
                "INSERT INTO events (due, id, record)
                 SELECT $1, id, record FROM ordered_events WHERE key = $2 AND id > $3
                 ORDER BY id LIMIT 1
                 ON CONFLICT (due, id) DO NOTHING",
                ms(now),
                key,
                codec::id(done),
            ));
        }
        WriteOp::QueueAliasMirror(m) => out.push(stmt!(
            "INSERT INTO alias_mirrors (provider, app, cid, id, due, record)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (provider, app, cid) DO UPDATE
             SET id = EXCLUDED.id, due = EXCLUDED.due, record = EXCLUDED.record,
                 claimed_by = NULL, claim_until = 0",
            m.provider.clone(),
            m.app.clone(),
            m.cid.clone(),
            codec::id(m.id),
            ms(m.next_attempt_at),
            encode_mirror(&m),
        )),
        WriteOp::RetryAliasMirror(m) => out.push(stmt!(
            "UPDATE alias_mirrors SET due = $5, record = $6
             WHERE provider = $1 AND app = $2 AND cid = $3 AND id = $4",
            m.provider.clone(),
            m.app.clone(),
            m.cid.clone(),
            codec::id(m.id),
            ms(m.next_attempt_at),
            encode_mirror(&m),
        )),
        WriteOp::FinishAliasMirror(m) => out.push(stmt!(
            "DELETE FROM alias_mirrors WHERE provider = $1 AND app = $2 AND cid = $3 AND id = $4",
            m.provider.clone(),
            m.app.clone(),
            m.cid.clone(),
            codec::id(m.id),
        )),
    }
}

fn timer(at: u64, message: pushgate_api::model::MessageId, purge: bool) -> Stmt {
    stmt!(
        "INSERT INTO timers (at, message, purge) VALUES ($1, $2, $3)
         ON CONFLICT (at, message) DO UPDATE SET purge = EXCLUDED.purge",
        ms(at),
        codec::id(message),
        purge,
    )
}

fn put_event(due: u64, e: &EventRecord) -> Stmt {
    stmt!(
        "INSERT INTO events (due, id, record) VALUES ($1, $2, $3)
         ON CONFLICT (due, id) DO UPDATE SET record = EXCLUDED.record",
        ms(due),
        codec::id(e.id),
        codec::encode(e),
    )
}

fn put_ordered(key: String, e: &EventRecord) -> Stmt {
    stmt!(
        "INSERT INTO ordered_events (key, id, record) VALUES ($1, $2, $3)
         ON CONFLICT (key, id) DO UPDATE SET record = EXCLUDED.record",
        key,
        codec::id(e.id),
        codec::encode(e),
    )
}

fn encode_mirror(m: &AliasMirror) -> Vec<u8> {
    codec::encode(m)
}
