//! `sierradb serve`: configuration (flags > environment > file > defaults), the data
//! directory lock, logging, signals, and the wiring of the real implementations.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use db::env::TokioEnv;
use db::server::ServerConfig;
use db::{Db, StoreConfig, SyncPolicy};
use disk::RealDisk;
use serde::Deserialize;

/// Every option can come from a flag, from `SIERRADB_<NAME>` in the environment, or from the
/// TOML file given with `--config` (keys as the long flag names with `_` for `-`); in that
/// order of precedence, then the default.
#[derive(clap::Args, Debug, Default)]
pub struct ServeArgs {
    /// TOML configuration file; its keys are the long option names with `_` for `-` (dir,
    /// client_address, partitions, buckets, segment_size_bytes, ..., log_format).
    #[arg(long, short = 'c', env = "SIERRADB_CONFIG")]
    pub config: Option<PathBuf>,
    /// Data directory [default: ./data].
    #[arg(long, short = 'd', env = "SIERRADB_DIR")]
    pub dir: Option<PathBuf>,
    /// Address for RESP clients [default: 127.0.0.1:9090].
    #[arg(long, env = "SIERRADB_CLIENT_ADDRESS")]
    pub client_address: Option<SocketAddr>,
    /// Partitions, fixed when the directory is created [default: 32].
    #[arg(long, env = "SIERRADB_PARTITIONS")]
    pub partitions: Option<u16>,
    /// Buckets (storage logs; partition p lives in bucket p % buckets), fixed at creation
    /// [default: 4].
    #[arg(long, env = "SIERRADB_BUCKETS")]
    pub buckets: Option<u16>,
    /// Segment size in bytes, fixed at creation [default: 268435456].
    #[arg(long, env = "SIERRADB_SEGMENT_SIZE_BYTES")]
    pub segment_size_bytes: Option<u64>,
    /// Largest transaction in bytes [default: 67108864].
    #[arg(long, env = "SIERRADB_MAX_TRANSACTION_BYTES")]
    pub max_transaction_bytes: Option<u64>,
    /// `always` (acknowledge only after fsync) or `never-unsafe` (no fsync: acknowledged
    /// appends can be lost on a crash; for measurements only) [default: always].
    #[arg(long, env = "SIERRADB_SYNC")]
    pub sync: Option<String>,
    /// Bytes of zeros kept written and synced ahead of each bucket's open segment, in the
    /// background, so a commit's fsync overwrites space the file has and needs no file
    /// system journal commit; 0 turns it off (and `--sync never-unsafe` has no fsync to
    /// save, so it turns it off too). Changes speed only, never what is stored
    /// [default: 1048576].
    #[arg(long, env = "SIERRADB_PREALLOCATE_BYTES")]
    pub preallocate_bytes: Option<u64>,
    /// Reject `EXPECTED_VERSION any|exists` and appends without an expected version, as
    /// SierraDB's `append.strict_versioning` does [default: false].
    #[arg(long, env = "SIERRADB_STRICT_VERSIONING")]
    pub strict_versioning: Option<bool>,
    /// Most client connections at once; one more is refused with an error. Each takes a file
    /// descriptor: the open-files limit (raised to the hard limit at start) must exceed this
    /// by 256 [default: 10000].
    #[arg(long, env = "SIERRADB_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// Largest RESP request frame in bytes; a larger one is refused and the connection
    /// closed [default: 67108864].
    #[arg(long, env = "SIERRADB_MAX_FRAME_BYTES")]
    pub max_frame_bytes: Option<usize>,
    /// Most events in one EMAPPEND transaction [default: 10000].
    #[arg(long, env = "SIERRADB_MAX_TRANSACTION_EVENTS")]
    pub max_transaction_events: Option<usize>,
    /// Most subscriptions one connection may hold [default: 64].
    #[arg(long, env = "SIERRADB_MAX_SUBSCRIPTIONS_PER_CONNECTION")]
    pub max_subscriptions_per_connection: Option<usize>,
    /// Largest subscription WINDOW (unacknowledged pushes) a client may ask for
    /// [default: 100000].
    #[arg(long, env = "SIERRADB_MAX_WINDOW")]
    pub max_window: Option<u32>,
    /// Threads that run the connections (the tokio workers). Fsyncs run on threads of their
    /// own besides these, so the default leaves one core to them and the kernel: on two cores
    /// one worker did as well as two or better in every workload measured (docs/operations.md)
    /// [default: the number of cores minus one, at least 1].
    #[arg(long, env = "SIERRADB_WORKER_THREADS")]
    pub worker_threads: Option<usize>,
    /// Serve Prometheus metrics over HTTP at this address, path /metrics [default: off].
    #[arg(long, env = "SIERRADB_METRICS_ADDRESS")]
    pub metrics_address: Option<SocketAddr>,
    /// Log filter, as RUST_LOG [default: info].
    #[arg(long, env = "SIERRADB_LOG")]
    pub log: Option<String>,
    /// `text` or `json` logs [default: text].
    #[arg(long, env = "SIERRADB_LOG_FORMAT")]
    pub log_format: Option<String>,
}

