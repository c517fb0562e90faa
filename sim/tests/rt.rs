//! The executor's contract: seeds replay exactly, time is virtual, deadlocks are loud, crashes
//! drop a node's tasks, and the real store runs on it.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use db::env::{Env, Instant};
use db::model::{
    AppendOutcome, EventId, ExpectedVersion, NewEvent, PartitionId, PartitionKey, PartitionSeq,
    StreamId, Transaction, TransactionId,
};
use db::{AppendError, Db, StoreConfig};
use disk::SimDisk;
use sim::rt::{DEFAULT_EPOCH_MS, RunOutcome, Sim, SimEnv};
use tokio::sync::{mpsc, oneshot};

type Log = Arc<Mutex<Vec<String>>>;

fn note(log: &Log, line: String) {
    log.lock().unwrap().push(line);
}

fn random_delay(env: &SimEnv, max_micros: u64) -> Duration {
    Duration::from_micros(env.random_u64() % max_micros)
}

/// Fifty workers sleep for random times, ask a hub for a running total over mpsc with a
/// oneshot reply, and sometimes spawn a child. Returns the trace hash and the order in which
/// things happened.
fn chatter(seed: u64) -> (u64, Vec<String>) {
    let mut sim = Sim::new(seed);
    let log: Log = Arc::default();
    let (requests, mut inbox) = mpsc::channel::<(u64, oneshot::Sender<u64>)>(8);

    let (env, hub_log) = (sim.env(), log.clone());
    sim.spawn("hub", async move {
        let mut total = 0;
        while let Some((worker, reply)) = inbox.recv().await {
            total += worker;
            env.sleep(random_delay(&env, 50)).await;
            let _ = reply.send(total);
        }
        note(&hub_log, format!("{}ns hub done at {total}", env.now().0));
    });

    for worker in 0..50 {
        let (env, log, requests) = (sim.env(), log.clone(), requests.clone());
        sim.spawn("worker", async move {
            for round in 0..3 {
                env.sleep(random_delay(&env, 1_000)).await;
                let (reply, answer) = oneshot::channel();
                requests.send((worker, reply)).await.unwrap();
                let total = answer.await.unwrap();
                note(
                    &log,
                    format!("{}ns worker {worker} round {round}: {total}", env.now().0),
                );
                if env.random_u64() % 3 == 0 {
                    let (child_env, log) = (env.clone(), log.clone());
                    env.spawn(
                        "child",
                        Box::pin(async move {
                            child_env.sleep(random_delay(&child_env, 500)).await;
                            let at = child_env.now().0;
                            note(&log, format!("{at}ns child of {worker} round {round}"));
                        }),
                    );
                }
            }
        });
    }
    drop(requests);

    sim.run_until_idle();
    assert_eq!(sim.task_count(), 0, "every task finished");
    let log = log.lock().unwrap().clone();
    (sim.trace_hash(), log)
}

#[test]
fn same_seed_replays_the_same_schedule_and_events() {
    let (hash_a, log_a) = chatter(42);
    let (hash_b, log_b) = chatter(42);
    assert_eq!(hash_a, hash_b);
    assert_eq!(log_a, log_b);
    assert!(
        log_a.len() > 150,
        "50 workers × 3 rounds, the hub, and children"
    );
    assert!(log_a.iter().any(|line| line.ends_with("hub done at 3675")));
}

#[test]
fn different_seeds_give_different_schedules() {
    let mut hashes: Vec<u64> = (0..20).map(|seed| chatter(seed).0).collect();
    hashes.sort_unstable();
    hashes.dedup();
    assert!(hashes.len() >= 18, "only {} distinct hashes", hashes.len());
}

#[test]
fn an_hour_of_sleep_costs_no_wall_time() {
    let mut sim = Sim::new(1);
    let env = sim.env();
    let wall_before = env.wall_clock_ms();
    let woke_at = sim.block_on(async move {
        env.sleep(Duration::from_secs(3600)).await;
        env.now()
    });
    assert_eq!(woke_at, Instant(3_600_000_000_000));
    assert_eq!(sim.now(), woke_at);
    assert_eq!(sim.env().wall_clock_ms(), wall_before + 3_600_000);
    // One poll to register the timer and one after the clock jumped: no ticking in between.
    assert_eq!(sim.steps(), 2);
}

#[test]
fn timers_fire_in_deadline_order() {
    let mut sim = Sim::new(9);
    let log: Log = Arc::default();
    for millis in [50u64, 10, 30, 20, 40] {
        let (env, log) = (sim.env(), log.clone());
        sim.spawn("sleeper", async move {
            env.sleep(Duration::from_millis(millis)).await;
            note(&log, format!("{millis}ms at {}ns", env.now().0));
        });
    }
    assert_eq!(
        sim.run_until(Instant(25_000_000)),
        RunOutcome::DeadlineReached
    );
    assert_eq!(sim.now(), Instant(25_000_000));
    assert_eq!(log.lock().unwrap().len(), 2);
    sim.run_until_idle();
    assert_eq!(
        sim.now(),
        Instant(50_000_000),
        "idle leaves the clock at the last event"
    );
    assert_eq!(
        *log.lock().unwrap(),
        [
            "10ms at 10000000ns",
            "20ms at 20000000ns",
            "30ms at 30000000ns",
            "40ms at 40000000ns",
            "50ms at 50000000ns",
        ]
    );
}

