"""An HTTP/3 client on aioquic that keeps requests going across a hot upgrade of
the server (examples/sidecar/tests/hot_upgrade_quic.rs).

Connects to --port on 127.0.0.1 as --host (verifying against --ca) and makes
GET /h3/N requests one after another, --pause-ms between answers, until the file
--stop exists. aioquic parses GOAWAY without telling its user: this client records
it and, as RFC 9114 section 5.2 asks of clients, opens its next requests on a new
connection; the old one is closed once its requests are answered. A request
without a whole 200 answer (a reset, a timeout, a closed connection) is a failure
and is not retried. After each answer it writes the count answered to --progress
(atomically); at the end it prints one JSON object: {"ok", "failed": [reasons],
"connections": [{"id", "requests", "goaway"}]}.
"""

import argparse
import asyncio
import contextlib
import json
import os
import sys

from aioquic.asyncio.client import connect
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.h3.connection import H3_ALPN, FrameType, H3Connection
from aioquic.quic.configuration import QuicConfiguration

from h3_client import Client

WAIT = 60


class GoawayAwareH3(H3Connection):
    """aioquic's H3 connection, remembering whether the server sent GOAWAY (every
    control frame's type is checked as soon as its header is read; GOAWAY's
    payload is skipped)."""

    def __init__(self, *args, **kwargs):
        self.goaway = False
        super().__init__(*args, **kwargs)

    def _check_control_frame_type(self, frame_type):
        if frame_type == FrameType.GOAWAY:
            self.goaway = True
        super()._check_control_frame_type(frame_type)


class UpgradeClient(Client):
    def __init__(self, *args, **kwargs):
        # Not Client.__init__: its H3 connection would open a second control
        # stream on the QUIC connection.
        QuicConnectionProtocol.__init__(self, *args, **kwargs)
        self._http = GoawayAwareH3(self._quic)
        self._pending = {}
        self.local_port = None


def write_progress(path, count):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(str(count))
    os.replace(tmp, path)


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="localhost")
    parser.add_argument("--ca", required=True)
    parser.add_argument("--progress", required=True)
    parser.add_argument("--stop", required=True)
    parser.add_argument("--pause-ms", type=int, default=20)
    args = parser.parse_args()

    config = QuicConfiguration(is_client=True, alpn_protocols=H3_ALPN, server_name=args.host)
    config.load_verify_locations(args.ca)
    authority = f"{args.host}:{args.port}"
    ok, failed, connections = 0, [], []
    async with contextlib.AsyncExitStack() as stack:

        async def open_connection():
            conn = connect("127.0.0.1", args.port, configuration=config,
                           create_protocol=UpgradeClient, wait_connected=True)
            client = await stack.enter_async_context(conn)
            record = {"id": client._quic.original_destination_connection_id.hex(),
                      "requests": 0, "goaway": False}
            connections.append(record)
            return client, record

        client, record = await open_connection()
        n = 0
        for _ in range(WAIT * 1000 // max(args.pause_ms, 1)):
            if os.path.exists(args.stop):
                break
            if client._http.goaway:
                # Told to go away: this connection takes no new request.
                record["goaway"] = True
                client.close()
                client, record = await open_connection()
            n += 1
            try:
                answer = await client.request(f"r{n}", authority, "GET", f"/h3/{n}")
            except Exception as e:  # noqa: BLE001 (any failure is counted)
                failed.append(f"request {n}: {e!r}")
                continue
            if answer.get("status") == 200:
                ok += 1
                record["requests"] += 1
                write_progress(args.progress, ok)
            else:
                failed.append(f"request {n}: {answer}")
            await asyncio.sleep(args.pause_ms / 1000)
        record["goaway"] = record["goaway"] or client._http.goaway
        client.close()
    print(json.dumps({"ok": ok, "failed": failed, "connections": connections}), flush=True)


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except Exception as e:  # noqa: BLE001 (any failure is the test's failure)
        print(f"aioquic client failed: {e!r}", file=sys.stderr)
        sys.exit(1)
