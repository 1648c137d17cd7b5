"""A raw QUIC stream client on aioquic (no HTTP/3), for proxy-quic's test
tests/stream_to_tcp.rs.

Connects to 127.0.0.1:--port with ALPN --alpn (verifying "localhost" against
--ca), opens three bidirectional streams at once, writes a message on each and
its FIN, and reads the echo to the stream's end. Prints one JSON object per
stream ({"sent", "echoed", "ended"}) on stdout. Exits non-zero (with the reason
on stderr) on any failure.
"""

import argparse
import asyncio
import json
import sys

from aioquic.asyncio.client import connect
from aioquic.quic.configuration import QuicConfiguration

TIMEOUT = 10


async def one(client, n):
    reader, writer = await client.create_stream()
    sent = f"aioquic stream {n} " + "y" * (5000 * n)
    writer.write(sent.encode())
    writer.write_eof()
    echoed = await asyncio.wait_for(reader.read(), TIMEOUT)
    return {"sent": sent, "echoed": echoed.decode(), "ended": reader.at_eof()}


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--alpn", required=True)
    parser.add_argument("--ca", required=True)
    args = parser.parse_args()

    config = QuicConfiguration(is_client=True, alpn_protocols=[args.alpn],
                               server_name="localhost")
    config.load_verify_locations(args.ca)
    async with connect("127.0.0.1", args.port, configuration=config) as client:
        answers = await asyncio.gather(*[one(client, n) for n in range(3)])
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
