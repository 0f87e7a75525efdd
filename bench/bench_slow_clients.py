"""Slow clients against the embedded server: does /login still answer while 64 sockets
trickle request bodies?

Starts the server exactly as `make start` does (scripts/serve, on a free 127.0.0.1 port,
a fresh SQLite database in a temporary instance folder), opens SLOW sockets that each send
a POST's headers and then one body byte every second, and meanwhile times GET /login and a
POST /login (a real scrypt check). Everything is bounded: SECONDS of trickling, then the
sockets close. `--command` runs another server command instead (for comparison), with
{port} in it replaced.

    .venv/bin/python bench/bench_slow_clients.py [--slow 64] [--seconds 10]
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def server_env(instance: str, port: int) -> dict:
    return {**os.environ, "BUSANPAY_INSTANCE": instance, "PORT": str(port),
            "DATABASE_URL": f"sqlite:///{instance}/busanpay.sqlite3",
            "BUSANPAY_INPROCESS_WORKER": "1", "BUSANPAY_LOGIN_RATE_LIMIT": "100000 per minute",
            "FLASK_APP": "app"}


def flask_cli(env: dict, *args: str) -> str:
    venv = Path(os.environ.get("VENV", ROOT / ".venv"))
    return subprocess.run([str(venv / "bin" / "flask"), *args], cwd=ROOT, env=env, check=True,
                          capture_output=True, text=True, timeout=120).stdout


def start_server(instance: str, port: int, command: str | None) -> subprocess.Popen:
    env = server_env(instance, port)
    flask_cli(env, "db", "upgrade")
    args = shlex.split(command.format(port=port)) if command else [str(ROOT / "scripts" / "serve")]
    server = subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if requests.get(f"http://127.0.0.1:{port}/login", timeout=2).status_code == 200:
                return server
        except requests.RequestException:
            time.sleep(0.2)
        if server.poll() is not None:
            raise RuntimeError("server exited: " + server.stderr.read().decode()[-2000:])
    server.kill()
    raise RuntimeError("server did not answer within 60 s")


def stop_server(server: subprocess.Popen) -> None:
    os.killpg(server.pid, signal.SIGTERM)
    try:
        server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait(timeout=30)


def trickle(port: int, stop: threading.Event, opened: list) -> None:
    """One slow client: headers at once, then a body byte a second until told to stop."""
    try:
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    except OSError:
        return
    opened.append(1)
    try:
        sock.sendall(b"POST /login HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     b"Content-Type: application/x-www-form-urlencoded\r\n"
                     b"Content-Length: 100000\r\n\r\n")
        while not stop.wait(1.0):
            sock.sendall(b"a")
    except OSError:
        pass  # the server gave up on us: that is the point
    finally:
        sock.close()


def timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def measure(port: int, slow: int, seconds: float, timeout: float = 20) -> dict:
    base = f"http://127.0.0.1:{port}"
    baseline = [timed(lambda: requests.get(base + "/login", timeout=60)) for _ in range(5)]
    browser = requests.Session()
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"',
                      browser.get(base + "/login", timeout=60).text).group(1)
    stop, opened = threading.Event(), []
    threads = [threading.Thread(target=trickle, args=(port, stop, opened), daemon=True)
               for _ in range(slow)]
    for thread in threads:
        thread.start()
    time.sleep(2.0)  # every slow client has sent its headers and holds its connection
    gets, posts, errors = [], [], 0
    ends = time.monotonic() + seconds
    while time.monotonic() < ends:
        try:
            gets.append(timed(lambda: requests.get(base + "/login", timeout=timeout).raise_for_status()))
            posts.append(timed(lambda: browser.post(  # a wrong password: one scrypt check
                base + "/login", data={"email": "a@b.kr", "password": "x", "csrf_token": token},
                timeout=timeout)))
        except requests.RequestException:
            errors += 1
        time.sleep(0.2)
    stop.set()
    for thread in threads:
        thread.join(timeout=5)
    return {"slow_clients": len(opened), "baseline_get_ms": ms(statistics.median(baseline)),
            "get_median_ms": ms(statistics.median(gets)) if gets else None,
            "get_max_ms": ms(max(gets)) if gets else None,
            "post_median_ms": ms(statistics.median(posts)) if posts else None,
            "requests": len(gets) + len(posts), "errors": errors}


def ms(seconds: float) -> float:
    return round(seconds * 1000, 1)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slow", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--command", help="another server command; {port} is replaced")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="busanpay-slow-") as instance:
        port = free_port()
        server = start_server(instance, port, args.command)
        try:
            result = measure(port, args.slow, args.seconds)
        finally:
            stop_server(server)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
