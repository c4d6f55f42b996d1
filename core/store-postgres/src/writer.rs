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

/// Commits a group, or, if one of its jobs failed, each job on its own.
async fn commit_group(pool: &Pool, group: Vec<Job>, availability: &Availability) {
    let mut client = match pool.get().await {
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
    match run_together(&mut client, &group).await {
        Ok(results) => {
            availability.up();
            for (job, result) in group.into_iter().zip(results) {
                let _ = job.reply.send(Ok(result));
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
            tracing::debug!(error = %e, jobs = group.len(), "a grouped write failed; writing its jobs one by one");
            for job in group {
                let result = run_alone(&mut client, &job).await;
                let _ = job.reply.send(result);
            }
        }
    }
}

/// All jobs in one transaction: each job's guards, then (if they hold) its statements.
async fn run_together(
    client: &mut deadpool_postgres::Object,
    group: &[Job],
) -> Result<Vec<bool>, tokio_postgres::Error> {
    let tx = client.transaction().await?;
    let mut results = Vec::with_capacity(group.len());
    for job in group {
        results.push(run_job(&tx, job).await?);
    }
    tx.commit().await?;
    Ok(results)
}

async fn run_job(
    tx: &deadpool_postgres::Transaction<'_>,
    job: &Job,
) -> Result<bool, tokio_postgres::Error> {
    if !ops::guards_hold(tx, &job.guards).await? {
        return Ok(false);
    }
    ops::execute(tx, &job.stmts).await?;
    Ok(true)
}

/// One job in its own transaction, again while it loses races.
async fn run_alone(client: &mut deadpool_postgres::Object, job: &Job) -> Result<bool, StoreError> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let result = async {
            let tx = client.transaction().await?;
            let written = run_job(&tx, job).await?;
            tx.commit().await?;
            Ok::<bool, tokio_postgres::Error>(written)
        }
        .await;
        match result {
            Ok(written) => return Ok(written),
            Err(e) if error::is_race(&e) && attempt < ALONE_ATTEMPTS => {
                tracing::debug!(error = %e, attempt, "a write lost a race; running it again");
                tokio::time::sleep(Duration::from_millis(2 << attempt)).await;
            }
            Err(e) => return Err(error::query(&e)),
        }
    }
}
