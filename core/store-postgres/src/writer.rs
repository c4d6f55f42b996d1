//! Group commit: write jobs that arrive together run in one transaction, so one commit (one
//! WAL flush) serves many requests. Each job answers once its transaction has committed.
//! When a job of a group fails (a race on a unique key, a deadlock), the group is rolled back
//! and its jobs run again one by one, each in its own transaction.

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::Pool;
use pushgate_api::error::StoreError;
use pushgate_store::Guard;
use tokio::sync::{mpsc, oneshot, Mutex};

use crate::availability::Availability;
use crate::error;
use crate::ops::{self, Stmt};

/// Most jobs in one transaction.
const GROUP_MAX: usize = 128;
/// Most runs of a job alone that keep losing races (deadlocks, serialization failures).
const ALONE_ATTEMPTS: u32 = 6;

/// A guarded write and where its result goes.
pub struct Job {
    pub guards: Vec<Guard>,
    pub stmts: Vec<Stmt>,
    reply: oneshot::Sender<Result<bool, StoreError>>,
}

/// The handle the store writes through.
pub struct Writer {
    jobs: mpsc::Sender<Job>,
}

impl Writer {
    /// Starts `count` writer tasks, each committing groups on its own connection.
    pub fn start(pool: Pool, count: usize, availability: Arc<Availability>) -> Self {
        let (jobs, queue) = mpsc::channel::<Job>(GROUP_MAX * count * 4);
        let queue = Arc::new(Mutex::new(queue));
        for _ in 0..count {
            tokio::spawn(run(pool.clone(), queue.clone(), availability.clone()));
        }
        Writer { jobs }
    }

    /// Writes `stmts` if every guard holds, once committed; `false` if a guard failed.
    pub async fn write(&self, guards: Vec<Guard>, stmts: Vec<Stmt>) -> Result<bool, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Job {
                guards,
                stmts,
                reply,
            })
            .await
            .map_err(|_| StoreError::Backend("the PostgreSQL writer has stopped".into()))?;
        answer
            .await
            .map_err(|_| StoreError::Backend("the PostgreSQL writer dropped a write".into()))?
    }
}

/// One writer task: takes the jobs waiting (up to [`GROUP_MAX`]) and commits them together.
async fn run(pool: Pool, queue: Arc<Mutex<mpsc::Receiver<Job>>>, availability: Arc<Availability>) {
    loop {
        let mut group = Vec::new();
        {
            let mut queue = queue.lock().await;
            let Some(first) = queue.recv().await else {
                return;
            };
            group.push(first);
            while group.len() < GROUP_MAX {
                match queue.try_recv() {
                    Ok(job) => group.push(job),
                    Err(_) => break,
                }
            }
        }
        commit_group(&pool, group, &availability).await;
    }
}

/// Commits a group, or, if one of its jobs failed (a guard that did not hold among them),
/// each job on its own.
async fn commit_group(pool: &Pool, group: Vec<Job>, availability: &Availability) {
    let client = match pool.get().await {
        Ok(c) => c,
        Err(e) => {
            let error = error::pool(e);
            availability.down(&error);
            for job in group {
                let _ = job.reply.send(Err(error.clone()));
            }
            return;
        }
    };
    match transaction(&client, &group).await {
        Ok(()) => {
            availability.up();
            for job in group {
                let _ = job.reply.send(Ok(true));
            }
        }
        Err(e) if error::is_connection(&e) => {
            // The commit's fate is unknown: the callers answer 503 and clients retry with
            // their request ids.
            let error = error::query(&e);
            availability.down(&error);
            for job in group {
                let _ = job.reply.send(Err(error.clone()));
            }
        }
        Err(e) => {
            availability.up();
            // A lone job's failure is its answer (or a race to run again); a group's jobs run
            // again one by one.
            let mut failed_alone = if group.len() == 1 {
                Some(e)
            } else {
                tracing::debug!(error = %e, jobs = group.len(), "a grouped write failed; writing its jobs one by one");
                None
            };
            for job in group {
                let result = run_alone(&client, &job, failed_alone.take()).await;
                let _ = job.reply.send(result);
            }
        }
    }
}

/// The jobs in one transaction, sent together with its BEGIN and COMMIT (one round trip):
/// each job's guards, then its statements. A guard that does not hold raises, so what follows
/// it does nothing and the COMMIT rolls back.
async fn transaction(
    client: &deadpool_postgres::Object,
    jobs: &[Job],
) -> Result<(), tokio_postgres::Error> {
    let guards: Vec<Stmt> = jobs
        .iter()
        .flat_map(|job| job.guards.iter().map(ops::guard))
        .collect();
    let mut stmts: Vec<&Stmt> = Vec::with_capacity(guards.len() + jobs.len() * 4 + 2);
    stmts.push(&BEGIN);
    let mut guards = guards.iter();
    for job in jobs {
        stmts.extend(guards.by_ref().take(job.guards.len()));
        stmts.extend(&job.stmts);
    }
    stmts.push(&COMMIT);
    ops::execute(client, stmts).await
}

static BEGIN: Stmt = Stmt {
    sql: "BEGIN",
    params: Vec::new(),
};
static COMMIT: Stmt = Stmt {
    sql: "COMMIT",
    params: Vec::new(),
};

/// What a lone job's failed transaction means for its caller, unless running it again may
/// cure it (`None`: a lost race).
fn alone_outcome(e: &tokio_postgres::Error) -> Option<Result<bool, StoreError>> {
    if ops::is_guard_failure(e) {
        Some(Ok(false))
    } else if error::is_race(e) {
        None
    } else {
        Some(Err(error::query(e)))
    }
}

/// One job in its own transaction, again while it loses races; `false` if a guard failed.
/// `failed`: how its first transaction already failed, if it ran alone.
async fn run_alone(
    client: &deadpool_postgres::Object,
    job: &Job,
    mut failed: Option<tokio_postgres::Error>,
) -> Result<bool, StoreError> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let e = match failed.take() {
            Some(e) => e,
            None => match transaction(client, std::slice::from_ref(job)).await {
                Ok(()) => return Ok(true),
                Err(e) => e,
            },
        };
        match alone_outcome(&e) {
            None if attempt < ALONE_ATTEMPTS => {
                tracing::debug!(error = %e, attempt, "a write lost a race; running it again");
                tokio::time::sleep(Duration::from_millis(2 << attempt)).await;
            }
            None => return Err(error::query(&e)),
            Some(result) => return result,
        }
    }
}
