//! `sierradb bench` (without `--embedded`): a load generator speaking RESP to a running
//! server, with its own client on the `net` codec. Prints ops/s and p50/p99/p99.9 latency per
//! workload; `--json` prints one machine-readable line.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::BytesMut;
use net::{Frame, Limits, Protocol};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::Common;
use super::stats::{Latencies, Report};

#[derive(clap::Args, Debug, Clone)]
pub struct RespArgs {
    /// Server to load.
    #[arg(long, default_value = "127.0.0.1:9090")]
    pub address: SocketAddr,
    /// `append`, `scan` (ESCAN of --scan-count events) or `get` (EGET of random stored ids).
    #[arg(long, default_value = "append")]
    pub workload: String,
    /// Concurrent connections.
    #[arg(long, default_value_t = 50)]
    pub connections: usize,
    /// Requests in flight per connection (1 = no pipelining).
    #[arg(long, default_value_t = 1)]
    pub pipeline: usize,
    /// Pick streams with a Zipf(1.0) distribution instead of uniformly (hot streams).
    #[arg(long)]
    pub zipf: bool,
    /// Events per stream appended before a scan or get workload.
    #[arg(long, default_value_t = 100)]
    pub prefill: usize,
    /// Streams prefilled before a scan or get workload.
    #[arg(long, default_value_t = 100)]
    pub prefill_streams: usize,
    /// COUNT of each ESCAN.
    #[arg(long, default_value_t = 100)]
    pub scan_count: usize,
}

/// Picks stream indexes uniformly or by Zipf(1.0), from a seeded generator.
struct Picker {
    state: u64,
    cdf: Option<Arc<Vec<f64>>>,
    n: usize,
}

impl Picker {
    fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn pick(&mut self) -> usize {
        let r = self.next_u64();
        match &self.cdf {
            None => (r % self.n as u64) as usize,
            Some(cdf) => {
                let u = (r >> 11) as f64 / (1u64 << 53) as f64;
                cdf.partition_point(|c| *c < u).min(self.n - 1)
            }
        }
    }
}

fn zipf_cdf(n: usize) -> Vec<f64> {
    let weights: Vec<f64> = (1..=n).map(|k| 1.0 / k as f64).collect();
    let total: f64 = weights.iter().sum();
    let mut acc = 0.0;
    weights
        .iter()
        .map(|w| {
            acc += w / total;
            acc
        })
        .collect()
}

/// One RESP connection with a read buffer.
struct Client {
    stream: TcpStream,
    buf: BytesMut,
    limits: Limits,
}

impl Client {
    async fn connect(address: SocketAddr) -> anyhow::Result<Client> {
        let stream = TcpStream::connect(address)
            .await
            .with_context(|| format!("connect to {address}"))?;
        stream.set_nodelay(true)?;
        Ok(Client {
            stream,
            buf: BytesMut::with_capacity(64 * 1024),
            limits: Limits::default(),
        })
    }

    async fn send(&mut self, requests: &[Vec<Vec<u8>>]) -> anyhow::Result<()> {
        let mut out = BytesMut::new();
        for args in requests {
            let frame = Frame::array(args.iter().map(|a| Frame::bulk(a.clone())).collect());
            net::encode(&frame, Protocol::Resp2, &mut out);
        }
        self.stream.write_all(&out).await?;
        Ok(())
    }

    async fn receive(&mut self) -> anyhow::Result<Frame> {
        loop {
            if let Some(frame) = net::decode(&mut self.buf, &self.limits)? {
                return Ok(frame);
            }
            if self.stream.read_buf(&mut self.buf).await? == 0 {
                bail!("server closed the connection");
            }
        }
    }
}

fn reply_error(frame: &Frame) -> Option<String> {
    match frame {
        Frame::SimpleError(e) | Frame::BlobError(e) => Some(String::from_utf8_lossy(e).into()),
        _ => None,
    }
}

/// The `event_id` field of an EAPPEND reply rendered in RESP2 (a flat key/value array).
fn event_id_of(frame: &Frame) -> Option<Vec<u8>> {
    let items = frame.as_array()?;
    items
        .chunks(2)
        .find(|kv| kv[0].as_bytes().is_some_and(|k| &k[..] == b"event_id"))
        .and_then(|kv| kv.get(1)?.as_bytes().map(|b| b.to_vec()))
}

async fn prefill(args: &RespArgs, common: &Common) -> anyhow::Result<Vec<Vec<u8>>> {
    let mut client = Client::connect(args.address).await?;
    let payload = vec![b'p'; common.payload];
    let mut ids = Vec::new();
    for s in 0..args.prefill_streams {
        let requests: Vec<Vec<Vec<u8>>> = (0..args.prefill)
            .map(|_| {
                vec![
                    b"EAPPEND".to_vec(),
                    format!("prefill-{s}").into_bytes(),
                    b"BenchEvent".to_vec(),
                    b"PAYLOAD".to_vec(),
                    payload.clone(),
                ]
            })
            .collect();
        client.send(&requests).await?;
        for _ in 0..requests.len() {
            let reply = client.receive().await?;
            if let Some(e) = reply_error(&reply) {
                bail!("prefill append failed: {e}");
            }
            ids.extend(event_id_of(&reply));
        }
    }
    Ok(ids)
}

