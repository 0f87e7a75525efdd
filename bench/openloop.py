"""Open-loop (constant-rate) HTTP POST load generator for bench_invoice_http.py.

Request i is scheduled at t0 + i/rate and sent then whether or not earlier answers
have come back (a new keep-alive connection is opened when none is idle), and its
latency is measured from the *scheduled* time to the last byte of the answer, so a
slow server cannot hide its queueing (no coordinated omission). Standard library only;
run as its own process so it never shares a GIL with anything measured.

    python bench/openloop.py --url http://127.0.0.1:8000/path --rate 100 --duration 20 \
        --header 'Authorization: token …' --body '{"amount": "15000"}'

Prints one JSON object: counts, status codes, latency percentiles (ms) and how late
the generator itself was in sending (to show it was not the bottleneck).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections import Counter, deque
from urllib.parse import urlsplit


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    if not sorted_values:
        return float("nan")
    rank = max(1, min(len(sorted_values), int(-(-q * len(sorted_values) // 100))))
    return sorted_values[rank - 1]


class Client:
    def __init__(self, url: str, headers: list[str], body: bytes, timeout: float):
        parts = urlsplit(url)
        self.host, self.port = parts.hostname, parts.port or 80
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        head = [f"POST {path} HTTP/1.1", f"Host: {parts.netloc}",
                "Content-Type: application/json", f"Content-Length: {len(body)}",
                "Connection: keep-alive", *headers]
        self.request = ("\r\n".join(head) + "\r\n\r\n").encode() + body
        self.timeout = timeout
        self.idle: deque = deque()
        self.opened = 0

    async def _connection(self):
        while self.idle:
            reader, writer = self.idle.pop()
            if not reader.at_eof():
                return reader, writer
            writer.close()
        self.opened += 1
        return await asyncio.open_connection(self.host, self.port)

    async def _exchange(self, reader, writer) -> tuple[int, bool]:
        writer.write(self.request)
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        length, keep = 0, lines[0].startswith("HTTP/1.1")
        for line in lines[1:]:
            name, _, value = line.partition(":")
            name, value = name.strip().lower(), value.strip().lower()
            if name == "content-length":
                length = int(value)
            elif name == "connection":
                keep = value != "close"
        if length:
            await reader.readexactly(length)
        return status, keep

    async def send(self) -> int | str:
        """One request; the status code, or the exception's name."""
        reader = writer = None
        try:
            reader, writer = await self._connection()
            status, keep = await asyncio.wait_for(self._exchange(reader, writer), self.timeout)
        except Exception as err:  # count it, never stop the schedule
            if writer is not None:
                writer.close()
            return type(err).__name__
        if keep:
            self.idle.append((reader, writer))
        else:
            writer.close()
        return status


async def run(args) -> dict:
    body = args.body.encode()
    client = Client(args.url, args.header, body, args.timeout)
    # warm a few connections so the first second is not all TCP handshakes
    for _ in range(args.prewarm):
        client.idle.append(await asyncio.open_connection(client.host, client.port))
        client.opened += 1
    total = int(args.rate * args.duration)
    interval = 1.0 / args.rate
    latencies: list[float] = []
    statuses: Counter = Counter()
    lateness: list[float] = []
    tasks = []
    loop = asyncio.get_running_loop()
    start = loop.time() + 0.05
    wall_start = time.time()

    async def one(scheduled: float):
        lateness.append(loop.time() - scheduled)
        status = await client.send()
        latencies.append(loop.time() - scheduled)
        statuses[str(status)] += 1

    for i in range(total):
        scheduled = start + i * interval
        delay = scheduled - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.ensure_future(one(scheduled)))
    sent_done = loop.time()
    await asyncio.wait(tasks, timeout=args.timeout + 5)
    end = loop.time()
    for _, writer in client.idle:
        writer.close()
    ms = sorted(x * 1000 for x in latencies)
    late = sorted(x * 1000 for x in lateness)
    return {
        "scheduled": total, "completed": len(latencies), "rate_target": args.rate,
        "rate_sent": total / max(sent_done - start, 1e-9),
        "seconds": end - start, "wall_start": wall_start,
        "statuses": dict(statuses), "connections_opened": client.opened,
        "p50_ms": percentile(ms, 50), "p90_ms": percentile(ms, 90),
        "p99_ms": percentile(ms, 99), "max_ms": ms[-1] if ms else float("nan"),
        "mean_ms": sum(ms) / len(ms) if ms else float("nan"),
        "send_late_p99_ms": percentile(late, 99), "send_late_max_ms": late[-1] if late else 0,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--rate", type=float, default=100.0, help="requests per second")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of sending")
    parser.add_argument("--header", action="append", default=[], help="'Name: value', repeatable")
    parser.add_argument("--body", default="{}")
    parser.add_argument("--timeout", type=float, default=30.0, help="per request, seconds")
    parser.add_argument("--prewarm", type=int, default=8, help="connections opened up front")
    args = parser.parse_args(argv)
    result = asyncio.run(run(args))
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
