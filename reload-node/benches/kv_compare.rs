//! Issue 11's comparison with OpenDHT: the same put/get workload against a RELOAD overlay
//! and against OpenDHT on the same machine in the same run, reported (never asserted) in
//! spec-notes/performance.md.
//!
//! `cargo bench -p reload-node --bench kv_compare -- [OPS] [--no-opendht]`
//!
//! RELOAD: ten peers on 127.0.0.1 over TLS-TCP-FH-NO-ICE (real sockets, the tokio shell,
//! P-256 certificates from a test CA), in-memory storage, one client node (§4.2) in the
//! same process. For each depth (1 and 16 requests in flight): OPS Stores of distinct
//! Resource-IDs — H(client Node-ID ‖ i) under NODE-MULTIPLE (§7.3.4), so the keys spread
//! over the ring as a DHT's do — each a 40-byte single value, then OPS Fetches of them.
//! Every message is signed and verified hop by hop as RFC 6940 requires (the request, the
//! value, the answer; the responsible peer copies each value to two replicas, §10.4), and
//! the client verifies each fetched value (§7.4.2.2).
//!
//! OpenDHT: `interop/bench/opendht_kv.py` (Debian's `dhtnode` and `python3-opendht`): ten
//! `dhtnode` processes on 127.0.0.1, one client, the same keys count, value size and
//! depths; its gets are made twice: by the runner that put the values (which answers many
//! from its own storage) and by a fresh runner started after the puts ("get-fresh", every
//! get over the network, as every RELOAD client Fetch is). Skipped, with a note, when /usr/bin/python3 cannot import opendht.
//!
//! Every loop is bounded in count and time.

#[path = "../tests/inproc/mod.rs"]
mod inproc;

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use reload_node::client::NodeHandle;
use reload_proto::config::{AccessPolicy, KindDataModel, KindDefinition};
use reload_proto::identity::chord_resource_id;
use reload_proto::node::everything;
use reload_proto::storage::policy::node_multiple_name;
use reload_wire::storage::{DataModel, DataValue, KindId, StoredDataValue};
use reload_wire::{NodeId, ResourceId};

const PEERS: usize = 10;
const KIND: KindId = KindId(0xf000_0010);
const VALUE_LEN: usize = 40;
/// One operation gives up after this.
const OP_TIMEOUT: Duration = Duration::from_secs(10);

/// One (system, operation, depth) measurement.
#[derive(Clone, Debug)]
struct Row {
    system: String,
    op: String,
    depth: usize,
    ops: usize,
    seconds: f64,
    p50_ms: f64,
    p99_ms: f64,
    failed: usize,
}

impl Row {
    fn rate(&self) -> f64 {
        (self.ops - self.failed) as f64 / self.seconds
    }
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let k = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[k.min(sorted.len() - 1)].as_secs_f64() * 1000.0
}

/// Runs `op(i)` for i in `range`, `depth` at a time; each one timed.
async fn run_ops<F, Fut>(
    system: &str,
    name: &str,
    range: std::ops::Range<usize>,
    depth: usize,
    op: F,
) -> Row
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = bool> + Send + 'static,
{
    let n = range.len();
    let mut next = range.start;
    let mut set = tokio::task::JoinSet::new();
    let mut latencies = Vec::with_capacity(n);
    let mut failed = 0;
    let t0 = Instant::now();
    while next < range.end || !set.is_empty() {
        while next < range.end && set.len() < depth {
            let fut = op(next);
            set.spawn(async move {
                let t = Instant::now();
                let ok = tokio::time::timeout(OP_TIMEOUT, fut).await.unwrap_or(false);
                (ok, t.elapsed())
            });
            next += 1;
        }
        if let Some(Ok((ok, d))) = set.join_next().await {
            latencies.push(d);
            if !ok {
                failed += 1;
            }
        }
    }
    let seconds = t0.elapsed().as_secs_f64();
    latencies.sort();
    Row {
        system: system.into(),
        op: name.into(),
        depth,
        ops: n,
        seconds,
        p50_ms: percentile(&latencies, 50.0),
        p99_ms: percentile(&latencies, 99.0),
        failed,
    }
}

fn value(i: usize) -> Bytes {
    let mut v = format!("value-{i:034}").into_bytes();
    v.truncate(VALUE_LEN);
    Bytes::from(v)
}

/// Starts the overlay and the client; the client's handle and Node-ID.
async fn overlay(ops: usize) -> (NodeHandle, NodeId, Vec<NodeHandle>) {
    let ca = inproc::pki::TestCa::new(false);
    let mut config = ca.storage_config();
    let mut k = KindDefinition::new(
        KIND,
        KindDataModel::Single,
        AccessPolicy::NodeMultiple,
        1,
        256,
    );
    k.max_node_multiple = Some(ops as u32 + 1);
    config.kinds.push(k);
    let mut nodes = inproc::overlay(PEERS, 1, Some((ca, config))).await;
    let client = nodes.pop().expect("the client");
    let peers = nodes.into_iter().map(|m| m.handle).collect();
    (client.handle, client.node_id, peers)
}

