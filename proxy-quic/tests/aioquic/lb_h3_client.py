"""An HTTP/3 client on aioquic through the QUIC-LB forwarder, for proxy-quic's test
tests/lb_h3_aioquic.rs.

Connects from local UDP port --local-port to the forwarder at 127.0.0.1:--port (as
--host, verifying against --ca) and makes these requests on one connection,
printing one JSON object per answer ({"name", "local_port", "status", "headers",
"body"}) on stdout:

  before-N  three GETs /lb/before/N
  after-N   three GETs /lb/after/N after the client moved to a new connection ID
              (NEW_CONNECTION_ID) and to local UDP port --rebind-port (a new
              4-tuple for the forwarder)

Exits non-zero (with the reason on stderr) if the connection or a request fails.
"""

import argparse
import asyncio
import json
import sys

from aioquic.asyncio.client import connect
from aioquic.h3.connection import H3_ALPN
from aioquic.quic.configuration import QuicConfiguration

from h3_client import Client, rebind


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="localhost")
    parser.add_argument("--ca", required=True)
    parser.add_argument("--local-port", type=int, required=True)
    parser.add_argument("--rebind-port", type=int, required=True)
    args = parser.parse_args()

    config = QuicConfiguration(is_client=True, alpn_protocols=H3_ALPN, server_name=args.host)
    config.load_verify_locations(args.ca)
    authority = f"{args.host}:{args.port}"
    async with connect("127.0.0.1", args.port, configuration=config, create_protocol=Client,
                       wait_connected=True, local_port=args.local_port) as client:
        answers = []
        for n in range(3):
            answers.append(await client.request(f"before-{n}", authority, "GET", f"/lb/before/{n}"))
        client._quic.change_connection_id()
        rebind(client, args.rebind_port)
        for n in range(3):
            answers.append(await client.request(f"after-{n}", authority, "GET", f"/lb/after/{n}"))
        for answer in answers:
            print(json.dumps(answer), flush=True)
        client.close()
        await client.wait_closed()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except Exception as e:  # noqa: BLE001 (any failure is the test's failure)
        print(f"aioquic client failed: {e!r}", file=sys.stderr)
        sys.exit(1)
