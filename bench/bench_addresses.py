"""Benchmark: address derivation (coincurve vs bitcoinlib) and QR rendering.

    .venv/bin/python bench/bench_addresses.py [--runs 5] [--count 1000] [--qr 50]

Prints a Markdown table; the results live in bench/README.md
("Address derivation and QR").
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
# bitcoinlib writes config, a log and a cache database under BCL_DATA_DIR at import.
os.environ.setdefault("BCL_DATA_DIR", os.path.join(tempfile.gettempdir(), "busanpay-bench-bitcoinlib"))

from payments.addresses import DEMO_TREASURY_KEY, ExtendedKey  # noqa: E402
from payments.bip21 import payment_uri  # noqa: E402
from payments.qr_codes import render_png, render_svg  # noqa: E402

ZPUB = (
    "zpub6rFR7y4Q2AijBEqTUquhVz398htDFrtymD9xYYfG1m4wAcvPhXNfE3EfH1r1ADqtfSdVCToUG868"
    "RvUUkgDKf31mGDtKsAYz2oz2AGutZYs"
)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def bench_coincurve(runs: int, count: int) -> tuple[list[float], list[float]]:
    """(cold rates, warm rates): cold parses a never-seen key object each run."""
    from payments.addresses import _parse_cached

    cold, warm = [], []
    for run in range(runs):
        start = 1_000 * run
        # cold: uncached parse + change-level node + `count` addresses
        cold.append(count / timed(lambda: _parse_cached.__wrapped__(ZPUB, "bitcoin")
                                  .addresses(start, count)))
        key = ExtendedKey.parse(ZPUB, "bitcoin")
        key.address(0)
        warm.append(count / timed(lambda: [key.address(i) for i in range(start, start + count)]))
    return cold, warm


def bench_bitcoinlib(runs: int, count: int) -> tuple[list[float], str]:
    from bitcoinlib import encoding
    from bitcoinlib.keys import HDKey

    backend = getattr(encoding, "USE_FASTECDSA", None)
    backend = {True: "fastecdsa", False: "ecdsa (pure Python)"}.get(backend, "unknown")
    rates = []
    for run in range(runs):
        start = 1_000 * run
        receive = HDKey(ZPUB).child_public(0)
        rates.append(
            count / timed(lambda: [receive.child_public(i).address()
                                   for i in range(start, start + count)])
        )
    return rates, backend


def bench_qr(runs: int, per_run: int) -> dict[str, list[float]]:
    key = ExtendedKey.parse(DEMO_TREASURY_KEY, "regtest")
    out = {"svg": [], "png": []}
    for run in range(runs):
        payloads = [
            payment_uri(key.address(run * per_run + i), 150_000 + i, "해운대 횟집 & 바", for_qr=True)
            for i in range(per_run)
        ]
        for name, render in (("svg", render_svg), ("png", render_png)):
            elapsed = timed(lambda: [render(p) for p in payloads])
            out[name].append(elapsed * 1000 / per_run)
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--count", type=int, default=1000, help="addresses per run")
    parser.add_argument("--qr", type=int, default=50, help="QR codes per run and format")
    args = parser.parse_args(argv)

    # Same answers first, then speed.
    check = ExtendedKey.parse(ZPUB, "bitcoin")
    assert check.address(0) == "bc1qcr8te4kr609gcawutmrza0j4xv80jy8z306fyu"

    cold, warm = bench_coincurve(args.runs, args.count)
    bcl, backend = bench_bitcoinlib(args.runs, args.count)
    qr = bench_qr(args.runs, args.qr)

    med = statistics.median
    print(f"machine: {os.cpu_count()} CPUs (nproc), {cpu_model()}, Python {platform.python_version()}")
    print(f"runs: {args.runs} x {args.count} addresses, {args.runs} x {args.qr} QR codes; median (min-max)")
    print()
    print("| what | median | range |")
    print("|---|---:|---:|")
    print(f"| coincurve, warm key (addresses/s) | {med(warm):,.0f} | {min(warm):,.0f}–{max(warm):,.0f} |")
    print(f"| coincurve, parse + derive (addresses/s) | {med(cold):,.0f} | {min(cold):,.0f}–{max(cold):,.0f} |")
    print(f"| bitcoinlib HDKey, {backend} (addresses/s) | {med(bcl):,.0f} | {min(bcl):,.0f}–{max(bcl):,.0f} |")
    for name in ("svg", "png"):
        v = qr[name]
        print(f"| QR {name.upper()} render (ms/invoice) | {med(v):.1f} | {min(v):.1f}–{max(v):.1f} |")
    print()
    goal = med(warm) >= 2000
    print(f"goal >= 2,000 addresses/s: {'met' if goal else 'NOT met'} ({med(warm) / med(bcl):.0f}x bitcoinlib)")
    return 0 if goal else 1


if __name__ == "__main__":
    sys.exit(main())
