//! The delivery side of the contract: writes through the group-commit writer, reads from
//! the pool, due work claimed with `FOR UPDATE SKIP LOCKED`.

use async_trait::async_trait;
use pushgate_api::error::StoreError;
use pushgate_api::model::{
    AliasMirror, DeliveryId, DeliveryRecord, EventRecord, MessageId, MessageRecord, Receipt,
    UpstreamRecord,
};
use pushgate_store::{DeliveryStore, Guard, IdempotencyEntry, Lease, Timer, WriteOp};
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

use crate::codec::{self, from_ms, ms};
use crate::counts::Count;
use crate::messages::MessageCache;
use crate::ops;
use crate::PgStore;

/// The message records a write puts and deletes, for the cache once it committed.
struct MessageChanges {
    put: Vec<MessageRecord>,
    deleted: Vec<MessageId>,
}

impl MessageChanges {
    fn of(ops: &[WriteOp]) -> Self {
        let mut changes = MessageChanges {
            put: Vec::new(),
            deleted: Vec::new(),
        };
        for op in ops {
            match op {
                WriteOp::PutMessage(m) => changes.put.push(m.clone()),
                WriteOp::DeleteMessage(id) => changes.deleted.push(*id),
                _ => {}
            }
        }
        changes
    }

    fn apply(self, cache: &MessageCache) {
        for id in self.deleted {
            cache.remove(id);
        }
        for record in self.put {
            cache.put(record);
        }
    }
}