pub async fn run(args: RespArgs, common: Common, json: bool) -> anyhow::Result<()> {
    if args.connections == 0 || args.pipeline == 0 || common.streams == 0 {
        bail!("connections, pipeline and streams must be at least 1");
    }
    let ids = match args.workload.as_str() {
        "append" => Arc::new(Vec::new()),
        "scan" | "get" => Arc::new(prefill(&args, &common).await?),
        other => bail!("unknown workload `{other}`: append, scan or get"),
    };
    if args.workload == "get" && ids.is_empty() {
        bail!("prefill stored no events to get");
    }
    let cdf = args.zipf.then(|| Arc::new(zipf_cdf(common.streams)));
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..args.connections {
        let args = args.clone();
        let common = common.clone();
        let ids = ids.clone();
        let stop = stop.clone();
        let mut picker = Picker {
            state: c as u64 + 1,
            cdf: cdf.clone(),
            n: common.streams,
        };
        tasks.push(tokio::spawn(async move {
            let mut client = Client::connect(args.address).await?;
            let payload = vec![b'x'; common.payload];
            let mut latencies = Latencies::default();
            let mut errors = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let requests: Vec<Vec<Vec<u8>>> = (0..args.pipeline)
                    .map(|_| match args.workload.as_str() {
                        "append" => vec![
                            b"EAPPEND".to_vec(),
                            format!("bench-{}", picker.pick()).into_bytes(),
                            b"BenchEvent".to_vec(),
                            b"PAYLOAD".to_vec(),
                            payload.clone(),
                        ],
                        "scan" => vec![
                            b"ESCAN".to_vec(),
                            format!("prefill-{}", picker.pick() % args.prefill_streams)
                                .into_bytes(),
                            b"-".to_vec(),
                            b"+".to_vec(),
                            b"COUNT".to_vec(),
                            args.scan_count.to_string().into_bytes(),
                        ],
                        _ => vec![b"EGET".to_vec(), ids[picker.pick() % ids.len()].clone()],
                    })
                    .collect();
                let sent = Instant::now();
                client.send(&requests).await?;
                for _ in 0..requests.len() {
                    let reply = client.receive().await?;
                    if reply_error(&reply).is_some() {
                        errors += 1;
                    }
                    latencies.record(sent.elapsed());
                }
            }
            anyhow::Ok((latencies, errors))
        }));
    }
    tokio::time::sleep(Duration::from_secs_f64(common.seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let mut latencies = Latencies::default();
    let mut errors = 0;
    for t in tasks {
        let (l, e) = t.await??;
        latencies.extend(l);
        errors += e;
    }
    let elapsed = start.elapsed();
    if errors > 0 {
        bail!("{errors} requests failed");
    }
    let ops = latencies.len() as u64;
    let events = match args.workload.as_str() {
        "scan" => ops * args.scan_count.min(args.prefill) as u64,
        _ => ops,
    };
    let report = Report {
        name: format!(
            "{} c={} P={}{}",
            args.workload,
            args.connections,
            args.pipeline,
            if args.zipf { " zipf" } else { "" }
        ),
        ops,
        events,
        elapsed,
        fsyncs: 0,
        writes: 0,
        p50_us: latencies.quantile_us(0.5),
        p99_us: latencies.quantile_us(0.99),
        p999_us: latencies.quantile_us(0.999),
        ceiling_events_per_sec: None,
    };
    if json {
        println!("{}", report.json());
    } else {
        report.print_text();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zipf_prefers_low_ranks_and_stays_in_range() {
        let mut p = Picker {
            state: 1,
            cdf: Some(Arc::new(zipf_cdf(1000))),
            n: 1000,
        };
        let mut hits = [0u32; 1000];
        for _ in 0..100_000 {
            hits[p.pick()] += 1;
        }
        assert!(hits[0] > hits[10] && hits[10] > hits[500]);
        // Rank 1 of Zipf(1.0) over 1000 items has probability 1/H(1000) ≈ 13%.
        assert!((11_000..16_000).contains(&hits[0]), "{}", hits[0]);
    }

    #[test]
    fn event_ids_are_found_in_resp2_maps() {
        let reply = Frame::array(vec![
            Frame::bulk(&b"event_id"[..]),
            Frame::bulk(&b"abc"[..]),
            Frame::bulk(&b"stream_version"[..]),
            Frame::int(3),
        ]);
        assert_eq!(event_id_of(&reply), Some(b"abc".to_vec()));
    }
}