async fn reload_side(ops: usize) -> Vec<Row> {
    let (client, id, _peers) = overlay(2 * ops).await;
    let rid = |i: usize| -> ResourceId { chord_resource_id(&node_multiple_name(&id, i as u32)) };
    let client = Arc::new(client);
    let mut rows = Vec::new();
    for (k, depth) in [1usize, 16].into_iter().enumerate() {
        let range = 1 + k * ops..1 + (k + 1) * ops;
        let c = client.clone();
        rows.push(
            run_ops("reload", "put", range.clone(), depth, |i| {
                let c = c.clone();
                let r = rid(i);
                async move {
                    let v = StoredDataValue::Single(DataValue {
                        exists: true,
                        value: value(i),
                    });
                    c.store(KIND, r, vec![v], 3600).await.is_ok()
                }
            })
            .await,
        );
        let c = client.clone();
        rows.push(
            run_ops("reload", "get", range, depth, |i| {
                let c = c.clone();
                let r = rid(i);
                async move {
                    match c.fetch(r, vec![everything(KIND, DataModel::Single)]).await {
                        Ok(f) => {
                            f.rejected.is_empty()
                                && f.kinds
                                    .iter()
                                    .flat_map(|k| k.values.as_slice())
                                    .any(|d| d.value.data_value().value == value(i))
                        }
                        Err(_) => false,
                    }
                }
            })
            .await,
        );
    }
    rows
}

/// The OpenDHT side, or why not.
fn opendht_side(ops: usize) -> Result<Vec<Row>, String> {
    let py = "/usr/bin/python3";
    let probe = Command::new(py).args(["-c", "import opendht"]).output();
    if !probe.is_ok_and(|o| o.status.success()) {
        return Err(format!(
            "{py} cannot import opendht (apt-get install dhtnode python3-opendht)"
        ));
    }
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../interop/bench/opendht_kv.py"
    );
    let out = Command::new(py)
        .arg(script)
        .args(["--ops", &ops.to_string(), "--depth", "1", "--depth", "16"])
        .output()
        .map_err(|e| format!("{script}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{script} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let mut rows = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let f = |k: &str| v[k].as_f64().unwrap_or(f64::NAN);
        rows.push(Row {
            system: "opendht".into(),
            op: v["op"].as_str().unwrap_or("?").into(),
            depth: f("depth") as usize,
            ops: f("ops") as usize,
            seconds: f("seconds"),
            p50_ms: f("p50_ms"),
            p99_ms: f("p99_ms"),
            failed: f("failed") as usize,
        });
    }
    Ok(rows)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let ops: usize = args
        .iter()
        .find_map(|a| a.parse().ok())
        .unwrap_or(2000)
        .clamp(10, 30_000);
    let with_opendht = !args.iter().any(|a| a == "--no-opendht");
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_default();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("kv_compare: {ops} puts then {ops} gets per depth; {cores} cores, {cpu}");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut rows = rt.block_on(reload_side(ops));
    rt.shutdown_timeout(Duration::from_secs(2));
    if with_opendht {
        match opendht_side(ops) {
            Ok(r) => rows.extend(r),
            Err(why) => println!("OpenDHT skipped: {why}"),
        }
    }
    println!(
        "{:<8} {:<9} {:>5} {:>6} {:>9} {:>8} {:>8} {:>6}",
        "system", "op", "depth", "ops", "ops/s", "p50 ms", "p99 ms", "failed"
    );
    for r in &rows {
        println!(
            "{:<8} {:<9} {:>5} {:>6} {:>9.0} {:>8.2} {:>8.2} {:>6}",
            r.system,
            r.op,
            r.depth,
            r.ops,
            r.rate(),
            r.p50_ms,
            r.p99_ms,
            r.failed
        );
    }
    // The whole workload (the puts, then the gets of what was put) at each depth: its
    // throughput is (puts + gets) over the time both took.
    let workload = |system: &str, get_op: &str, depth: usize| -> Option<f64> {
        let find = |op: &str| {
            rows.iter()
                .find(|r| r.system == system && r.op == op && r.depth == depth)
        };
        let (p, g) = (find("put")?, find(get_op)?);
        Some((p.ops + g.ops) as f64 / (p.ops as f64 / p.rate() + g.ops as f64 / g.rate()))
    };
    for depth in [1, 16] {
        let Some(r) = workload("reload", "get", depth) else {
            continue;
        };
        for get_op in ["get", "get-fresh"] {
            if let Some(o) = workload("opendht", get_op, depth) {
                println!(
                    "put+get workload depth {depth}: RELOAD {r:.0} ops/s, {:.1}x OpenDHT's with its {get_op} ({o:.0} ops/s)",
                    r / o
                );
            }
        }
    }
    // A RELOAD client holds no values (§4.2): each of its gets crosses the overlay, so it
    // compares with both of OpenDHT's — the putting runner's (answered from its own
    // storage when it is among the key's closest nodes) and a fresh runner's.
    for r in rows.iter().filter(|r| r.system == "reload") {
        for o in rows
            .iter()
            .filter(|o| o.system == "opendht" && o.op.starts_with(&r.op) && o.depth == r.depth)
        {
            println!(
                "{} depth {}: RELOAD {:.1}x OpenDHT's {} throughput",
                r.op,
                r.depth,
                r.rate() / o.rate(),
                o.op
            );
        }
    }
}
