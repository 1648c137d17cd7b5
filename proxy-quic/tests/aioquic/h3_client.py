"""An HTTP/3 client on aioquic, for proxy-quic's interop test (tests/h3_aioquic.rs).

Connects to --port on 127.0.0.1 as --host, verifying the server against --ca, and
makes these requests on one connection, printing one JSON object per answer
({"name", "local_port", "status", "headers", "body"}) on stdout:

  get       GET /aio/get
  post      POST /aio/post with a body (content-length set)
  many-N    ten concurrent GETs /aio/many/N
  migrated  GET /aio/migrated after moving to a new connection ID
              (NEW_CONNECTION_ID) and to a new local UDP port
  too-big   GET with 100 headers of 900 bytes (over the server's 64 KiB head limit)
  no-path   GET without :path (malformed: the answer is {"reset": code})
  after     GET /aio/after: the connection still serves

Exits non-zero (with the reason on stderr) if the connection or a request fails.
"""

import argparse
import asyncio
import json
import socket
import sys

from aioquic.asyncio.client import connect
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.h3.connection import H3_ALPN, H3Connection
from aioquic.h3.events import DataReceived, HeadersReceived
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import StreamReset

TIMEOUT = 10


class Client(QuicConnectionProtocol):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._http = H3Connection(self._quic)
        self._pending = {}
        self.local_port = None

    def quic_event_received(self, event):
        if isinstance(event, StreamReset) and event.stream_id in self._pending:
            answer, done = self._pending.pop(event.stream_id)
            answer["reset"] = event.error_code
            done.set_result(answer)
            return
        for ev in self._http.handle_event(event):
            sid = getattr(ev, "stream_id", None)
            if sid not in self._pending:
                continue
            answer, done = self._pending[sid]
            if isinstance(ev, HeadersReceived):
                if answer["status"] is None:
                    headers = {k.decode(): v.decode() for k, v in ev.headers}
                    answer["status"] = int(headers.pop(":status"))
                    answer["headers"] = headers
            elif isinstance(ev, DataReceived):
                answer["body"] += ev.data.decode("utf-8", "replace")
            if getattr(ev, "stream_ended", False):
                del self._pending[sid]
                done.set_result(answer)

    async def request(self, name, authority, method, path, body=None, extra=()):
        sid = self._quic.get_next_available_stream_id()
        headers = [
            (b":method", method.encode()),
            (b":scheme", b"https"),
            (b":authority", authority.encode()),
        ]
        if path is not None:
            headers.append((b":path", path.encode()))
        headers.append((b"user-agent", b"aioquic-interop"))
        headers += list(extra)
        if body is not None:
            headers.append((b"content-length", str(len(body)).encode()))
        self._http.send_headers(stream_id=sid, headers=headers, end_stream=body is None)
        if body is not None:
            self._http.send_data(stream_id=sid, data=body, end_stream=True)
        done = self._loop.create_future()
        port = self.local_port or self._transport.get_extra_info("sockname")[1]
        answer = {"name": name, "local_port": port, "status": None, "headers": {}, "body": ""}
        self._pending[sid] = (answer, done)
        self.transmit()
        return await asyncio.wait_for(done, TIMEOUT)


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="localhost")
    parser.add_argument("--ca", required=True)
    args = parser.parse_args()

    config = QuicConfiguration(is_client=True, alpn_protocols=H3_ALPN, server_name=args.host)
    config.load_verify_locations(args.ca)
    authority = f"{args.host}:{args.port}"
    async with connect("127.0.0.1", args.port, configuration=config, create_protocol=Client,
                       wait_connected=True) as client:
        answers = [await client.request("get", authority, "GET", "/aio/get")]
        answers.append(await client.request("post", authority, "POST", "/aio/post",
                                            body=b"posted by aioquic"))
        answers += await asyncio.gather(*[
            client.request(f"many-{n}", authority, "GET", f"/aio/many/{n}") for n in range(10)
        ])
        # Migration: a new connection ID, then a new local port (the server
        # validates the new path and answers there).
        client._quic.change_connection_id()
        rebind(client)
        answers.append(await client.request("migrated", authority, "GET", "/aio/migrated"))
        # Refused requests: a head over the server's limit, a head without :path.
        answers.append(await client.request("too-big", authority, "GET", "/aio/too-big",
                                            extra=[(f"x-big-{i}".encode(), b"b" * 900) for i in range(100)]))
        answers.append(await client.request("no-path", authority, "GET", None))
        answers.append(await client.request("after", authority, "GET", "/aio/after"))
        for answer in answers:
            print(json.dumps(answer), flush=True)
        client.close()
        await client.wait_closed()


def rebind(client, port=0):
    """Moves the client's UDP socket to a new local port (any free one, or `port`),
    as a NAT rebinding does."""
    transport = client._transport
    old = transport.get_extra_info("socket")
    sock = socket.socket(old.family, socket.SOCK_DGRAM)
    sock.bind((old.getsockname()[0], port))
    loop = asyncio.get_event_loop()
    # Read on the new socket too; the old one keeps reading packets in flight.

    def readable():
        try:
            data, addr = sock.recvfrom(65536)
        except BlockingIOError:
            return
        client.datagram_received(data, addr)

    sock.setblocking(False)
    loop.add_reader(sock.fileno(), readable)

    class Sender:
        def sendto(self, data, addr):
            sock.sendto(data, addr)

        def __getattr__(self, name):
            return getattr(transport, name)

    client._transport = Sender()
    client.local_port = sock.getsockname()[1]


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except Exception as e:  # noqa: BLE001 (any failure is the test's failure)
        print(f"aioquic client failed: {e!r}", file=sys.stderr)
        sys.exit(1)
