"""A second, independent Dubbo client: PyPI dubbo-ssl-python's DubboClient (its own
hessian2), direct connect to --target. The library keeps one connection per host and
multiplexes calls on it by request id. Phases, each when asked:

  --calls N --concurrency C   N echo calls from C threads; every answer must be the
                              caller's own argument
  --heartbeats H              H heartbeats through the library's own idle check
                              (_check_conn with the idle clock reset); each must be
                              answered before the next
  --unknown                   a call to a service nobody serves must fail with an error
                              answer, not a timeout
  --whoami S1,S2              calls whoami() on each service
  --service NAME              the echo service (default com.example.EchoService)

Prints one JSON line; exits 0 when every check held, 1 otherwise.
"""

import argparse
import json
import os
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

from dubbo_ssl.client import DubboClient
from dubbo_ssl.connection.connections import connection_pool

parser = argparse.ArgumentParser()
parser.add_argument("--target", required=True)
parser.add_argument("--calls", type=int, default=0)
parser.add_argument("--concurrency", type=int, default=20)
parser.add_argument("--heartbeats", type=int, default=0)
parser.add_argument("--unknown", action="store_true")
parser.add_argument("--whoami", default="")
parser.add_argument("--service", default="com.example.EchoService")
parser.add_argument("--timeout", type=float, default=5.0)
args = parser.parse_args()

report = {"ok": True, "failures": []}


def fail(msg):
    report["ok"] = False
    report["failures"].append(msg)


def client(interface):
    return DubboClient(interface=interface, group="", version="1.0",
                       dubbo_version="2.0.2", host=args.target)


def main():
    echo = client(args.service)
    # The first call opens the one connection.
    first = "py-first-" + uuid.uuid4().hex
    if echo.call("echo", first, timeout=args.timeout) != first:
        fail("first call: wrong answer")

    if args.calls > 0:
        def one(i):
            arg = "py-{}-{}".format(i, uuid.uuid4().hex[:12])
            try:
                if i % 4 == 0:
                    res = echo.call("echoAfter", [arg, i % 20], timeout=args.timeout)
                else:
                    res = echo.call("echo", arg, timeout=args.timeout)
                return "ok" if res == arg else "mismatched"
            except Exception as e:  # noqa: BLE001 - reported, not hidden
                return "error: {!r}".format(e)[:200]

        started = time.time()
        with ThreadPoolExecutor(max_workers=args.concurrency) as pool:
            results = list(pool.map(one, range(args.calls)))
        ok = results.count("ok")
        errors = [r for r in results if r.startswith("error")]
        report["calls"] = {"sent": args.calls, "ok": ok, "mismatched": results.count("mismatched"),
                           "errors": len(errors), "ms": int((time.time() - started) * 1000)}
        if ok != args.calls:
            fail("calls: {}/{} ok, first errors {}".format(ok, args.calls, errors[:3]))

    if args.heartbeats > 0:
        answered = 0
        host = args.target
        for _ in range(args.heartbeats):
            connection_pool._connection_pool[host].last_active = 0
            connection_pool.client_heartbeats[host] = 0
            connection_pool._check_conn(host, None)
            deadline = time.time() + args.timeout
            # The library counts a heartbeat sent up and an answer down.
            while connection_pool.client_heartbeats[host] > 0 and time.time() < deadline:
                time.sleep(0.005)
            if connection_pool.client_heartbeats[host] == 0:
                answered += 1
        after = "py-after-heartbeat-" + uuid.uuid4().hex
        follow_up = echo.call("echo", after, timeout=args.timeout) == after
        report["heartbeats"] = {"sent": args.heartbeats, "answered": answered, "followUp": follow_up}
        if answered != args.heartbeats:
            fail("heartbeats: {}/{} answered".format(answered, args.heartbeats))
        if not follow_up:
            fail("heartbeats: the call after them failed")

    if args.unknown:
        started = time.time()
        try:
            res = client("com.example.NoSuchService").call("echo", "x", timeout=args.timeout)
            report["unknown"] = {"error": None, "value": res}
            fail("unknown service: the call succeeded")
        except Exception as e:  # noqa: BLE001
            ms = int((time.time() - started) * 1000)
            report["unknown"] = {"error": repr(e)[:300], "ms": ms}
            if ms >= args.timeout * 1000 * 0.9:
                fail("unknown service: timed out instead of an error answer")

    if args.whoami:
        report["whoami"] = {}
        for name in args.whoami.split(","):
            try:
                report["whoami"][name] = client(name).call("whoami", [], timeout=args.timeout)
            except Exception as e:  # noqa: BLE001
                report["whoami"][name] = "ERROR {!r}".format(e)[:200]

    report["connections"] = len(connection_pool._connection_pool)


try:
    main()
except Exception as e:  # noqa: BLE001
    fail("fatal: {!r}".format(e))
sys.stdout.write(json.dumps(report) + "\n")
sys.stdout.flush()
# The library's reader thread is not a daemon: leave without waiting for it.
os._exit(0 if report["ok"] else 1)