#[test]
fn block_on_returns_the_future_output() {
    let mut sim = Sim::new(5);
    let env = sim.env();
    let (tx, rx) = oneshot::channel();
    env.spawn(
        "sender",
        Box::pin(async move {
            tx.send(41).unwrap();
        }),
    );
    assert_eq!(sim.block_on(async move { rx.await.unwrap() + 1 }), 42);
    assert_eq!(sim.block_on(async { "again" }), "again");
}

#[test]
#[should_panic(expected = "deadlock")]
fn block_on_panics_on_deadlock() {
    let mut sim = Sim::new(5);
    let (_tx, rx) = oneshot::channel::<()>();
    sim.block_on(async move {
        let _ = rx.await;
    });
}

#[test]
#[should_panic(expected = "livelock guard")]
fn step_guard_stops_a_livelock() {
    let mut sim = Sim::new(5).with_max_steps(1_000);
    let env = sim.env();
    sim.spawn("forever", async move {
        loop {
            env.sleep(Duration::from_millis(1)).await;
        }
    });
    sim.run_until_idle();
}

#[test]
fn crashing_a_node_drops_its_tasks_and_timers_only() {
    let mut sim = Sim::new(11);
    let (tx, mut rx) = mpsc::channel::<u32>(4);
    let crashed = sim.env_for_node(1);
    let sleeper = crashed.clone();
    crashed.spawn(
        "receiver",
        Box::pin(async move { while rx.recv().await.is_some() {} }),
    );
    crashed.spawn(
        "sleeper",
        Box::pin(async move { sleeper.sleep(Duration::from_secs(3600)).await }),
    );
    let ticks = Arc::new(Mutex::new(0));
    let (survivor, counter) = (sim.env_for_node(2), ticks.clone());
    sim.env_for_node(2).spawn(
        "ticker",
        Box::pin(async move {
            for _ in 0..10 {
                survivor.sleep(Duration::from_millis(1)).await;
                *counter.lock().unwrap() += 1;
            }
        }),
    );

    sim.run_for(Duration::from_micros(2_500));
    assert_eq!(*ticks.lock().unwrap(), 2);
    assert_eq!(sim.crash_node(1), 2);

    assert!(sim.block_on(async move { tx.send(7).await }).is_err());
    sim.run_until_idle();
    assert_eq!(*ticks.lock().unwrap(), 10);
    assert_eq!(
        sim.now(),
        Instant(10_000_000),
        "the crashed hour-long timer is gone"
    );
    assert!(sim.trace_tail().iter().any(|line| line.contains("crash")));
}

#[test]
fn wall_clocks_skew_and_jump_per_node() {
    let mut sim = Sim::new(2).with_epoch_ms(1_000);
    sim.set_clock_skew(1, -500);
    sim.jump_wall_clock(1, 2_000);
    assert_eq!(sim.run_for(Duration::from_millis(7)), RunOutcome::Idle);
    assert_eq!(
        sim.now(),
        Instant(7_000_000),
        "run_until moves an idle clock too"
    );
    assert_eq!(sim.env_for_node(0).wall_clock_ms(), 1_007);
    assert_eq!(sim.env_for_node(1).wall_clock_ms(), 2_507);
    sim.set_clock_skew(2, -5_000);
    assert_eq!(
        sim.env_for_node(2).wall_clock_ms(),
        0,
        "clamped at the epoch"
    );
    assert_eq!(Sim::new(2).env().wall_clock_ms(), DEFAULT_EPOCH_MS);
}

#[test]
fn a_thousand_tasks_ping_pong_quickly() {
    #[expect(
        clippy::disallowed_methods,
        reason = "this test measures the executor's real speed"
    )]
    let started = std::time::Instant::now();
    let mut sim = Sim::new(3);
    let rounds = Arc::new(Mutex::new(0u64));
    for _ in 0..500 {
        let (ping_tx, mut ping_rx) = mpsc::channel::<u64>(1);
        let (pong_tx, mut pong_rx) = mpsc::channel::<u64>(1);
        let (env, counter) = (sim.env(), rounds.clone());
        sim.spawn("ping", async move {
            for n in 0..20 {
                ping_tx.send(n).await.unwrap();
                assert_eq!(pong_rx.recv().await, Some(n));
                env.sleep(Duration::from_micros(env.random_u64() % 10))
                    .await;
            }
            *counter.lock().unwrap() += 1;
        });
        sim.spawn("pong", async move {
            while let Some(n) = ping_rx.recv().await {
                pong_tx.send(n).await.unwrap();
            }
        });
    }
    sim.run_until_idle();
    assert_eq!(*rounds.lock().unwrap(), 500);
    assert_eq!(sim.task_count(), 0);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?} for {} steps",
        started.elapsed(),
        sim.steps()
    );
}