/// The same options as read from the TOML file.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    dir: Option<PathBuf>,
    client_address: Option<SocketAddr>,
    partitions: Option<u16>,
    buckets: Option<u16>,
    segment_size_bytes: Option<u64>,
    max_transaction_bytes: Option<u64>,
    sync: Option<String>,
    preallocate_bytes: Option<u64>,
    strict_versioning: Option<bool>,
    max_connections: Option<usize>,
    max_frame_bytes: Option<usize>,
    max_transaction_events: Option<usize>,
    max_subscriptions_per_connection: Option<usize>,
    max_window: Option<u32>,
    worker_threads: Option<usize>,
    metrics_address: Option<SocketAddr>,
    log: Option<String>,
    log_format: Option<String>,
}

/// The resolved settings.
#[derive(Debug, PartialEq)]
pub struct Settings {
    pub dir: PathBuf,
    pub client_address: SocketAddr,
    pub store: StoreConfig,
    pub server: ServerConfig,
    pub worker_threads: usize,
    pub metrics_address: Option<SocketAddr>,
    pub log: String,
    pub json_logs: bool,
}

impl ServeArgs {
    pub fn resolve(self) -> anyhow::Result<Settings> {
        let file = match &self.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("read config file {}", path.display()))?;
                toml::from_str::<FileConfig>(&text)
                    .with_context(|| format!("parse config file {}", path.display()))?
            }
            None => FileConfig::default(),
        };
        let defaults = StoreConfig::default();
        let sync = match self.sync.or(file.sync).as_deref() {
            None | Some("always") => SyncPolicy::Always,
            Some("never-unsafe") => SyncPolicy::NeverUnsafe,
            Some(other) => bail!("sync must be `always` or `never-unsafe`, not `{other}`"),
        };
        let json_logs = match self.log_format.or(file.log_format).as_deref() {
            None | Some("text") => false,
            Some("json") => true,
            Some(other) => bail!("log format must be `text` or `json`, not `{other}`"),
        };
        let store = StoreConfig {
            partition_count: self
                .partitions
                .or(file.partitions)
                .unwrap_or(defaults.partition_count),
            bucket_count: self
                .buckets
                .or(file.buckets)
                .unwrap_or(defaults.bucket_count),
            segment_size_bytes: self
                .segment_size_bytes
                .or(file.segment_size_bytes)
                .unwrap_or(defaults.segment_size_bytes),
            max_transaction_bytes: self
                .max_transaction_bytes
                .or(file.max_transaction_bytes)
                .unwrap_or(defaults.max_transaction_bytes),
            max_transaction_events: self
                .max_transaction_events
                .or(file.max_transaction_events)
                .unwrap_or(defaults.max_transaction_events),
            sync,
            preallocate_bytes: self
                .preallocate_bytes
                .or(file.preallocate_bytes)
                .unwrap_or(defaults.preallocate_bytes),
            ..defaults
        };
        store.validate()?;
        let worker_threads = self
            .worker_threads
            .or(file.worker_threads)
            .unwrap_or_else(default_worker_threads);
        if worker_threads == 0 {
            bail!("worker threads must be at least 1");
        }
        Ok(Settings {
            dir: self.dir.or(file.dir).unwrap_or_else(|| "./data".into()),
            client_address: self
                .client_address
                .or(file.client_address)
                .unwrap_or_else(|| "127.0.0.1:9090".parse().unwrap()),
            store,
            server: {
                let d = ServerConfig::default();
                let mut limits = d.limits.clone();
                if let Some(max) = self.max_frame_bytes.or(file.max_frame_bytes) {
                    limits.max_frame_bytes = max;
                    limits.max_bulk_bytes = limits.max_bulk_bytes.min(max);
                }
                let server = ServerConfig {
                    strict_versioning: self
                        .strict_versioning
                        .or(file.strict_versioning)
                        .unwrap_or(d.strict_versioning),
                    max_connections: self
                        .max_connections
                        .or(file.max_connections)
                        .unwrap_or(d.max_connections),
                    max_subscriptions_per_connection: self
                        .max_subscriptions_per_connection
                        .or(file.max_subscriptions_per_connection)
                        .unwrap_or(d.max_subscriptions_per_connection),
                    max_window: self.max_window.or(file.max_window).unwrap_or(d.max_window),
                    limits,
                    version: env!("CARGO_PKG_VERSION").to_string(),
                    ..d
                };
                if server.max_window < server.default_window {
                    bail!(
                        "max window {} is below the default window {}",
                        server.max_window,
                        server.default_window
                    );
                }
                server
            },
            worker_threads,
            metrics_address: self.metrics_address.or(file.metrics_address),
            log: self.log.or(file.log).unwrap_or_else(|| "info".into()),
            json_logs,
        })
    }
}

