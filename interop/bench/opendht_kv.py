#!/usr/bin/python3
"""The put/get workload of `kv_compare` against OpenDHT (Debian's dhtnode and
python3-opendht), for the comparison in spec-notes/performance.md.

Starts PEERS `dhtnode` processes on 127.0.0.1 (each bootstrapped from the first), one
client DhtRunner in this process, then for each in-flight depth given: OPS puts of distinct
keys (a 40-byte value each, like the RELOAD side's), then OPS gets of those keys by the
same runner, then OPS gets by a second runner started after the puts (which holds none of
the values, so every get crosses the network: op "get-fresh"), keeping DEPTH requests in
flight. Prints one JSON object per (operation, depth) on stdout:
{"system": "opendht", "op": "put", "depth": 16, "ops": N, "seconds": s, "p50_ms": …,
"p99_ms": …, "failed": n}. Every loop is bounded in count and time.

Run with Debian's python3 (/usr/bin/python3), which has the opendht module:
    /usr/bin/python3 interop/bench/opendht_kv.py --ops 2000 --depth 1 --depth 16
"""

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time

import opendht as dht


def free_udp_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def start_nodes(n, logdir):
    procs = []
    ports = []
    for i in range(n):
        port = free_udp_port()
        args = ["dhtnode", "-p", str(port)]
        if ports:
            args += ["-b", "127.0.0.1:%d" % ports[0]]
        log = open(os.path.join(logdir, "dhtnode%d.log" % i), "w")
        # dhtnode reads commands from stdin and stops at its end: keep it open.
        p = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT)
        procs.append(p)
        ports.append(port)
    return procs, ports


def percentile(sorted_values, p):
    if not sorted_values:
        return None
    k = min(len(sorted_values) - 1, max(0, int(round(p / 100.0 * (len(sorted_values) - 1)))))
    return sorted_values[k]


def run_ops(op, keys, depth, client, value, timeout_s):
    """Runs one op per key with `depth` in flight; returns (seconds, latencies, failed)."""
    lock = threading.Lock()
    room = threading.Semaphore(depth)
    all_done = threading.Event()
    latencies = []
    state = {"failed": 0, "left": len(keys)}

    def finish(t0, ok):
        with lock:
            latencies.append(time.perf_counter() - t0)
            if not ok:
                state["failed"] += 1
            state["left"] -= 1
            if state["left"] == 0:
                all_done.set()
        room.release()

    start = time.perf_counter()
    deadline = start + timeout_s
    for key in keys:
        if not room.acquire(timeout=max(0.0, deadline - time.perf_counter())):
            break
        t0 = time.perf_counter()
        if op == "put":
            client.put(key, dht.Value(value), lambda ok, nodes, t0=t0: finish(t0, ok))
        else:
            found = {"n": 0}

            def got(v, found=found):
                found["n"] += 1
                return False  # one value is enough: stop the search

            client.get(
                key,
                got,
                lambda ok, nodes, t0=t0, found=found: finish(t0, ok and found["n"] > 0),
            )
    all_done.wait(timeout=max(0.0, deadline - time.perf_counter()))
    seconds = time.perf_counter() - start
    with lock:
        lat = sorted(latencies)
        failed = state["failed"] + state["left"]
    return seconds, lat, failed


def wait_for_nodes(runner, ports):
    """Lets `runner` find the nodes: until a ping of each answers (bounded), then one more
    round of routing-table exchanges."""
    t_end = time.time() + 30
    pending = set(ports)
    while pending and time.time() < t_end:
        for port in list(pending):
            done = threading.Event()
            res = {}

            def pinged(ok, res=res, done=done):
                res["ok"] = ok
                done.set()

            runner.ping(dht.SockAddr("127.0.0.1", port), pinged)
            done.wait(timeout=2)
            if res.get("ok"):
                pending.discard(port)
    time.sleep(2)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--peers", type=int, default=10)
    ap.add_argument("--ops", type=int, default=2000)
    ap.add_argument("--depth", type=int, action="append", default=None)
    ap.add_argument("--timeout", type=float, default=300.0, help="seconds per (op, depth) at most")
    args = ap.parse_args()
    depths = args.depth or [1, 16]
    logdir = tempfile.mkdtemp(prefix="opendht-bench-")
    procs, ports = start_nodes(args.peers, logdir)
    client = dht.DhtRunner()
    readers = []
    try:
        client.run(port=free_udp_port())
        client.bootstrap("127.0.0.1", str(ports[0]))
        wait_for_nodes(client, ports)
        value = b"sip:bench@192.0.2.1:5060;transport=udp" + b"x" * 2
        for depth in depths:
            keys = [dht.InfoHash.get("kv-%d-%d-%d" % (os.getpid(), depth, i)) for i in range(args.ops)]
            for op in ("put", "get", "get-fresh"):
                runner = client
                if op == "get-fresh":
                    # A second DhtRunner started after the puts: it holds none of the
                    # values, so each get crosses the network like a RELOAD client's
                    # Fetch (the putting runner answers many gets from its own storage).
                    runner = dht.DhtRunner()
                    readers.append(runner)
                    runner.run(port=free_udp_port())
                    runner.bootstrap("127.0.0.1", str(ports[0]))
                    wait_for_nodes(runner, ports)
                seconds, lat, failed = run_ops(
                    "put" if op == "put" else "get", keys, depth, runner, value, args.timeout
                )
                print(json.dumps({
                    "system": "opendht",
                    "op": op,
                    "depth": depth,
                    "ops": len(lat),
                    "seconds": seconds,
                    "ops_per_s": len(lat) / seconds if seconds > 0 else 0.0,
                    "p50_ms": 1000 * percentile(lat, 50) if lat else None,
                    "p99_ms": 1000 * percentile(lat, 99) if lat else None,
                    "failed": failed,
                }), flush=True)
    finally:
        for r in readers:
            r.join()
        client.join()
        for p in procs:
            p.kill()
        for p in procs:
            p.wait(timeout=10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
