//! The store contract on a real PostgreSQL server, with several stores ("nodes") on one
//! database racing each other. Needs `PUSHGATE_TEST_DATABASE_URL` (scripts/test.sh starts a
//! throwaway server and sets it).

use std::collections::HashSet;
use std::sync::Arc;

use pushgate_api::model::{
    AliasMirror, DeliveryId, DeliveryRecord, DeviceRef, EventKind, EventRecord, MessageId,
    MirrorOp, UpstreamRecord,
};
use pushgate_store::{
    no_mirrors, BindError, Binding, DeliveryStore, Guard, IdempotencyEntry, IdentityStore, Lease,
    Removable, Timer, WriteOp,
};
use pushgate_store_postgres::{open, PgOptions, PgStore};

fn admin_url() -> String {
    std::env::var("PUSHGATE_TEST_DATABASE_URL").unwrap_or_else(|_| {
        panic!(
            "PUSHGATE_TEST_DATABASE_URL is not set: these tests need a PostgreSQL server. Run \
             scripts/test.sh, which starts a throwaway one on 127.0.0.1"
        )
    })
}

/// A new empty database; its URL.
async fn fresh_database() -> String {
    let admin = admin_url();
    let (client, connection) = tokio_postgres::connect(&admin, tokio_postgres::NoTls)
        .await
        .expect("connect to the test server");
    tokio::spawn(connection);
    let name = format!("c_{}", MessageId::generate().to_string().to_lowercase());
    client
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .expect("create database");
    let base = admin.rsplit_once('/').map(|(b, _)| b).unwrap_or(&admin);
    format!("{base}/{name}")
}

fn options(url: &str, node: &str) -> PgOptions {
    PgOptions {
        url: url.to_string(),
        pool_size: 6,
        application_name: format!("contract {node}"),
    }
}

/// `n` stores on one new database, opened at the same moment (their migrations race).
async fn nodes(n: usize) -> (String, Vec<Arc<PgStore>>) {
    let url = fresh_database().await;
    let opens = (0..n).map(|i| {
        let url = url.clone();
        tokio::spawn(async move { open(&options(&url, &format!("n{i}"))).await })
    });
    let mut stores = Vec::new();
    for handle in opens {
        stores.push(Arc::new(handle.await.expect("join").expect("open")));
    }
    (url, stores)
}

fn lease(owner: &str, until: u64) -> Lease {
    Lease {
        owner: owner.into(),
        until,
    }
}

fn delivery_id(index: u16) -> DeliveryId {
    DeliveryId {
        message: MessageId::generate(),
        index,
    }
}

fn event(key: Option<&str>, due: u64) -> EventRecord {
    EventRecord {
        id: MessageId::generate(),
        app: "app".into(),
        kind: EventKind::UpstreamReceived,
        created_at: due,
        data: serde_json::json!({}),
        attempts: 0,
        next_attempt_at: due,
        ordering_key: key.map(str::to_string),
    }
}

