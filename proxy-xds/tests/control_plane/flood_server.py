#!/usr/bin/env python3
"""A control plane that floods: ads_server.py's ADS server (state of the world and
delta, same snapshot, same JSON lines on stdin and stdout) with two more commands,
for proxy-xds's flood test (tests/flood.rs):

  {"op": "flood", "count": 10000, "rate": 2000, "types": ["eds", "rds"],
   "endpoints": {"a": [["127.0.0.1:8001"], ["127.0.0.1:8002"]]},
   "routes": "r", "bad_every": 97}
      sends `count` updates at `rate` per second to every open stream, without
      waiting for any answer. Update i (from 1) is of type types[i % len(types)]
      and version "f<i>": EDS gives cluster "a" the address list
      endpoints["a"][i % len], RDS gives route configuration `routes` a route
      for prefix "/v<i>" then "/", both to cluster "a". Every `bad_every`-th
      update is refused by design (an endpoint on port 0; a route whose regex
      does not compile) and leaves the snapshot as it was, so the next good
      update of its type supersedes it. While the flood runs and until "report",
      the "sent" and "request" events are recorded instead of printed.
      Prints {"event": "flooded", "count", "seconds", "last": {type: version}}.
  {"op": "report"}
      prints {"event": "report", "sent": [[nonce, type, version, bad], ...],
      "answers": {nonce: [[kind, error], ...]}}: every response sent since the
      flood began and every answer the client gave it; then prints again.

Written from the xDS specification: the client is checked against it.
"""

import copy
import json
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ads_server  # noqa: E402  (the script's own directory, added above)
from ads_server import TYPES, discovery_pb2  # noqa: E402


class Recorder:
    """The "sent" and "request" events of a flood, kept instead of printed."""

    def __init__(self):
        self.lock = threading.Lock()
        self.active = False
        self.sent = []
        self.answers = {}

    def emit(self, **event):
        with self.lock:
            if self.active and event.get("event") in ("sent", "request"):
                if event["event"] == "sent":
                    self.sent.append(
                        [event["nonce"], event["type"], event["version"], event.get("bad", False)]
                    )
                elif event.get("nonce"):
                    self.answers.setdefault(event["nonce"], []).append(
                        [event["kind"], event.get("error")]
                    )
                return
        PRINT(**event)

    def start(self):
        with self.lock:
            self.active = True
            self.sent = []
            self.answers = {}

    def report(self):
        with self.lock:
            self.active = False
            report = {"sent": self.sent, "answers": self.answers}
            self.sent, self.answers = [], {}
        PRINT(event="report", **report)


PRINT = ads_server.emit
RECORDER = Recorder()
ads_server.emit = RECORDER.emit


def next_snapshot(snapshot, version, short, i, command):
    """The snapshot after good update `i` of type `short`."""
    new = copy.copy(snapshot)
    new.resources = {k: dict(v) for k, v in snapshot.resources.items()}
    new.version = version
    if short == "eds":
        for name, variants in command.get("endpoints", {}).items():
            new.put("eds", name, ads_server.make_assignment(name, variants[i % len(variants)]))
    else:
        name = command["routes"]
        routes = [{"prefix": "/v%d" % i, "cluster": "a"}, {"prefix": "/", "cluster": "a"}]
        new.put("rds", name, ads_server.make_routes(name, routes))
    return new


def bad_resource(short, command):
    """(name, message) of a resource the client must refuse."""
    if short == "eds":
        name = sorted(command.get("endpoints", {}))[0]
        return name, ads_server.make_assignment(name, ["127.0.0.1:0"])
    name = command["routes"]
    return name, ads_server.make_routes(name, [{"regex": "/(", "cluster": "a"}])


def send_bad(stream, short, version, name, message):
    """Sends `message` as the only resource of a response of `short`."""
    data = message.SerializeToString(deterministic=True)
    nonce = stream.next_nonce()
    if stream.variant == "sotw":
        resp = discovery_pb2.DiscoveryResponse(
            version_info=version, type_url=TYPES[short], nonce=nonce)
        resp.resources.add(type_url=TYPES[short], value=data)
    else:
        resp = discovery_pb2.DeltaDiscoveryResponse(
            system_version_info=version, type_url=TYPES[short], nonce=nonce)
        r = resp.resources.add(name=name, version="bad-" + version)
        r.resource.type_url = TYPES[short]
        r.resource.value = data
        stream.pending[nonce] = (short, {}, [])
    ads_server.emit(event="sent", variant=stream.variant, type=short, nonce=nonce,
                    version=version, names=[name], removed=[], bad=True)
    stream.out.put(resp)


def send_delta_update(stream, short, snapshot):
    """Sends every subscribed resource of `short` in `snapshot` on a delta stream,
    whatever the client acknowledged: in a flood the client holds what was sent
    last, which its answers have not confirmed yet."""
    if short not in stream.subscribed:
        return
    wanted = stream.wanted(short, snapshot)
    if not wanted:
        return
    resp = discovery_pb2.DeltaDiscoveryResponse(
        system_version_info=snapshot.version, type_url=TYPES[short], nonce=stream.next_nonce())
    for name, (version, type_url, data) in sorted(wanted.items()):
        r = resp.resources.add(name=name, version=version)
        r.resource.type_url = type_url
        r.resource.value = data
    stream.pending[resp.nonce] = (short, {n: r[0] for n, r in wanted.items()}, [])
    ads_server.emit(event="sent", variant="delta", type=short, nonce=resp.nonce,
                    version=snapshot.version, names=sorted(wanted), removed=[])
    stream.out.put(resp)


def flood(plane, command):
    count, rate = int(command["count"]), float(command["rate"])
    types = command.get("types", ["eds"])
    bad_every = int(command.get("bad_every", 0))
    RECORDER.start()
    start = time.monotonic()
    last = {}
    for i in range(1, count + 1):
        due = start + (i - 1) / rate
        now = time.monotonic()
        if due > now:
            time.sleep(due - now)
        short = types[i % len(types)]
        version = "f%d" % i
        with plane.lock:
            if bad_every and i % bad_every == 0:
                name, message = bad_resource(short, command)
                for stream in plane.streams:
                    send_bad(stream, short, version, name, message)
                continue
            plane.snapshot = next_snapshot(plane.snapshot, version, short, i, command)
            for stream in plane.streams:
                if stream.variant == "sotw":
                    stream.send_sotw(short, plane.snapshot)
                else:
                    send_delta_update(stream, short, plane.snapshot)
            last[short] = version
    PRINT(event="flooded", count=count, seconds=time.monotonic() - start, last=last)


def main():
    plane = ads_server.ControlPlane()
    server, _ = ads_server.start(plane, 0)
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        command = json.loads(line)
        op = command.get("op")
        if op == "set":
            plane.set(command)
        elif op == "flood":
            flood(plane, command)
        elif op == "report":
            RECORDER.report()
        elif op == "quit":
            break
        else:
            PRINT(event="error", message="unknown op %r" % op)
    plane.end_streams()
    server.stop(grace=None)


if __name__ == "__main__":
    main()