/// One acknowledged append: where the store said the event landed.
struct Acked {
    event_id: EventId,
    stream: StreamId,
    outcome: AppendOutcome,
}

const CLIENTS: usize = 20;
const APPENDS_PER_CLIENT: usize = 20;

fn small_store_config() -> StoreConfig {
    StoreConfig {
        partition_count: 4,
        bucket_count: 2,
        segment_size_bytes: 64 * 1024,
        max_transaction_bytes: 8 * 1024,
        ..StoreConfig::default()
    }
}

fn append_one(env: &SimEnv, stream: &StreamId) -> Transaction {
    Transaction {
        transaction_id: TransactionId(env.new_uuid()),
        partition_key: PartitionKey::for_stream(stream),
        events: vec![NewEvent {
            event_id: EventId(env.new_uuid()),
            stream_id: stream.clone(),
            event_name: "Happened".into(),
            expected_version: ExpectedVersion::Any,
            timestamp_ms: env.wall_clock_ms(),
            metadata: Bytes::new(),
            payload: Bytes::from(env.random_u64().to_le_bytes().to_vec()),
        }],
    }
}

/// Twenty clients append concurrently through group commit on a simulated disk; returns the
/// trace hash after checking every acknowledged event.
fn store_workload(seed: u64) -> u64 {
    let mut sim = Sim::new(seed);
    let env = sim.env();
    let disk = SimDisk::new(seed ^ 0xd15c, Default::default());
    let (db, _report) =
        Db::open(&env, &disk, Path::new("/data/sierra"), small_store_config()).expect("open");

    let client_db = db.clone();
    let acked: Vec<Result<Acked, AppendError>> = sim.block_on(async move {
        let (results, mut inbox) = mpsc::channel(CLIENTS * APPENDS_PER_CLIENT);
        for _ in 0..CLIENTS {
            let (env, db, results) = (env.clone(), client_db.clone(), results.clone());
            env.clone().spawn(
                "client",
                Box::pin(async move {
                    for _ in 0..APPENDS_PER_CLIENT {
                        env.sleep(random_delay(&env, 200)).await;
                        let name = format!("stream-{}", env.random_u64() % 12);
                        let stream = StreamId::new(&name).unwrap();
                        let txn = append_one(&env, &stream);
                        let event_id = txn.events[0].event_id;
                        let result = db.append(txn).await.map(|outcome| Acked {
                            event_id,
                            stream,
                            outcome,
                        });
                        results.send(result).await.unwrap();
                    }
                }),
            );
        }
        drop(results);
        let mut all = Vec::new();
        while let Some(result) = inbox.recv().await {
            all.push(result);
        }
        all
    });

    assert_eq!(acked.len(), CLIENTS * APPENDS_PER_CLIENT);
    let store = db.store();
    let mut acked_seqs = vec![Vec::new(); 4];
    for ack in acked {
        let ack = ack.expect("every append succeeds on a fault-free disk");
        let appended = &ack.outcome.events[0];
        let stored = store
            .get(&ack.event_id)
            .unwrap()
            .expect("acked is readable");
        assert_eq!(stored.stream_id, ack.stream);
        assert_eq!(stored.stream_version, appended.stream_version);
        assert_eq!(stored.partition_sequence, appended.partition_sequence);
        acked_seqs[usize::from(ack.outcome.partition_id.0)].push(appended.partition_sequence.0);
    }
    for (partition, acked) in acked_seqs.iter_mut().enumerate() {
        let scan = store
            .scan_partition(PartitionId(partition as u16), PartitionSeq(0), None, 1_000)
            .unwrap();
        let scanned: Vec<u64> = scan.events.iter().map(|e| e.partition_sequence.0).collect();
        let gapless: Vec<u64> = (0..scanned.len() as u64).collect();
        assert_eq!(scanned, gapless, "partition {partition} is gapless from 0");
        acked.sort_unstable();
        assert_eq!(
            *acked, scanned,
            "partition {partition} holds exactly the acks"
        );
    }
    sim.block_on(async move { db.shutdown().await });
    sim.run_until_idle();
    assert_eq!(sim.task_count(), 0, "writers stop after shutdown");
    sim.trace_hash()
}

#[test]
fn the_store_runs_on_the_simulator_deterministically() {
    assert_eq!(store_workload(7), store_workload(7));
    assert_ne!(store_workload(7), store_workload(8));
}