async fn query_one(url: &str, sql: &str) -> i64 {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(connection);
    client.query_one(sql, &[]).await.expect(sql).get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_starting_together_migrate_once_and_a_newer_schema_is_refused() {
    let (url, _stores) = nodes(3).await;
    assert_eq!(
        query_one(&url, "SELECT count(*) FROM pushgate_migrations").await,
        pushgate_store_postgres::migrate::MIGRATIONS.len() as i64
    );
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(connection);
    client
        .batch_execute("INSERT INTO pushgate_migrations (version, name) VALUES (99, 'future')")
        .await
        .expect("insert");
    let refused = open(&options(&url, "late")).await.err().expect("refused");
    assert!(refused.to_string().contains("newer"), "{refused}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_url_or_an_absent_server_fails_open_with_a_clear_error() {
    assert!(pushgate_store_postgres::check_url("mysql://x").is_err());
    let closed = open(&options("postgres://nobody@127.0.0.1:1/none", "n"))
        .await
        .err()
        .expect("no server on port 1");
    assert!(closed.to_string().contains("cannot connect"), "{closed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_due_delivery_is_claimed_by_one_node_until_its_lease_passes() {
    let (_url, stores) = nodes(3).await;
    let ids: Vec<DeliveryId> = (0..120).map(|i| delivery_id(i % 3)).collect();
    let ops = ids
        .iter()
        .enumerate()
        .map(|(i, id)| WriteOp::Schedule {
            provider: "p".into(),
            due: 1_000 + i as u64,
            id: *id,
            app: "app".into(),
        })
        .collect();
    stores[0].apply(ops).await.expect("schedule");
    // Three nodes claim at once, each more than its share.
    let claims = stores.iter().enumerate().map(|(i, store)| {
        let store = store.clone();
        tokio::spawn(async move {
            store
                .claim_due("p", 0, 5_000, 100, &lease(&format!("n{i}"), 10_000))
                .await
                .expect("claim")
        })
    });
    let mut seen = HashSet::new();
    let mut total = 0;
    for claim in claims {
        let got = claim.await.expect("join");
        assert!(got.windows(2).all(|w| w[0].0 <= w[1].0), "oldest first");
        total += got.len();
        seen.extend(got.into_iter().map(|(_, id)| id));
    }
    assert_eq!(total, 120, "every delivery claimed");
    assert_eq!(seen.len(), 120, "none claimed twice");
    // Live leases keep them; a release by another owner changes nothing.
    assert!(stores[1]
        .claim_due("p", 0, 5_000, 500, &lease("n1", 10_000))
        .await
        .expect("claim")
        .is_empty());
    assert!(stores[1].claimed(ids[0], 5_000).await.expect("claimed"));
    let holder_of_first = stores[0]
        .claim_due("p", 0, 10_000, 500, &lease("n0", 20_000))
        .await
        .expect("claim after the leases passed");
    assert_eq!(holder_of_first.len(), 120, "dead leases are taken over");
    stores[2].release(ids[0], "n2").await.expect("release");
    assert!(stores[2].claimed(ids[0], 10_001).await.expect("claimed"));
    stores[0].release(ids[0], "n0").await.expect("release");
    assert!(!stores[2].claimed(ids[0], 10_001).await.expect("claimed"));
    assert_eq!(
        stores[2]
            .claim_due("p", 0, 10_001, 500, &lease("n2", 30_000))
            .await
            .expect("claim")
            .iter()
            .map(|(_, id)| *id)
            .collect::<Vec<_>>(),
        vec![ids[0]]
    );
    assert_eq!(stores[1].next_due("p").await.expect("next"), Some(1_000));
    assert_eq!(stores[1].next_due("q").await.expect("next"), None);
    assert_eq!(stores[1].outbox_depth("p").await.expect("depth"), 120);
    assert_eq!(stores[1].backlog("app").await.expect("backlog"), 120);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_id_sent_to_three_nodes_at_once_is_taken_once() {
    let (_url, stores) = nodes(3).await;
    for round in 0..10 {
        let request_id = format!("r{round}");
        let tries = stores.iter().map(|store| {
            let store = store.clone();
            let request_id = request_id.clone();
            tokio::spawn(async move {
                let entry = IdempotencyEntry {
                    message_id: MessageId::generate(),
                    fingerprint: "f".into(),
                    deliveries: 1,
                };
                store
                    .apply_if(
                        vec![Guard::NewRequest {
                            app: "app".into(),
                            request_id: request_id.clone(),
                        }],
                        vec![WriteOp::PutIdempotency {
                            app: "app".into(),
                            request_id,
                            entry,
                        }],
                    )
                    .await
                    .expect("apply_if")
            })
        });
        let mut taken = 0;
        for t in tries {
            taken += usize::from(t.await.expect("join"));
        }
        assert_eq!(taken, 1, "round {round}");
        assert!(stores[2]
            .idempotency("app", &request_id)
            .await
            .expect("read")
            .is_some());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_is_written_only_over_the_version_it_was_read_at() {
    let (_url, stores) = nodes(2).await;
    let id = delivery_id(0);
    let device = DeviceRef {
        provider: "p".into(),
        cid: "c".into(),
    };
    let mut record = DeliveryRecord::queued(id, &device, 1);
    let put = |record: &DeliveryRecord, version| {
        let store = stores[0].clone();
        let record = record.clone();
        async move {
            store
                .apply_if(
                    vec![Guard::DeliveryVersion { id, version }],
                    vec![WriteOp::PutDelivery(record)],
                )
                .await
                .expect("apply_if")
        }
    };
    record.version = 6;
    assert!(
        !put(&record, 5).await,
        "over a version of a delivery that is not there"
    );
    assert_eq!(stores[0].delivery(id).await.expect("read"), None);
    // Written at version 0 unguarded (as an accept does), then over 0.
    record.version = 0;
    stores[0]
        .apply(vec![WriteOp::PutDelivery(record.clone())])
        .await
        .expect("put");
    record.version = 1;
    assert!(
        put(&record, 0).await,
        "over the version 0 it was written at"
    );
    assert!(!put(&record, 0).await, "stale: stored at 1");
    // Two nodes write over version 1 at once: one wins.
    record.version = 2;
    let (a, b) = tokio::join!(put(&record, 1), async {
        stores[1]
            .apply_if(
                vec![Guard::DeliveryVersion { id, version: 1 }],
                vec![WriteOp::PutDelivery(record.clone())],
            )
            .await
            .expect("apply_if")
    });
    assert!(a ^ b, "exactly one of two racing writers wins ({a}, {b})");
    assert_eq!(
        stores[1]
            .delivery(id)
            .await
            .expect("read")
            .map(|d| d.version),
        Some(2)
    );
}

/// Writes sent together share one transaction: a guard that fails among them must neither
/// write its own statements nor cost the others theirs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_guard_among_writes_sent_together_fails_only_its_own() {
    let (_url, stores) = nodes(1).await;
    let store = stores[0].clone();
    let device = DeviceRef {
        provider: "p".into(),
        cid: "c".into(),
    };
    let ids: Vec<DeliveryId> = (0..64).map(|_| delivery_id(0)).collect();
    for id in &ids {
        let mut record = DeliveryRecord::queued(*id, &device, 1);
        record.version = 1;
        store
            .apply(vec![WriteOp::PutDelivery(record)])
            .await
            .expect("put");
    }
    // Every third write is over a version that is not stored; all are sent at once.
    let writes = ids.iter().enumerate().map(|(i, id)| {
        let store = store.clone();
        let mut record = DeliveryRecord::queued(*id, &device, 1);
        record.version = 2;
        let read_at = if i % 3 == 0 { 7 } else { 1 };
        let timer = MessageId::generate();
        tokio::spawn(async move {
            store
                .apply_if(
                    vec![Guard::DeliveryVersion {
                        id: record.id,
                        version: read_at,
                    }],
                    vec![
                        WriteOp::PutDelivery(record),
                        WriteOp::ScheduleExpiry {
                            at: 1,
                            message: timer,
                        },
                    ],
                )
                .await
                .expect("apply_if")
        })
    });
    let mut results = Vec::new();
    for w in writes {
        results.push(w.await.expect("join"));
    }
    for (i, (id, written)) in ids.iter().zip(&results).enumerate() {
        assert_eq!(*written, i % 3 != 0, "write {i}");
        let stored = store.delivery(*id).await.expect("read").map(|d| d.version);
        assert_eq!(stored, Some(if i % 3 == 0 { 1 } else { 2 }), "delivery {i}");
    }
    // Only the written ones left their timer behind.
    let timers = store
        .claim_timers(10, 1000, &lease("n0", 100))
        .await
        .expect("timers");
    assert_eq!(timers.len(), results.iter().filter(|w| **w).count());
}

/// The queue tables are vacuumed by the nodes themselves once they hold dead rows (claims
/// scan them by time, and autovacuum comes by once a minute at most).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_vacuums_the_queue_tables_once_they_hold_dead_rows() {
    let (url, stores) = nodes(1).await;
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(connection);
    // 1,200 outbox entries and events, sent and done.
    let ids: Vec<DeliveryId> = (0..1200).map(|_| delivery_id(0)).collect();
    let events: Vec<EventRecord> = (0..1200).map(|i| event(None, i)).collect();
    for (ids, events) in ids.chunks(200).zip(events.chunks(200)) {
        let mut put = Vec::new();
        let mut done = Vec::new();
        for (id, e) in ids.iter().zip(events) {
            put.push(WriteOp::Schedule {
                provider: "p".into(),
                due: 1,
                id: *id,
                app: "a".into(),
            });
            put.push(WriteOp::PutEvent(e.clone()));
            done.push(WriteOp::Unschedule {
                provider: "p".into(),
                due: 1,
                id: *id,
            });
            done.push(WriteOp::DeleteEvent {
                due: e.next_attempt_at,
                id: e.id,
            });
        }
        stores[0].apply(put).await.expect("put");
        stores[0].apply(done).await.expect("done");
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        // Statistics reach the view a moment after the vacuum.
        let vacuumed: i64 = client
            .query_one(
                "SELECT count(*) FROM pg_stat_user_tables
                 WHERE relname IN ('outbox', 'events') AND last_vacuum IS NOT NULL",
                &[],
            )
            .await
            .expect("stats")
            .get(0);
        if vacuumed == 2 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "outbox and events not vacuumed within 20 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// Ops the store writes as one statement (an entry moved to another time; an event logged
/// and queued) come out as the two ops would.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paired_ops_write_what_each_would() {
    let (_url, stores) = nodes(1).await;
    let store = &stores[0];
    let id = delivery_id(0);
    let schedule = |due| WriteOp::Schedule {
        provider: "p".into(),
        due,
        id,
        app: "a".into(),
    };
    store.apply(vec![schedule(5)]).await.expect("schedule");
    store
        .apply(vec![
            WriteOp::Unschedule {
                provider: "p".into(),
                due: 5,
                id,
            },
            schedule(7),
        ])
        .await
        .expect("move");
    let due = store
        .claim_due("p", 0, 100, 10, &lease("n0", 1000))
        .await
        .expect("claim");
    assert_eq!(due, vec![(7, id)], "only the moved entry");
    let e = event(None, 3);
    store
        .apply(vec![
            WriteOp::LogEvent(e.clone()),
            WriteOp::PutEvent(e.clone()),
        ])
        .await
        .expect("event");
    let logged = store.logged_events("app", None, 10).await.expect("log");
    assert_eq!(logged.iter().map(|l| l.id).collect::<Vec<_>>(), vec![e.id]);
    let queued = store
        .claim_events(0, 10, 10, &lease("n0", 1000))
        .await
        .expect("claim");
    assert_eq!(queued, vec![e]);
}

/// A node keeps the message records it wrote; another node reads them from the database,
/// and a deletion on the writing node is seen there at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_records_read_the_same_on_every_node_until_deleted() {
    let (_url, stores) = nodes(2).await;
    let id = MessageId::generate();
    let record: pushgate_api::model::MessageRecord = serde_json::from_value(serde_json::json!({
        "id": id.to_string(), "app": "a", "to": {"alias": "x"}, "payload": {"n": 1},
        "created_at": 0, "expires_at": 1, "delivery_count": 1
    }))
    .expect("record");
    stores[0]
        .apply(vec![WriteOp::PutMessage(record.clone())])
        .await
        .expect("put");
    for store in &stores {
        assert_eq!(store.message(id).await.expect("read"), Some(record.clone()));
    }
    stores[0]
        .apply(vec![WriteOp::DeleteMessage(id)])
        .await
        .expect("delete");
    assert_eq!(stores[0].message(id).await.expect("read"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_binds_on_three_nodes_keep_the_alias_rules() {
    let (_url, stores) = nodes(3).await;
    let device = |cid: &str| DeviceRef {
        provider: "p".into(),
        cid: cid.into(),
    };
    // Six devices race onto one alias that holds two.
    let binds = (0..6).map(|i| {
        let store = stores[i % 3].clone();
        tokio::spawn(async move {
            store
                .bind_device(
                    "app",
                    "bob",
                    Binding::of(device(&format!("d{i}")), 2, 1),
                    &no_mirrors,
                )
                .await
        })
    });
    let (mut bound, mut full) = (0, 0);
    for b in binds {
        match b.await.expect("join") {
            Ok(_) => bound += 1,
            Err(BindError::Full { max: 2 }) => full += 1,
            Err(e) => panic!("bind failed: {e}"),
        }
    }
    assert_eq!((bound, full), (2, 4));
    assert_eq!(
        stores[0]
            .alias("app", "bob")
            .await
            .expect("read")
            .map(|r| r.devices.len()),
        Some(2)
    );
    // One device races onto three aliases: it ends on exactly one.
    let moves = ["x", "y", "z"].into_iter().enumerate().map(|(i, alias)| {
        let store = stores[i].clone();
        tokio::spawn(async move {
            store
                .bind_device(
                    "app",
                    alias,
                    Binding::of(device("roamer"), 5, 2),
                    &no_mirrors,
                )
                .await
                .expect("bind")
        })
    });
    for m in moves {
        m.await.expect("join");
    }
    let home = stores[1]
        .device_alias("app", &device("roamer"))
        .await
        .expect("read")
        .expect("bound");
    let mut holders = 0;
    for alias in ["x", "y", "z"] {
        if let Some(record) = stores[2].alias("app", alias).await.expect("read") {
            assert!(record.devices.iter().any(|d| d.cid == "roamer"));
            assert_eq!(alias, home);
            holders += 1;
        }
    }
    assert_eq!(holders, 1, "a device is on one alias");
    assert!(stores[0]
        .unbind_device("app", &home, &device("roamer"), &no_mirrors)
        .await
        .expect("unbind"));
    assert!(stores[0]
        .unbind_alias("app", "bob", &no_mirrors)
        .await
        .expect("unbind")
        .is_some());
    assert!(stores[1].alias("app", "bob").await.expect("read").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ordered_queue_has_one_head_however_many_nodes_enqueue() {
    let (_url, stores) = nodes(3).await;
    let enqueued = (0..12).map(|i| {
        let store = stores[i % 3].clone();
        tokio::spawn(async move {
            let e = event(Some("alice"), 100);
            store
                .apply(vec![WriteOp::EnqueueOrdered(e.clone())])
                .await
                .expect("enqueue");
            e.id
        })
    });
    let mut ids = Vec::new();
    for e in enqueued {
        ids.push(e.await.expect("join"));
    }
    ids.sort();
    let mut order = Vec::new();
    let mut now = 1_000;
    loop {
        let due = stores[order.len() % 3]
            .claim_events(0, now, 100, &lease("n", 0))
            .await
            .expect("claim");
        if due.is_empty() {
            break;
        }
        assert_eq!(due.len(), 1, "only the head is due");
        let head = &due[0];
        assert_eq!(
            head.next_attempt_at,
            if order.is_empty() { 100 } else { now - 1 }
        );
        order.push(head.id);
        stores[0]
            .apply(vec![
                WriteOp::DeleteEvent {
                    due: head.next_attempt_at,
                    id: head.id,
                },
                WriteOp::AdvanceOrdered {
                    key: "alice".into(),
                    done: head.id,
                    now,
                },
            ])
            .await
            .expect("advance");
        now += 1;
    }
    assert_eq!(order, ids, "in id order, each once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timers_events_and_removals_are_handled_once_across_nodes() {
    let (url, stores) = nodes(2).await;
    let mut ops = Vec::new();
    for i in 0..40u64 {
        ops.push(WriteOp::ScheduleExpiry {
            at: 10 + i,
            message: MessageId::generate(),
        });
        ops.push(WriteOp::PutEvent(event(None, 10 + i)));
        let upstream = UpstreamRecord {
            id: MessageId::generate(),
            app: "app".into(),
            provider: "p".into(),
            cid: "c".into(),
            msgid: format!("m{i}"),
            from: None,
            payload: "x".into(),
            received_at: 1,
            sent_at: None,
        };
        ops.push(WriteOp::ScheduleRemoval {
            at: 10 + i,
            id: upstream.id,
            target: Removable::Upstream {
                provider: "p".into(),
                msgid: upstream.msgid.clone(),
            },
        });
        ops.push(WriteOp::PutUpstream(upstream));
    }
    ops.push(WriteOp::SchedulePurge {
        at: 5,
        message: MessageId::generate(),
    });
    stores[0].apply(ops).await.expect("write");

    let (la, lb) = (lease("a", 5_000), lease("b", 5_000));
    let (a, b) = tokio::join!(
        stores[0].claim_timers(1_000, 30, &la),
        stores[1].claim_timers(1_000, 30, &lb),
    );
    let (a, b) = (a.expect("claim"), b.expect("claim"));
    assert_eq!(a.len() + b.len(), 41);
    let ids: HashSet<MessageId> = a.iter().chain(&b).map(|(_, id, _)| *id).collect();
    assert_eq!(ids.len(), 41);
    let purges = a
        .iter()
        .chain(&b)
        .filter(|(_, _, t)| *t == Timer::Purge)
        .count();
    assert_eq!(purges, 1);

    let (a, b) = tokio::join!(
        stores[0].claim_events(0, 1_000, 30, &la),
        stores[1].claim_events(0, 1_000, 30, &lb),
    );
    let (a, b) = (a.expect("claim"), b.expect("claim"));
    let ids: HashSet<MessageId> = a.iter().chain(&b).map(|e| e.id).collect();
    assert_eq!((a.len() + b.len(), ids.len()), (40, 40));

    let (a, b) = tokio::join!(
        stores[0].remove_due(1_000, 25),
        stores[1].remove_due(1_000, 25)
    );
    let (a, b) = (a.expect("remove"), b.expect("remove"));
    let rest = stores[0].remove_due(1_000, 100).await.expect("remove");
    assert_eq!(a + b + rest, 40, "each removal once");
    assert_eq!(query_one(&url, "SELECT count(*) FROM upstream").await, 0);
    assert_eq!(stores[1].next_removal().await.expect("next"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newer_alias_mirror_supersedes_and_a_shared_secret_is_one() {
    let (_url, stores) = nodes(2).await;
    let mirror = |alias: &str, due: u64| AliasMirror {
        id: MessageId::generate(),
        app: "app".into(),
        provider: "getui".into(),
        cid: "c1".into(),
        alias: alias.into(),
        op: MirrorOp::Bind,
        attempts: 0,
        next_attempt_at: due,
        created_at: due,
    };
    let first = mirror("alice", 10);
    let newer = mirror("carol", 20);
    stores[0]
        .apply(vec![WriteOp::QueueAliasMirror(first.clone())])
        .await
        .expect("queue");
    stores[1]
        .apply(vec![WriteOp::QueueAliasMirror(newer.clone())])
        .await
        .expect("queue");
    stores[0]
        .apply(vec![WriteOp::FinishAliasMirror(first)])
        .await
        .expect("stale finish");
    let due = stores[1]
        .claim_alias_mirrors(100, 10, &lease("b", 1_000))
        .await
        .expect("claim");
    assert_eq!(due, vec![newer.clone()]);
    assert!(stores[0]
        .claim_alias_mirrors(100, 10, &lease("a", 1_000))
        .await
        .expect("claim")
        .is_empty());
    stores[1]
        .apply(vec![WriteOp::FinishAliasMirror(newer)])
        .await
        .expect("finish");
    assert_eq!(stores[0].next_alias_mirror().await.expect("next"), None);

    let a = stores[0]
        .shared_secret("k", b"from-a")
        .await
        .expect("secret");
    let b = stores[1]
        .shared_secret("k", b"from-b")
        .await
        .expect("secret");
    assert_eq!(a.as_deref(), Some(&b"from-a"[..]));
    assert_eq!(a, b);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_reported_gone_is_known_to_every_node_until_it_is_bound_again() {
    let (_url, stores) = nodes(2).await;
    let device = DeviceRef {
        provider: "fcm".into(),
        cid: "token-1".into(),
    };
    assert_eq!(stores[1].gone_device(&device).await.expect("read"), None);
    stores[0]
        .apply(vec![WriteOp::PutGoneDevice {
            device: device.clone(),
            at: 1_700_000_000_000,
        }])
        .await
        .expect("write");
    assert_eq!(
        stores[1].gone_device(&device).await.expect("read"),
        Some(1_700_000_000_000)
    );
    stores[1]
        .apply(vec![WriteOp::DeleteGoneDevice(device.clone())])
        .await
        .expect("delete");
    assert_eq!(stores[0].gone_device(&device).await.expect("read"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_node_reads_the_event_log_in_id_order_and_one_prune_takes_each_old_event() {
    let (_url, stores) = nodes(2).await;
    let now = pushgate_api::clock::now_ms();
    let old = |n: u128| EventRecord {
        id: MessageId::from_bytes(((u128::from(now - 60_000) << 80) | n).to_be_bytes()),
        ..event(None, now)
    };
    let mut written = vec![old(1), old(2), event(None, now), event(None, now)];
    written.sort_by_key(|e| e.id);
    for (i, e) in written.iter().enumerate() {
        stores[i % 2]
            .apply(vec![WriteOp::LogEvent(e.clone())])
            .await
            .expect("log");
    }
    let read = stores[1]
        .logged_events("app", None, 10)
        .await
        .expect("read");
    assert_eq!(read, written);
    let page = stores[0]
        .logged_events("app", Some(written[1].id), 1)
        .await
        .expect("page");
    assert_eq!(page, vec![written[2].clone()]);
    assert!(stores[0]
        .logged_events("other", None, 10)
        .await
        .expect("other app")
        .is_empty());
    let (a, b) = tokio::join!(
        stores[0].prune_event_log(now - 30_000, 100),
        stores[1].prune_event_log(now - 30_000, 100)
    );
    assert_eq!(a.expect("prune") + b.expect("prune"), 2);
    let left = stores[1]
        .logged_events("app", None, 10)
        .await
        .expect("read");
    assert_eq!(left, written[2..].to_vec());
}
