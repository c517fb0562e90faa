//! Group commit: each bucket's writer runs as one task that turns its queue into batches.
//!
//! While a batch is being written and fsynced (on a blocking thread, via
//! [`Env::run_blocking`]), new appends queue up; the next loop takes all of them (up to
//! `max_batch_transactions`) into one batch under one fsync. So the number of events per
//! fsync grows with the number of appends in flight, and buckets, each with its own task,
//! sync in parallel. An append's future resolves only after the sync that covers it.

use std::path::Path;
use std::sync::Arc;

use disk::Disk;
use tokio::sync::{mpsc, oneshot};

use crate::config::{StoreConfig, SyncPolicy};
use crate::env::Env;
use crate::error::{AppendError, StoreError};
use crate::metrics::Metrics;
use crate::model::{AppendOutcome, Transaction};
use crate::store::{self, BucketWriter, RecoveryReport, Store};

/// Appends waiting for a writer, per bucket; bounds memory when the disk falls behind.
const QUEUE_CAPACITY: usize = 16 * 1024;

/// How many times a writer without fsyncs gives way to gather a batch.
const GATHER_YIELDS: usize = 4;

enum Job {
    Append {
        txn: Transaction,
        reply: oneshot::Sender<Result<AppendOutcome, AppendError>>,
    },
    Stop(oneshot::Sender<()>),
}

fn closed() -> AppendError {
    AppendError::Unavailable(Arc::new(StoreError::Closed))
}

/// A submitted append; [`PendingAppend::outcome`] resolves once it is durable (or refused).
pub struct PendingAppend(oneshot::Receiver<Result<AppendOutcome, AppendError>>);

impl PendingAppend {
    pub async fn outcome(self) -> Result<AppendOutcome, AppendError> {
        self.0.await.map_err(|_| closed())?
    }
}

/// The store with its writers running as tasks: the API the server uses. Cheap to clone.
pub struct Db<D: Disk> {
    store: Store<D>,
    queues: Vec<mpsc::Sender<Job>>,
    metrics: Arc<Metrics>,
}

impl<D: Disk> Clone for Db<D> {
    fn clone(&self) -> Self {
        Db {
            store: self.store.clone(),
            queues: self.queues.clone(),
            metrics: self.metrics.clone(),
        }
    }
}

impl<D: Disk> Db<D> {
    /// Opens and recovers the store, then starts one writer task per bucket on `env`.
    pub fn open<E: Env>(
        env: &E,
        disk: &D,
        root: &Path,
        config: StoreConfig,
    ) -> Result<(Self, RecoveryReport), StoreError> {
        let (store, writers, report) = store::open(disk, root, config)?;
        let max_batch = store.config().max_batch_transactions;
        let blocking = store.config().sync == SyncPolicy::Always;
        let metrics = Arc::new(Metrics::default());
        let queues = writers
            .into_iter()
            .map(|writer| {
                let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
                env.spawn(
                    "bucket-writer",
                    Box::pin(run_writer(
                        env.clone(),
                        writer,
                        rx,
                        max_batch,
                        blocking,
                        metrics.clone(),
                    )),
                );
                tx
            })
            .collect();
        Ok((
            Db {
                store,
                queues,
                metrics,
            },
            report,
        ))
    }

