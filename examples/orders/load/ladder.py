#!/usr/bin/env python3
"""Highest POST /api/orders rate at which `orders` keeps an order p99 within the SLO: at least
99% of the orders offered are answered 201 within --slo-ms of their intended send time (a 503,
504 or error counts as a miss, like an answer slower than the SLO). Found with the lab's open-loop generator (latency from each request's intended send
time, so a slow server cannot hide behind a stalled client).

    cargo build --release -p orders -p surgepool-lab
    python3 examples/orders/load/ladder.py                          # SQLite, batcher vs --no-batch
    python3 examples/orders/load/ladder.py --database postgres://postgres@127.0.0.1:5432/test

For each mode it starts a fresh `orders` (SQLite: a new file in a temp dir), warms it up, then
offers rates growing by --factor until one misses,
and bisects between the last pass and the first miss. It also checks that the database holds
one row for every 201. Run it on an otherwise idle machine: server, database and generator share
the cores, and a figure taken while anything else runs is void.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request

BODY = '{"user_id": 1, "item": "book", "quantity": 2}'


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--database", default="sqlite", help="'sqlite' (a fresh file) or a postgres:// URL")
    ap.add_argument("--modes", default="batch,no-batch", help="comma-separated: batch, no-batch")
    ap.add_argument("--start", type=float, default=500.0, help="first rate, orders/s")
    ap.add_argument("--factor", type=float, default=1.5, help="growth between rates")
    ap.add_argument("--bisect", type=int, default=2, help="bisection steps after the first miss")
    ap.add_argument("--duration", type=float, default=10.0, help="seconds per rate")
    ap.add_argument("--slo-ms", type=float, default=50.0)
    ap.add_argument("--connections", type=int, default=1024)
    ap.add_argument("--port", type=int, default=18080)
    ap.add_argument("--bin-dir", default="target/release")
    ap.add_argument("--json", help="write every step's figures here")
    ap.add_argument("--extra", default="", help="more flags for orders, space-separated")
    args = ap.parse_args()
    args.bin_dir = os.path.abspath(args.bin_dir)

    results = {}
    for mode in args.modes.split(","):
        results[mode] = ladder(args, mode)
    print("\nmode        best rate/s   201 p99 ms at it   rows == 201s")
    for mode, r in results.items():
        best = r["best"]
        print(f"{mode:<10} {best['rate'] if best else 0:>12.0f}   {best['p99_ms'] if best else float('nan'):>12.1f}"
              f"   {r['rows_match']}")
    if "batch" in results and "no-batch" in results and results["no-batch"]["best"]:
        b = results["batch"]["best"]["rate"] if results["batch"]["best"] else 0
        print(f"batch / no-batch: {b / results['no-batch']['best']['rate']:.2f}x")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


def ladder(args, mode):
    tmp = tempfile.mkdtemp(prefix="orders-ladder-")
    db = f"sqlite://{tmp}/orders.db" if args.database == "sqlite" else args.database
    cmd = [f"{args.bin_dir}/orders", "--addr", f"127.0.0.1:{args.port}",
           "--admin-addr", f"127.0.0.1:{args.port + 1}", "--database", db,
           "--rate-limit", "100000000", "--rate-burst", "100000000"]
    if mode == "no-batch":
        cmd.append("--no-batch")
    cmd += args.extra.split()
    log = open(f"{tmp}/orders.log", "w")
    server = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=tmp)
    try:
        wait_up(args.port)
        rows0 = rows(db)
        created = 0
        steps = []
        # Warm-up: connections, prepared statements, caches.
        created += step(args, args.start / 2, 2.0)["created"]
        rate, passed, missed = args.start, None, None
        while True:
            s = step(args, rate, args.duration)
            created += s["created"]
            steps.append(s)
            report(mode, s, args.slo_ms)
            if ok(s, args.slo_ms):
                passed = s
                rate *= args.factor
            else:
                missed = s
                break
        lo = passed["rate"] if passed else 0.0
        hi = missed["rate"]
        for _ in range(args.bisect):
            rate = (lo + hi) / 2
            s = step(args, rate, args.duration)
            created += s["created"]
            steps.append(s)
            report(mode, s, args.slo_ms)
            if ok(s, args.slo_ms):
                lo, passed = rate, s
            else:
                hi = rate
        time.sleep(1.0)
        rows1 = rows(db)
        added = rows1 - rows0 if rows0 is not None and rows1 is not None else None
        print(f"{mode}: {created} answered 201, {added} rows added")
        return {"best": passed, "steps": steps, "created": created, "rows_added": added,
                "rows_match": added == created if added is not None else "unchecked"}
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()


def ok(s, slo_ms):
    return s["within_slo"] >= 0.99 * s["offered"]


def report(mode, s, slo_ms):
    verdict = "ok" if ok(s, slo_ms) else "MISS"
    print(f"{mode:<10} {s['rate']:>8.0f}/s  201s {s['created']:>7}  other {s['others']:>5}  "
          f"201 p50 {s['p50_ms']:>6.1f} ms  p99 {s['p99_ms']:>6.1f} ms  "
          f"201 in SLO {100 * s['within_slo'] / max(1, s['offered']):6.2f}%  {verdict}", flush=True)


def step(args, rate, duration):
    out = os.path.join(tempfile.gettempdir(), "orders-ladder-step.json")
    subprocess.run([f"{args.bin_dir}/surgepool-lab", "http",
                    "--target", f"http://127.0.0.1:{args.port}/api/orders",
                    "--rps", str(rate), "--duration-s", str(duration),
                    "--connections", str(args.connections), "--slo-ms", str(args.slo_ms),
                    "--method", "POST", "--body", BODY, "--json", out],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    with open(out) as f:
        s = json.load(f)["strategies"][0]
    codes = {int(k): v for k, v in s["status_counts"].items()}
    created = codes.get(201, 0)
    others = sum(v for k, v in codes.items() if k != 201) + s["errors"] + s["timeouts"] + s["unsent"]
    return {"rate": rate, "offered": s["offered"], "within_slo": s["within_slo"], "created": created, "others": others, "codes": codes,
            "p50_ms": s["latency_ms"]["p50"], "p99_ms": s["latency_ms"]["p99"],
            "p999_ms": s["latency_ms"]["p999"]}


def wait_up(port):
    for _ in range(300):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/api/hello", timeout=1).read()
            return
        except OSError:
            time.sleep(0.1)
    sys.exit("orders did not start")


def rows(db):
    if db.startswith("sqlite://"):
        q = ["sqlite3", db[len("sqlite://"):], "SELECT count(*) FROM orders"]
    else:
        q = ["psql", "-Atq", db, "-c", "SELECT count(*) FROM orders"]
    try:
        return int(subprocess.run(q, check=True, capture_output=True, text=True).stdout.strip())
    except (OSError, subprocess.CalledProcessError, ValueError):
        return None


if __name__ == "__main__":
    main()
