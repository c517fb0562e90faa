//! Group commit: the node's commit loop, one task that turns the queue of appends into rounds.
//!
//! While a round is being written and fsynced (on a blocking thread, via
//! [`Env::run_blocking`]), new appends queue up; the next round takes all of them (up to
//! `max_batch_transactions` per bucket). In a round each bucket with appends checks its batch
//! and writes its frames into its own segment ([`BucketWriter::prepare`]), then one commit
//! of the node log makes every bucket's batch durable with one fsync ([`NodeLog::commit`]),
//! and each bucket publishes its own ([`BucketWriter::finish`]). So the number of events per
//! fsync grows with the number of appends in flight on the whole node, not on one bucket. An
//! append's future resolves only after the sync that covers it.

use std::path::Path;
use std::sync::Arc;

use disk::Disk;
use tokio::sync::{mpsc, oneshot};

use crate::config::{StoreConfig, SyncPolicy};
use crate::env::Env;
use crate::error::{AppendError, StoreError};
use crate::metrics::Metrics;
use crate::model::{AppendOutcome, Transaction};
use crate::store::bucket::Prepared;
use crate::store::log::{LogWrite, NodeLog};
use crate::store::{self, BucketWriter, RecoveryReport, Store};

/// Appends waiting for a writer, per bucket; bounds memory when the disk falls behind.
const QUEUE_CAPACITY: usize = 16 * 1024;

/// How many times a writer without fsyncs gives way to gather a batch.
const GATHER_YIELDS: usize = 4;

enum Job {
    Append {
        bucket: usize,
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
    queue: mpsc::Sender<Job>,
    metrics: Arc<Metrics>,
}

impl<D: Disk> Clone for Db<D> {
    fn clone(&self) -> Self {
        Db {
            store: self.store.clone(),
            queue: self.queue.clone(),
            metrics: self.metrics.clone(),
        }
    }
}

impl<D: Disk> Db<D> {
    /// Opens and recovers the store, then starts the commit loop on `env`.
    pub fn open<E: Env>(
        env: &E,
        disk: &D,
        root: &Path,
        config: StoreConfig,
    ) -> Result<(Self, RecoveryReport), StoreError> {
        let (store, writers, report) = store::open(disk, root, config)?;
        let metrics = Arc::new(Metrics::default());
        let (queue, jobs) = mpsc::channel(QUEUE_CAPACITY);
        env.spawn(
            "commit-loop",
            Box::pin(run_commits(
                env.clone(),
                CommitLoop {
                    writers,
                    log: store.log().cloned(),
                    max_batch: store.config().max_batch_transactions,
                    blocking: store.config().sync == SyncPolicy::Always,
                },
                jobs,
                metrics.clone(),
            )),
        );
        Ok((
            Db {
                store,
                queue,
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
        self.queue
            .send(Job::Append { bucket, txn, reply })
            .await
            .map_err(|_| closed())?;
        Ok(PendingAppend(answer))
    }

    /// Finishes every append queued so far, then stops the writers. Appends after this fail
    /// with [`StoreError::Closed`].
    pub async fn shutdown(&self) {
        let (tx, rx) = oneshot::channel();
        if self.queue.send(Job::Stop(tx)).await.is_ok() && rx.await.is_ok() {
            // The commit loop has stopped: no append is in flight.
            if let Err(err) = self.store.close() {
                tracing::warn!(error = %err, "the node log stays for the next open to replay");
            }
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

/// What the commit loop owns: every bucket's writer and the node log.
struct CommitLoop<D: Disk> {
    writers: Vec<BucketWriter<D>>,
    log: Option<Arc<NodeLog<D>>>,
    max_batch: usize,
    /// Whether a round syncs (and so runs on a blocking thread).
    blocking: bool,
}

impl<D: Disk> CommitLoop<D> {
    /// One round: every bucket prepares its batch, one log commit covers them all, every
    /// bucket finishes its own. Returns the results in the order of `batches`.
    fn round(&mut self, batches: Vec<(usize, Vec<Transaction>)>) -> Vec<Vec<AppendResult>> {
        let prepared: Vec<(usize, Prepared<D>)> = batches
            .into_iter()
            .map(|(bucket, txns)| (bucket, self.writers[bucket].prepare(txns)))
            .collect();
        let committed = match &self.log {
            Some(log) => {
                let writes: Vec<LogWrite<'_>> = prepared
                    .iter()
                    .filter_map(|(bucket, p)| self.writers[*bucket].log_write(p))
                    .collect();
                if writes.is_empty() {
                    Ok(())
                } else {
                    log.commit(&writes)
                }
            }
            None => Ok(()),
        };
        prepared
            .into_iter()
            .map(|(bucket, mut p)| {
                let writer = &mut self.writers[bucket];
                // Without a log (appends that do not sync) each bucket commits alone, which
                // costs nothing.
                let committed = match &self.log {
                    Some(_) => committed.clone(),
                    None => writer.commit(&p),
                };
                writer.finish(&mut p, committed)
            })
            .collect()
    }
}

type AppendResult = Result<AppendOutcome, AppendError>;
type Reply = oneshot::Sender<AppendResult>;

async fn run_commits<D: Disk, E: Env>(
    env: E,
    mut commits: CommitLoop<D>,
    mut queue: mpsc::Receiver<Job>,
    metrics: Arc<Metrics>,
) {
    let buckets = commits.writers.len();
    let max_batch = commits.max_batch;
    let blocking = commits.blocking;
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
        // Per bucket, in bucket order: its transactions and their replies. A bucket whose
        // batch is full leaves the rest of the queue to the next round.
        let mut txns: Vec<Vec<Transaction>> = (0..buckets).map(|_| Vec::new()).collect();
        let mut replies: Vec<Vec<Reply>> = (0..buckets).map(|_| Vec::new()).collect();
        let mut events = 0;
        let mut next = Some(first);
        while let Some(job) = next.take() {
            match job {
                Job::Append { bucket, txn, reply } => {
                    events += txn.events.len();
                    txns[bucket].push(txn);
                    replies[bucket].push(reply);
                    if replies[bucket].len() >= max_batch {
                        break;
                    }
                }
                Job::Stop(done) => {
                    stop = Some(done);
                    break;
                }
            }
            next = queue.try_recv().ok();
        }
        let batches: Vec<(usize, Vec<Transaction>)> = txns
            .into_iter()
            .enumerate()
            .filter(|(_, t)| !t.is_empty())
            .collect();
        if batches.is_empty() {
            continue;
        }
        let order: Vec<usize> = batches.iter().map(|(b, _)| *b).collect();
        // Only an fsync blocks for long. Without one (the unsafe policy) a round is a write to
        // the page cache, cheaper than handing it to another thread and back.
        let started = env.now();
        let results = if blocking {
            let (returned, results) = env
                .run_blocking(move || {
                    let results = commits.round(batches);
                    (commits, results)
                })
                .await;
            commits = returned;
            results
        } else {
            commits.round(batches)
        };
        metrics
            .sync_latency
            .observe_duration(env.now().saturating_duration_since(started));
        metrics.batch_events.observe(events as f64);
        for (bucket, results) in order.into_iter().zip(results) {
            for (reply, result) in std::mem::take(&mut replies[bucket])
                .into_iter()
                .zip(results)
            {
                // The caller may have gone away; the append stands either way.
                let _ = reply.send(result);
            }
        }
        if blocking {
            // Let the callers just answered run before the next round is taken: a caller
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