    pub fn store(&self) -> &Store<D> {
        &self.store
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The Prometheus text of the metrics and the store's counters.
    pub fn render_metrics(&self) -> String {
        let segments = self.store.buckets().iter().map(|b| b.segment_count()).sum();
        self.metrics.render(self.store.stats(), segments)
    }

    /// Appends a transaction; resolves once it is durable (or refused).
    pub async fn append(&self, txn: Transaction) -> Result<AppendOutcome, AppendError> {
        self.submit(txn).await?.outcome().await
    }

    /// Queues a transaction on its bucket's writer and returns at once with a handle to its
    /// outcome. Transactions submitted one after another from one task are checked and
    /// written in that order, so a connection can pipeline appends (even to one stream, with
    /// expected versions) and have them share one fsync. Waits only when the queue is full.
    pub async fn submit(&self, txn: Transaction) -> Result<PendingAppend, AppendError> {
        let partition = self.store.partition_of(txn.partition_key);
        let bucket = usize::from(self.store.config().bucket_of(partition.0));
        let (reply, answer) = oneshot::channel();
        self.queues[bucket]
            .send(Job::Append { txn, reply })
            .await
            .map_err(|_| closed())?;
        Ok(PendingAppend(answer))
    }

    /// Finishes every append queued so far, then stops the writers. Appends after this fail
    /// with [`StoreError::Closed`].
    pub async fn shutdown(&self) {
        let mut waits = Vec::new();
        for queue in &self.queues {
            let (tx, rx) = oneshot::channel();
            if queue.send(Job::Stop(tx)).await.is_ok() {
                waits.push(rx);
            }
        }
        for wait in waits {
            let _ = wait.await;
        }
    }
}

/// Gives way once to the other tasks that are ready, on any executor: the first poll wakes
/// its own task and returns pending, so the task goes to the back of the queue.
struct YieldOnce(bool);

impl std::future::Future for YieldOnce {
    type Output = ();
    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<()> {
        if self.0 {
            return std::task::Poll::Ready(());
        }
        self.0 = true;
        cx.waker().wake_by_ref();
        std::task::Poll::Pending
    }
}

async fn run_writer<D: Disk, E: Env>(
    env: E,
    mut writer: BucketWriter<D>,
    mut queue: mpsc::Receiver<Job>,
    max_batch: usize,
    blocking: bool,
    metrics: Arc<Metrics>,
) {
    let mut stop = None;
    while stop.is_none() {
        let Some(first) = queue.recv().await else {
            break;
        };
        if !blocking {
            // Without an fsync to wait for, the appender that woke this task is usually the
            // only one queued: the executor runs a task it has just woken next. Giving way
            // while more appends keep arriving lets the other ready appenders queue theirs,
            // so one write carries many appends instead of one each.
            let mut queued = queue.len();
            for _ in 0..GATHER_YIELDS {
                YieldOnce(false).await;
                if queue.len() == queued {
                    break;
                }
                queued = queue.len();
            }
        }
        let expected = (queue.len() + 1).min(max_batch);
        let mut txns = Vec::with_capacity(expected);
        let mut replies = Vec::with_capacity(expected);
        let mut next = Some(first);
        while let Some(job) = next.take() {
            match job {
                Job::Append { txn, reply } => {
                    txns.push(txn);
                    replies.push(reply);
                }
                Job::Stop(done) => {
                    stop = Some(done);
                    break;
                }
            }
            if replies.len() < max_batch {
                next = queue.try_recv().ok();
            }
        }
        if txns.is_empty() {
            continue;
        }
        // Only an fsync blocks for long. Without one (the unsafe policy) a batch is a write to
        // the page cache, cheaper than handing it to another thread and back.
        let events: usize = txns.iter().map(|t| t.events.len()).sum();
        let started = env.now();
        let results = if blocking {
            let (returned, results) = env
                .run_blocking(move || {
                    let results = writer.append_batch(txns);
                    (writer, results)
                })
                .await;
            writer = returned;
            results
        } else {
            writer.append_batch(txns)
        };
        metrics
            .sync_latency
            .observe_duration(env.now().saturating_duration_since(started));
        metrics.batch_events.observe(events as f64);
        for (reply, result) in replies.into_iter().zip(results) {
            // The caller may have gone away; the append stands either way.
            let _ = reply.send(result);
        }
        if let Some(job) = writer.preallocation_job() {
            // Zeros ahead of the frames, written and synced on another thread while the next
            // batches commit (`store::prealloc`).
            let runner = env.clone();
            env.spawn(
                "preallocate",
                Box::pin(async move { runner.run_blocking(move || job.run()).await }),
            );
        }
        if blocking {
            // Let the callers just answered run before the next batch is taken: a caller
            // that appends again at once then shares the next fsync instead of waiting a whole
            // fsync for the one after. (Giving way again while that brought more appends made
            // batches only 4% larger in `sierradb bench --embedded`, and no faster.)
            YieldOnce(false).await;
        }
    }
    queue.close();
    if let Some(done) = stop {
        let _ = done.send(());
    }
}
