#!/usr/bin/env python3
"""A control plane for the sidecar's xDS bootstrap (configs/xds-bootstrap.yaml).

Serves over ADS (state of the world and delta) the listener, route configuration,
cluster and endpoints of a snapshot file (snapshot.json next to this script by
default: listener `outbound` on 127.0.0.1:15001, its routes to cluster `demo`, whose
endpoint is 127.0.0.1:18080), and starts a demo upstream on that endpoint that
answers "hello from the demo upstream". Edit the snapshot file (bump "version") and
send SIGHUP to push the change.

The ADS server is proxy-xds's test control plane
(proxy-xds/tests/control_plane/ads_server.py, grpcio and xds-protos from PyPI):
install them with scripts/deps/proxy-xds.sh and run this with that venv's python:

  scripts/deps/proxy-xds.sh
  target/test-deps/xds-venv/bin/python3 examples/sidecar/xds/control_plane.py

It prints one JSON event per line (requests, ACKs and NACKs, what it sent).
"""

import argparse
import http.server
import os
import sys
import threading

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "proxy-xds", "tests", "control_plane"))

import ads_server  # noqa: E402  (after the path above)


class Hello(http.server.BaseHTTPRequestHandler):
    """The demo upstream: 200 "hello from the demo upstream" to any GET."""

    def do_GET(self):
        body = b"hello from the demo upstream\n"
        self.send_response(200)
        self.send_header("content-type", "text/plain")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def start_upstream(address):
    host, port = address.rsplit(":", 1)
    server = http.server.ThreadingHTTPServer((host, int(port)), Hello)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    ads_server.emit(event="upstream", address="%s:%d" % server.server_address)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=18000, help="the ADS port (18000)")
    parser.add_argument(
        "--snapshot",
        default=os.path.join(HERE, "snapshot.json"),
        help="the resources to serve (snapshot.json); read again on SIGHUP",
    )
    parser.add_argument(
        "--upstream",
        default="127.0.0.1:18080",
        help="where the demo upstream listens, or 'none' (127.0.0.1:18080)",
    )
    args = parser.parse_args()
    if args.upstream != "none":
        start_upstream(args.upstream)
    ads_server.main(["--port", str(args.port), "--snapshot", args.snapshot])


if __name__ == "__main__":
    main()