/// One worker fewer than the cores, and at least one: the fsync threads and the kernel's
/// network and disk work get the last core instead of competing with a worker for it.
fn default_worker_threads() -> usize {
    std::thread::available_parallelism()
        .map_or(1, |cores| cores.get())
        .saturating_sub(1)
        .max(1)
}

fn init_logging(settings: &Settings) {
    let filter = tracing_subscriber::EnvFilter::try_new(&settings.log)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    if settings.json_logs {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// Holds an exclusive lock on `<dir>/LOCK` for as long as it lives, so a second server on the
/// same directory is refused instead of corrupting it.
pub struct DirLock(#[expect(dead_code, reason = "held for its lock")] std::fs::File);

pub fn lock_dir(dir: &Path) -> anyhow::Result<DirLock> {
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    let path = dir.join("LOCK");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("open {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(DirLock(file)),
        Err(std::fs::TryLockError::WouldBlock) => bail!(
            "{} is in use by another sierradb process (lock file {})",
            dir.display(),
            path.display()
        ),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("lock {}", path.display()))
        }
    }
}

/// A minimal HTTP/1.1 endpoint: any request gets the Prometheus text of the metrics.
async fn serve_metrics(listener: tokio::net::TcpListener, db: Db<RealDisk>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            continue;
        };
        let db = db.clone();
        tokio::spawn(async move {
            // Read the request head (bounded); its path is not inspected.
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
            let body = db.render_metrics();
            let response = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(response.as_bytes()).await;
        });
    }
}

/// Connections the kernel queues until the server accepts them; the kernel caps it at
/// `net.core.somaxconn`. The OS default (128) is overrun by a burst of a few hundred connects,
/// and each connection dropped then waits a full second to retry its SYN.
const LISTEN_BACKLOG: u32 = 4096;

/// The client listener, with [`LISTEN_BACKLOG`].
fn bind_clients(address: SocketAddr) -> std::io::Result<net::TokioListener> {
    let socket = match address {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    // As `TcpListener::bind` does: a restarted server can bind while old connections linger.
    socket.set_reuseaddr(true)?;
    socket.bind(address)?;
    Ok(net::TokioListener::from_tokio(
        socket.listen(LISTEN_BACKLOG)?,
    ))
}

/// File descriptors kept free for everything but client connections: segment files, the
/// directory lock, the listeners, the metrics endpoint.
const RESERVED_FILES: u64 = 256;

/// Raises the soft limit on open files to the hard limit, as databases do (Redis, PostgreSQL):
/// every client connection is a file descriptor, and the usual soft limit (1,024) is far
/// below the default `max_connections`. Returns the limits in force: `(soft, hard)`.
fn raise_open_files_limit() -> std::io::Result<(u64, u64)> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `getrlimit` writes one `rlimit` through a pointer to a live, writable value.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // An unlimited hard limit cannot be the soft one: Linux caps both at `fs.nr_open`.
    let nr_open = std::fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(libc::RLIM_INFINITY);
    let target = limit.rlim_max.min(nr_open);
    if limit.rlim_cur < target {
        let raised = libc::rlimit {
            rlim_cur: target,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: `setrlimit` reads one `rlimit` through a pointer to a live value.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            limit = raised;
        } else {
            let error = std::io::Error::last_os_error();
            tracing::warn!(%error, "could not raise the open files limit to the hard limit");
        }
    }
    Ok((limit.rlim_cur, limit.rlim_max))
}

/// Raises the open-files limit and warns when it cannot hold `max_connections` clients.
fn prepare_open_files(max_connections: usize) {
    match raise_open_files_limit() {
        Ok((soft, hard)) => {
            tracing::info!(soft, hard, "open files limit");
            let needed = (max_connections as u64).saturating_add(RESERVED_FILES);
            if soft < needed {
                tracing::warn!(
                    max_connections,
                    open_files_limit = soft,
                    "the open files limit is below max_connections + {RESERVED_FILES}: \
                     connections beyond it fail to be accepted (and are retried) instead of \
                     being refused with an error; raise `ulimit -n` or lower max_connections"
                );
            }
        }
        Err(error) => tracing::warn!(%error, "could not read the open files limit"),
    }
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("install SIGTERM handler");
    tokio::select! {
        biased;
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: shutting down"),
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
    }
}

pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    if db::PLANTED_BUGS_COMPILED {
        bail!(
            "this binary was built with the simulator's planted bugs (feature planted-bugs); it must not serve data. Rebuild without --features planted-bugs"
        );
    }
    let settings = args.resolve()?;
    init_logging(&settings);
    let _lock = lock_dir(&settings.dir)?;
    prepare_open_files(settings.server.max_connections);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(settings.worker_threads)
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let env = TokioEnv::new(TokioEnv::seed_from_clock());
        let (db, report) = Db::open(&env, &RealDisk, &settings.dir, settings.store.clone())
            .with_context(|| format!("open data directory {}", settings.dir.display()))?;
        for line in report.to_string().lines() {
            tracing::info!(target: "sierradb::recovery", "{line}");
        }
        if settings.store.sync == SyncPolicy::NeverUnsafe {
            tracing::warn!("sync = never-unsafe: acknowledged appends can be lost on a crash");
        }
        let listener = bind_clients(settings.client_address)
            .with_context(|| format!("listen on {}", settings.client_address))?;
        let address = net::Listener::local_addr(&listener)?;
        tracing::info!(
            %address,
            dir = %settings.dir.display(),
            worker_threads = settings.worker_threads,
            "sierradb listening"
        );
        if let Some(address) = settings.metrics_address {
            let listener = tokio::net::TcpListener::bind(address)
                .await
                .with_context(|| format!("metrics listener on {address}"))?;
            tracing::info!(metrics_address = %listener.local_addr()?, "serving /metrics");
            tokio::spawn(serve_metrics(listener, db.clone()));
        }
        db::server::serve(
            listener,
            env,
            db.clone(),
            settings.server,
            shutdown_signal(),
        )
        .await?;
        db.shutdown().await;
        tracing::info!("all appends synced; bye");
        anyhow::Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_beat_environment_beat_file_beat_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("sierradb.toml");
        std::fs::write(
            &file,
            "partitions = 64\nbuckets = 8\nclient_address = \"127.0.0.1:7000\"\nstrict_versioning = true\n",
        )
        .unwrap();
        // `buckets` from the file; `partitions` overridden by a flag; the rest defaults.
        let args = ServeArgs {
            config: Some(file.clone()),
            partitions: Some(16),
            ..Default::default()
        };
        let s = args.resolve().unwrap();
        assert_eq!(s.store.partition_count, 16);
        assert_eq!(s.store.bucket_count, 8);
        assert_eq!(s.client_address, "127.0.0.1:7000".parse().unwrap());
        assert!(s.server.strict_versioning);
        assert_eq!(s.dir, PathBuf::from("./data"));
        assert_eq!(s.store.sync, SyncPolicy::Always);

        let defaults = ServeArgs::default().resolve().unwrap();
        assert_eq!(defaults.client_address, "127.0.0.1:9090".parse().unwrap());
        assert_eq!(defaults.store, StoreConfig::default());
        assert!(!defaults.server.strict_versioning);
        assert_eq!(
            defaults.server.max_window,
            ServerConfig::default().max_window
        );
        assert_eq!(defaults.worker_threads, default_worker_threads());
        assert!(defaults.worker_threads >= 1);

        std::fs::write(&file, "worker_threads = 3\n").unwrap();
        let from_file = ServeArgs {
            config: Some(file.clone()),
            ..Default::default()
        };
        assert_eq!(from_file.resolve().unwrap().worker_threads, 3);
        let err = ServeArgs {
            worker_threads: Some(0),
            ..Default::default()
        }
        .resolve()
        .unwrap_err();
        assert!(err.to_string().contains("at least 1"), "{err}");

        std::fs::write(&file, "partitons = 3\n").unwrap();
        let err = ServeArgs {
            config: Some(file),
            ..Default::default()
        }
        .resolve()
        .unwrap_err();
        assert!(format!("{err:#}").contains("unknown field"), "{err:#}");

        let err = ServeArgs {
            sync: Some("sometimes".into()),
            ..Default::default()
        }
        .resolve()
        .unwrap_err();
        assert!(err.to_string().contains("never-unsafe"));
    }

    #[test]
    fn a_second_lock_on_the_same_directory_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let first = lock_dir(dir.path()).unwrap();
        let err = lock_dir(dir.path()).err().unwrap();
        assert!(err.to_string().contains("in use"), "{err}");
        drop(first);
        lock_dir(dir.path()).unwrap();
    }
}
