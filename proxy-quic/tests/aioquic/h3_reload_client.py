"""An HTTP/3 client on aioquic that waits mid-connection, for tests of a reload
followed on an open connection (examples/sidecar/tests/h3.rs).

Connects to --port on 127.0.0.1 as --host (verifying against --ca) and, on one
connection: GET /before, writes that answer as JSON to --first (atomically), waits
until the file --go exists (at most 30 s), then GET /after. Prints both answers
({"name", "status", "headers", "body", "connection"}) on stdout, one a line: the
connection's original destination ID (one connection object serves both), and
for the second its state after the answer ("state": "CONNECTED").
"""

import argparse
import asyncio
import json
import os
import sys

from aioquic.asyncio.client import connect
from aioquic.h3.connection import H3_ALPN
from aioquic.quic.configuration import QuicConfiguration

from h3_client import Client

WAIT = 30


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="localhost")
    parser.add_argument("--ca", required=True)
    parser.add_argument("--first", required=True)
    parser.add_argument("--go", required=True)
    args = parser.parse_args()

    config = QuicConfiguration(is_client=True, alpn_protocols=H3_ALPN, server_name=args.host)
    config.load_verify_locations(args.ca)
    authority = f"{args.host}:{args.port}"
    async with connect("127.0.0.1", args.port, configuration=config, create_protocol=Client,
                       wait_connected=True) as client:
        connection = client._quic.original_destination_connection_id.hex()
        first = await client.request("before", authority, "GET", "/before")
        first["connection"] = connection
        tmp = args.first + ".tmp"
        with open(tmp, "w") as f:
            json.dump(first, f)
        os.replace(tmp, args.first)
        for _ in range(WAIT * 20):
            if os.path.exists(args.go):
                break
            await asyncio.sleep(0.05)
        else:
            raise TimeoutError(f"{args.go} did not appear within {WAIT} s")
        second = await client.request("after", authority, "GET", "/after")
        second["connection"] = connection
        second["state"] = client._quic._state.name
        for answer in (first, second):
            print(json.dumps(answer), flush=True)
        client.close()
        await client.wait_closed()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except Exception as e:  # noqa: BLE001 (any failure is the test's failure)
        print(f"aioquic client failed: {e!r}", file=sys.stderr)
        sys.exit(1)
