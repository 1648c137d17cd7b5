"""Opens N HTTP/1.1 keep-alive connections to 127.0.0.1:18080, sends one request on
each, reads its answer, then holds them all open and idle until killed."""
import asyncio
import sys

N = int(sys.argv[1])


async def one(conns):
    r, w = await asyncio.open_connection("127.0.0.1", 18080)
    w.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    await w.drain()
    head = await r.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    await r.readexactly(length)
    conns.append((r, w))


async def main():
    conns = []
    for i in range(0, N, 500):
        await asyncio.gather(*[one(conns) for _ in range(min(500, N - i))])
    print("idle open", len(conns), flush=True)
    await asyncio.sleep(3600)


asyncio.run(main())
