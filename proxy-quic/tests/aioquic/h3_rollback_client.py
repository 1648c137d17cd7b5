"""An HTTP/3 client on aioquic for a hot upgrade rolled back, then done again
(examples/sidecar/tests/hot_upgrade_quic_rollback.rs). The test drives the server
and tells this client to go on by creating files in --dir.

Connects to --port on 127.0.0.1 as --host (verifying against --ca):

  1. connection A: GET /before, then GET /slow/1 left in flight (the upstream
     answers it when the test releases it);
  2. once DIR/rolled-back exists: connection B (new): GET /after-rollback; then
     the answer of /slow/1 on A; then GET /slow/2 on B left in flight;
  3. the answer of /slow/2 on B;
  4. once DIR/upgraded exists: connection C (new): GET /after-upgrade.

Prints one JSON object: {"before", "slow1", "after_rollback", "slow2",
"after_upgrade"}, each {"status", "bytes"} or {"error"}, and "goaway": {"a", "b"}
(whether the server sent GOAWAY on A and B). Exits 0 once it printed it.
"""

import argparse
import asyncio
import contextlib
import json
import os
import sys

from aioquic.asyncio.client import connect
from aioquic.h3.connection import H3_ALPN
from aioquic.quic.configuration import QuicConfiguration

import h3_client
from h3_upgrade_client import UpgradeClient

# A request in flight waits for the test's steps (an upgrade, a kill, a restart).
h3_client.TIMEOUT = 60
WAIT = 60


async def wait_for(path):
    for _ in range(WAIT * 50):
        if os.path.exists(path):
            return
        await asyncio.sleep(0.02)
    raise TimeoutError(f"no {path} within {WAIT}s")


async def outcome(request):
    try:
        answer = await request
    except Exception as e:  # noqa: BLE001 (any failure is reported)
        return {"error": repr(e)}
    if "reset" in answer:
        return {"error": f"reset {answer['reset']}"}
    return {"status": answer["status"], "bytes": len(answer["body"])}


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="localhost")
    parser.add_argument("--ca", required=True)
    parser.add_argument("--dir", required=True)
    args = parser.parse_args()

    config = QuicConfiguration(is_client=True, alpn_protocols=H3_ALPN, server_name=args.host)
    config.load_verify_locations(args.ca)
    authority = f"{args.host}:{args.port}"
    report = {}
    async with contextlib.AsyncExitStack() as stack:

        async def open_connection():
            conn = connect("127.0.0.1", args.port, configuration=config,
                           create_protocol=UpgradeClient, wait_connected=True)
            return await stack.enter_async_context(conn)

        def get(client, name, path):
            return client.request(name, authority, "GET", path)

        a = await open_connection()
        report["before"] = await outcome(get(a, "before", "/before"))
        slow1 = asyncio.ensure_future(outcome(get(a, "slow1", "/slow/1")))

        await wait_for(os.path.join(args.dir, "rolled-back"))
        try:
            b = await open_connection()
        except Exception as e:  # noqa: BLE001 (reported, then the rest is skipped)
            report["after_rollback"] = {"error": f"connect: {e!r}"}
            report["slow1"] = await slow1
            b = None
        if b is not None:
            report["after_rollback"] = await outcome(get(b, "after", "/after-rollback"))
            report["slow1"] = await slow1
            report["slow2"] = await outcome(get(b, "slow2", "/slow/2"))

        await wait_for(os.path.join(args.dir, "upgraded"))
        c = await open_connection()
        report["after_upgrade"] = await outcome(get(c, "upgraded", "/after-upgrade"))
        report["goaway"] = {"a": a._http.goaway, "b": b is not None and b._http.goaway}
        for client in (a, b, c):
            if client is not None:
                client.close()
    print(json.dumps(report), flush=True)


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except Exception as e:  # noqa: BLE001 (any failure is the test's failure)
        print(f"aioquic client failed: {e!r}", file=sys.stderr)
        sys.exit(1)