impl PgStore {
    /// Runs a read (or a claim, which is one statement) on a pooled connection.
    async fn rows(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, StoreError> {
        let client = self.client().await?;
        let statement = self.note(client.prepare_cached(sql).await)?;
        let rows = self.note(client.query(&statement, params).await)?;
        self.availability.up();
        Ok(rows)
    }

    async fn one_record<T: serde::de::DeserializeOwned>(
        &self,
        table: &str,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<T>, StoreError> {
        match self.rows(sql, params).await?.first() {
            Some(row) => codec::decode(table, row.get::<_, &[u8]>(0)).map(Some),
            None => Ok(None),
        }
    }

    async fn min_time(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<u64>, StoreError> {
        Ok(self
            .rows(sql, params)
            .await?
            .first()
            .and_then(|row| row.get::<_, Option<i64>>(0))
            .map(from_ms))
    }

    async fn count(&self, which: Count, key: &str) -> Result<u64, StoreError> {
        if let Some(n) = self.counts.fresh(which, key) {
            return Ok(n);
        }
        let sql = match which {
            Count::Provider => "SELECT count(*) FROM outbox WHERE provider = $1",
            Count::App => "SELECT count(*) FROM outbox WHERE app = $1",
        };
        let n = self
            .rows(sql, &[&key])
            .await?
            .first()
            .map(|row| from_ms(row.get::<_, i64>(0)))
            .unwrap_or(0);
        self.counts.keep(which, key, n);
        Ok(n)
    }

    /// Ends `owner`'s claim on the rows `sql` selects.
    async fn release_claim(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<(), StoreError> {
        let client = self.client().await?;
        let statement = self.note(client.prepare_cached(sql).await)?;
        self.note(client.execute(&statement, params).await)?;
        Ok(())
    }
}

#[async_trait]
impl DeliveryStore for PgStore {
    async fn apply(&self, ops: Vec<WriteOp>) -> Result<(), StoreError> {
        self.apply_if(Vec::new(), ops).await.map(|_| ())
    }

    async fn apply_if(&self, guards: Vec<Guard>, ops: Vec<WriteOp>) -> Result<bool, StoreError> {
        let messages = MessageChanges::of(&ops);
        let (guards, stmts) = ops::plan_guarded(guards, ops);
        let written = self.writer.write(guards, stmts).await?;
        if written {
            messages.apply(&self.messages);
        }
        Ok(written)
    }

    /// Every write has committed when its `apply` returned.
    async fn commit(&self) -> Result<(), StoreError> {
        Ok(())
    }

    async fn message(&self, id: MessageId) -> Result<Option<MessageRecord>, StoreError> {
        if let Some(record) = self.messages.get(id) {
            return Ok(Some(record));
        }
        let record: Option<MessageRecord> = self
            .one_record(
                "messages",
                "SELECT record FROM messages WHERE id = $1",
                &[&codec::id(id)],
            )
            .await?;
        if let Some(r) = &record {
            self.messages.put(r.clone());
        }
        Ok(record)
    }

    async fn deliveries(&self, id: MessageId) -> Result<Vec<DeliveryRecord>, StoreError> {
        self.rows(
            "SELECT record FROM deliveries WHERE message = $1 ORDER BY idx",
            &[&codec::id(id)],
        )
        .await?
        .iter()
        .map(|row| codec::decode("deliveries", row.get::<_, &[u8]>(0)))
        .collect()
    }

    async fn delivery(&self, id: DeliveryId) -> Result<Option<DeliveryRecord>, StoreError> {
        let (message, idx) = codec::delivery(id);
        self.one_record(
            "deliveries",
            "SELECT record FROM deliveries WHERE message = $1 AND idx = $2",
            &[&message, &idx],
        )
        .await
    }

    async fn idempotency(
        &self,
        app: &str,
        request_id: &str,
    ) -> Result<Option<IdempotencyEntry>, StoreError> {
        self.one_record(
            "idempotency",
            "SELECT record FROM idempotency WHERE app = $1 AND request_id = $2",
            &[&app, &request_id],
        )
        .await
    }

    async fn delivery_by_reference(
        &self,
        provider: &str,
        reference: &str,
    ) -> Result<Option<DeliveryId>, StoreError> {
        match self
            .rows(
                "SELECT message, idx FROM refs WHERE provider = $1 AND reference = $2",
                &[&provider, &reference],
            )
            .await?
            .first()
        {
            Some(row) => codec::parse_delivery(row.get(0), row.get(1)).map(Some),
            None => Ok(None),
        }
    }

    async fn gone_device(
        &self,
        device: &pushgate_api::model::DeviceRef,
    ) -> Result<Option<u64>, StoreError> {
        self.min_time(
            "SELECT at FROM gone_devices WHERE provider = $1 AND cid = $2",
            &[&device.provider, &device.cid],
        )
        .await
    }

    async fn early_receipt(
        &self,
        provider: &str,
        reference: &str,
    ) -> Result<Option<Receipt>, StoreError> {
        self.one_record(
            "early_receipts",
            "SELECT record FROM early_receipts WHERE provider = $1 AND reference = $2",
            &[&provider, &reference],
        )
        .await
    }

    async fn claim_due(
        &self,
        provider: &str,
        from: u64,
        now: u64,
        limit: usize,
        lease: &Lease,
    ) -> Result<Vec<(u64, DeliveryId)>, StoreError> {
        let rows = self
            .rows(
                "UPDATE outbox o SET claimed_by = $5, claim_until = $6
                 FROM (SELECT provider, due, message, idx FROM outbox
                       WHERE provider = $1 AND due >= $2 AND due <= $3 AND claim_until <= $3
                       ORDER BY due LIMIT $4 FOR UPDATE SKIP LOCKED) c
                 WHERE o.provider = c.provider AND o.due = c.due
                   AND o.message = c.message AND o.idx = c.idx
                 RETURNING o.due, o.message, o.idx",
                &[
                    &provider,
                    &ms(from),
                    &ms(now),
                    &(limit as i64),
                    &&*lease.owner,
                    &ms(lease.until),
                ],
            )
            .await?;
        let mut claimed = rows
            .iter()
            .map(|row| {
                Ok((
                    from_ms(row.get(0)),
                    codec::parse_delivery(row.get(1), row.get(2))?,
                ))
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        claimed.sort();
        Ok(claimed)
    }

    async fn release(&self, id: DeliveryId, owner: &str) -> Result<(), StoreError> {
        let (message, idx) = codec::delivery(id);
        self.release_claim(
            "UPDATE outbox SET claimed_by = NULL, claim_until = 0
             WHERE message = $1 AND idx = $2 AND claimed_by = $3",
            &[&message, &idx, &owner],
        )
        .await
    }

    async fn claimed(&self, id: DeliveryId, now: u64) -> Result<bool, StoreError> {
        let (message, idx) = codec::delivery(id);
        Ok(!self
            .rows(
                "SELECT 1 FROM outbox WHERE message = $1 AND idx = $2 AND claim_until > $3 LIMIT 1",
                &[&message, &idx, &ms(now)],
            )
            .await?
            .is_empty())
    }

    async fn next_due(&self, provider: &str) -> Result<Option<u64>, StoreError> {
        self.min_time(
            "SELECT min(due) FROM outbox WHERE provider = $1",
            &[&provider],
        )
        .await
    }

    /// Counted by the database, at most a second old.
    async fn outbox_depth(&self, provider: &str) -> Result<u64, StoreError> {
        self.count(Count::Provider, provider).await
    }

    /// Counted by the database, at most a second old.
    async fn backlog(&self, app: &str) -> Result<u64, StoreError> {
        self.count(Count::App, app).await
    }

    fn unavailable(&self) -> Option<String> {
        self.availability.reason()
    }

    /// Heartbeats in the `dispatchers` table; rows of nodes gone for long are dropped.
    async fn live_dispatchers(
        &self,
        provider: &str,
        node: &str,
        now: u64,
        within_ms: u64,
    ) -> Result<u64, StoreError> {
        let since = ms(now.saturating_sub(within_ms));
        self.rows(
            "INSERT INTO dispatchers (provider, node, seen_at) VALUES ($1, $2, $3)
             ON CONFLICT (provider, node) DO UPDATE SET seen_at = EXCLUDED.seen_at",
            &[&provider, &node, &ms(now)],
        )
        .await?;
        self.rows(
            "DELETE FROM dispatchers WHERE provider = $1 AND seen_at < $2",
            &[
                &provider,
                &ms(now.saturating_sub(within_ms.saturating_mul(100))),
            ],
        )
        .await?;
        Ok(self
            .rows(
                "SELECT count(*) FROM dispatchers WHERE provider = $1 AND seen_at >= $2",
                &[&provider, &since],
            )
            .await?
            .first()
            .map(|row| from_ms(row.get::<_, i64>(0)))
            .unwrap_or(1)
            .max(1))
    }

    /// Kept in the `secrets` table; the first node to ask stores its `fresh` one.
    async fn shared_secret(&self, name: &str, fresh: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.rows(
            "INSERT INTO secrets (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
            &[&name, &fresh],
        )
        .await?;
        Ok(self
            .rows("SELECT value FROM secrets WHERE name = $1", &[&name])
            .await?
            .first()
            .map(|row| row.get(0)))
    }

    async fn claim_timers(
        &self,
        now: u64,
        limit: usize,
        lease: &Lease,
    ) -> Result<Vec<(u64, MessageId, Timer)>, StoreError> {
        let rows = self
            .rows(
                "UPDATE timers t SET claimed_by = $3, claim_until = $4
                 FROM (SELECT at, message FROM timers
                       WHERE at <= $1 AND claim_until <= $1
                       ORDER BY at LIMIT $2 FOR UPDATE SKIP LOCKED) c
                 WHERE t.at = c.at AND t.message = c.message
                 RETURNING t.at, t.message, t.purge",
                &[&ms(now), &(limit as i64), &&*lease.owner, &ms(lease.until)],
            )
            .await?;
        let mut claimed = rows
            .iter()
            .map(|row| {
                let timer = if row.get::<_, bool>(2) {
                    Timer::Purge
                } else {
                    Timer::Expire
                };
                Ok((from_ms(row.get(0)), codec::parse_id(row.get(1))?, timer))
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        claimed.sort_by_key(|(at, id, _)| (*at, *id));
        Ok(claimed)
    }

    async fn release_timer(&self, message: MessageId, owner: &str) -> Result<(), StoreError> {
        self.release_claim(
            "UPDATE timers SET claimed_by = NULL, claim_until = 0
             WHERE message = $1 AND claimed_by = $2",
            &[&codec::id(message), &owner],
        )
        .await
    }

    async fn next_expiry(&self) -> Result<Option<u64>, StoreError> {
        self.min_time("SELECT min(at) FROM timers", &[]).await
    }

    /// Removes each due record once, whichever node runs it (the removals taken are locked).
    async fn remove_due(&self, now: u64, limit: usize) -> Result<usize, StoreError> {
        let rows = self
            .rows(
                "WITH due AS (
                     DELETE FROM removals r USING (
                         SELECT at, id FROM removals WHERE at <= $1
                         ORDER BY at LIMIT $2 FOR UPDATE SKIP LOCKED) c
                     WHERE r.at = c.at AND r.id = c.id
                     RETURNING r.kind, r.provider, r.name),
                 gone_upstream AS (
                     DELETE FROM upstream u USING due
                     WHERE due.kind = 'upstream' AND u.provider = due.provider
                       AND u.msgid = due.name),
                 gone_receipts AS (
                     DELETE FROM early_receipts e USING due
                     WHERE due.kind = 'early_receipt' AND e.provider = due.provider
                       AND e.reference = due.name)
                 SELECT count(*) FROM due",
                &[&ms(now), &(limit as i64)],
            )
            .await?;
        Ok(rows
            .first()
            .map(|row| from_ms(row.get::<_, i64>(0)) as usize)
            .unwrap_or(0))
    }

    async fn next_removal(&self) -> Result<Option<u64>, StoreError> {
        self.min_time("SELECT min(at) FROM removals", &[]).await
    }

    async fn claim_events(
        &self,
        from: u64,
        now: u64,
        limit: usize,
        lease: &Lease,
    ) -> Result<Vec<EventRecord>, StoreError> {
        let rows = self
            .rows(
                "UPDATE events e SET claimed_by = $4, claim_until = $5
                 FROM (SELECT due, id FROM events
                       WHERE due >= $1 AND due <= $2 AND claim_until <= $2
                       ORDER BY due LIMIT $3 FOR UPDATE SKIP LOCKED) c
                 WHERE e.due = c.due AND e.id = c.id
                 RETURNING e.due, e.record",
                &[
                    &ms(from),
                    &ms(now),
                    &(limit as i64),
                    &&*lease.owner,
                    &ms(lease.until),
                ],
            )
            .await?;
        let mut events = rows
            .iter()
            .map(|row| {
                let mut event: EventRecord = codec::decode("events", row.get::<_, &[u8]>(1))?;
                // The row's time is the event's (an ordered event is queued at its enqueue
                // time and becomes due when its predecessor is done).
                event.next_attempt_at = from_ms(row.get(0));
                Ok(event)
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        events.sort_by_key(|e| (e.next_attempt_at, e.id));
        Ok(events)
    }

    async fn release_event(&self, id: MessageId, owner: &str) -> Result<(), StoreError> {
        self.release_claim(
            "UPDATE events SET claimed_by = NULL, claim_until = 0
             WHERE id = $1 AND claimed_by = $2",
            &[&codec::id(id), &owner],
        )
        .await
    }

    async fn next_event_due(&self) -> Result<Option<u64>, StoreError> {
        self.min_time("SELECT min(due) FROM events", &[]).await
    }

    async fn upstream(
        &self,
        provider: &str,
        msgid: &str,
    ) -> Result<Option<UpstreamRecord>, StoreError> {
        self.one_record(
            "upstream",
            "SELECT record FROM upstream WHERE provider = $1 AND msgid = $2",
            &[&provider, &msgid],
        )
        .await
    }

    async fn claim_alias_mirrors(
        &self,
        now: u64,
        limit: usize,
        lease: &Lease,
    ) -> Result<Vec<AliasMirror>, StoreError> {
        let rows = self
            .rows(
                "UPDATE alias_mirrors m SET claimed_by = $3, claim_until = $4
                 FROM (SELECT provider, app, cid FROM alias_mirrors
                       WHERE due <= $1 AND claim_until <= $1
                       ORDER BY due LIMIT $2 FOR UPDATE SKIP LOCKED) c
                 WHERE m.provider = c.provider AND m.app = c.app AND m.cid = c.cid
                 RETURNING m.record",
                &[&ms(now), &(limit as i64), &&*lease.owner, &ms(lease.until)],
            )
            .await?;
        let mut mirrors = rows
            .iter()
            .map(|row| codec::decode::<AliasMirror>("alias_mirrors", row.get::<_, &[u8]>(0)))
            .collect::<Result<Vec<_>, StoreError>>()?;
        mirrors.sort_by_key(|m| (m.next_attempt_at, m.id));
        Ok(mirrors)
    }

    async fn release_alias_mirror(&self, id: MessageId, owner: &str) -> Result<(), StoreError> {
        self.release_claim(
            "UPDATE alias_mirrors SET claimed_by = NULL, claim_until = 0
             WHERE id = $1 AND claimed_by = $2",
            &[&codec::id(id), &owner],
        )
        .await
    }

    async fn next_alias_mirror(&self) -> Result<Option<u64>, StoreError> {
        self.min_time("SELECT min(due) FROM alias_mirrors", &[])
            .await
    }

    async fn next_ordered(
        &self,
        key: &str,
        after: Option<MessageId>,
    ) -> Result<Option<EventRecord>, StoreError> {
        let after = after.map(codec::id).unwrap_or_default();
        self.one_record(
            "ordered_events",
            "SELECT record FROM ordered_events WHERE key = $1 AND id > $2 ORDER BY id LIMIT 1",
            &[&key, &after],
        )
        .await
    }

    async fn logged_events(
        &self,
        app: &str,
        after: Option<MessageId>,
        limit: usize,
    ) -> Result<Vec<EventRecord>, StoreError> {
        let after = after.map(codec::id).unwrap_or_default();
        let rows = self
            .rows(
                "SELECT record FROM event_log WHERE app = $1 AND id > $2 ORDER BY id LIMIT $3",
                &[&app, &after, &(limit as i64)],
            )
            .await?;
        rows.iter()
            .map(|row| codec::decode("event_log", row.get::<_, &[u8]>(0)))
            .collect()
    }

    async fn prune_event_log(&self, before: u64, limit: usize) -> Result<usize, StoreError> {
        let rows = self
            .rows(
                "WITH old AS (
                     DELETE FROM event_log l USING (
                         SELECT app, id FROM event_log WHERE created_at < $1
                         LIMIT $2 FOR UPDATE SKIP LOCKED) o
                     WHERE l.app = o.app AND l.id = o.id
                     RETURNING 1)
                 SELECT count(*) FROM old",
                &[&ms(before), &(limit as i64)],
            )
            .await?;
        Ok(rows
            .first()
            .map(|row| from_ms(row.get::<_, i64>(0)) as usize)
            .unwrap_or(0))
    }
}
