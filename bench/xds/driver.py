#!/usr/bin/env python3
"""The driver of bench/xds/eds-100k.sh: an EDS push of N endpoints to a running
sidecar, measured.

Runs proxy-xds's ADS server (proxy-xds/tests/control_plane/ads_server.py) in this
process, starts the sidecar (argv[1]) on bench/xds/sidecar-eds.yaml, pushes clusters
`steady` (one endpoint, 127.0.0.1:STEADY_PORT) and `big` (no endpoint), and while
wrk loads `steady` through the sidecar, pushes `big` with N endpoints
127.x.y.z:BIG_PORT (all on loopback, served by one upstream listening on every
address). It prints `RESULT` lines: the snapshot build time in Python, the time from
the push to the first request through `big` answered 200, wrk's maximum latency
with and without the push (the longest request stall), and the sidecar's RSS growth
per 10,000 endpoints.
"""

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "proxy-xds", "tests", "control_plane"))

import ads_server  # noqa: E402

LISTEN = "http://127.0.0.1:18100"
ADMIN = "http://127.0.0.1:18101"


def get(url, timeout=2.0):
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except OSError:
        return None


def rss_bytes(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def wait(what, cond, limit=30.0):
    deadline = time.time() + limit
    while time.time() < deadline:
        if cond():
            return
        time.sleep(0.02)
    raise SystemExit("timed out waiting for " + what)


def endpoints(n, port):
    return ["127.%d.%d.%d:%d" % (1 + i // 65536, (i // 256) % 256, i % 256, port) for i in range(n)]


def wrk(secs):
    return subprocess.Popen(
        ["wrk", "-t1", "-c20", "-d%ds" % secs, "--latency", LISTEN + "/"],
        stdout=subprocess.PIPE,
        text=True,
    )


def wrk_max_ms(out):
    m = re.search(r"Latency\s+\S+\s+\S+\s+(\S+)", out)
    if not m:
        return float("nan")
    v = m.group(1)
    for unit, scale in (("us", 1e-3), ("ms", 1.0), ("s", 1e3), ("m", 6e4)):
        if v.endswith(unit):
            return float(v[: -len(unit)]) * scale
    return float("nan")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("sidecar")
    p.add_argument("--endpoints", type=int, default=100000)
    p.add_argument("--steady-port", type=int, default=18090)
    p.add_argument("--big-port", type=int, default=18091)
    p.add_argument("--wrk-secs", type=int, default=8)
    args = p.parse_args()
    n = args.endpoints

    sys.stdout = open(os.devnull, "w")  # the ADS server's JSON events
    out = sys.stderr
    plane = ads_server.ControlPlane()
    base = {
        "version": "1",
        "clusters": [{"name": "steady"}, {"name": "big"}],
        "endpoints": {"steady": ["127.0.0.1:%d" % args.steady_port], "big": []},
    }
    plane.set(base)
    server, port = ads_server.start(plane, 0)
    tmp = tempfile.mkdtemp(prefix="eds-bench-")
    config = os.path.join(tmp, "sidecar.yaml")
    with open(os.path.join(HERE, "sidecar-eds.yaml")) as f:
        text = f.read().replace("CP_PORT", str(port))
    with open(config, "w") as f:
        f.write(text)
    log = open(os.path.join(tmp, "sidecar.log"), "w")
    sidecar = subprocess.Popen([args.sidecar, "--config", config], stderr=log, stdout=log)
    try:
        wait("the steady cluster", lambda: get(LISTEN + "/") == 200)
        time.sleep(0.5)
        rss_before = rss_bytes(sidecar.pid)

        quiet = wrk(args.wrk_secs)
        quiet_out = quiet.communicate()[0]

        t = time.perf_counter()
        push = dict(base, version="2")
        push["endpoints"] = dict(base["endpoints"], big=endpoints(n, args.big_port))
        snapshot = ads_server.Snapshot(push)
        built = time.perf_counter() - t

        loaded = wrk(args.wrk_secs)
        time.sleep(args.wrk_secs / 3)
        with plane.lock:
            plane.snapshot = snapshot
            t0 = time.perf_counter()
            for stream in plane.streams:
                stream.push(snapshot)
        while get(LISTEN + "/big", timeout=5.0) != 200:
            if time.perf_counter() - t0 > 120:
                raise SystemExit("no request through big after 120 s")
        first = time.perf_counter() - t0
        loaded_out = loaded.communicate()[0]
        time.sleep(1.0)
        rss_after = rss_bytes(sidecar.pid)

        per_10k = (rss_after - rss_before) * 10000 / n
        print("RESULT endpoints=%d" % n, file=out)
        print("RESULT python_snapshot_build_ms=%.0f" % (built * 1e3), file=out)
        print("RESULT push_to_first_request_ms=%.0f" % (first * 1e3), file=out)
        print("RESULT wrk_max_latency_ms_without_push=%.1f" % wrk_max_ms(quiet_out), file=out)
        print("RESULT wrk_max_latency_ms_during_push=%.1f" % wrk_max_ms(loaded_out), file=out)
        print("RESULT rss_before_mib=%.1f rss_after_mib=%.1f" % (rss_before / 2**20, rss_after / 2**20), file=out)
        print("RESULT rss_per_10k_endpoints_mib=%.2f (%.0f bytes per endpoint)" % (per_10k / 2**20, per_10k / 10000), file=out)
        print("--- wrk during the push ---\n" + loaded_out, file=out)
    finally:
        sidecar.terminate()
        sidecar.wait()
        plane.end_streams()
        server.stop(grace=None)


if __name__ == "__main__":
    main()
