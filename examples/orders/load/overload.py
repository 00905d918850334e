#!/usr/bin/env python3
"""POST /api/orders at a multiple of the service's capacity: do admitted orders keep their
latency, do the rest get fast 503/429s, does RSS stay flat, is every 201 order in the database?

    cargo build --release -p orders -p surgepool-lab
    python3 examples/orders/load/overload.py --capacity 5000      # from ladder.py's batch figure
    python3 examples/orders/load/overload.py --capacity 5000 --database postgres://postgres@127.0.0.1:5432/test

It starts a fresh `orders` (batcher on), measures the unloaded latency at --unloaded x capacity,
then offers --overload x capacity for --duration seconds with the lab's open-loop generator,
sampling the server's RSS every second. Run it on an otherwise idle machine.
"""

import argparse
import json
import os
import subprocess
import tempfile
import threading
import time

from ladder import BODY, rows, wait_up


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--capacity", type=float, required=True, help="orders/s the service sustains")
    ap.add_argument("--overload", type=float, default=3.0)
    ap.add_argument("--unloaded", type=float, default=0.3, help="fraction of capacity for the baseline")
    ap.add_argument("--duration", type=float, default=30.0)
    ap.add_argument("--database", default="sqlite")
    ap.add_argument("--connections", type=int, default=4096)
    ap.add_argument("--port", type=int, default=18080)
    ap.add_argument("--bin-dir", default="target/release")
    ap.add_argument("--json", help="write the figures here")
    ap.add_argument("--extra", default="", help="more flags for orders, space-separated")
    args = ap.parse_args()
    args.bin_dir = os.path.abspath(args.bin_dir)

    tmp = tempfile.mkdtemp(prefix="orders-overload-")
    db = f"sqlite://{tmp}/orders.db" if args.database == "sqlite" else args.database
    cmd = [f"{args.bin_dir}/orders", "--addr", f"127.0.0.1:{args.port}",
           "--admin-addr", f"127.0.0.1:{args.port + 1}", "--database", db,
           "--rate-limit", "100000000", "--rate-burst", "100000000"] + args.extra.split()
    log = open(f"{tmp}/orders.log", "w")
    server = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=tmp)
    try:
        wait_up(args.port)
        rows0 = rows(db)
        warm = run(args, args.capacity * args.unloaded, 2.0)
        base = run(args, args.capacity * args.unloaded, 10.0)
        rss = []
        stop = threading.Event()
        sampler = threading.Thread(target=sample_rss, args=(server.pid, rss, stop))
        sampler.start()
        over = run(args, args.capacity * args.overload, args.duration)
        stop.set()
        sampler.join()
        time.sleep(1.0)
        rows1 = rows(db)
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()

    created = warm["created"] + base["created"] + over["created"]
    added = rows1 - rows0 if rows0 is not None and rows1 is not None else None
    half = len(rss) // 2
    print(f"unloaded ({base['rate']:.0f}/s): 201 p99 {base['service_p99']:.1f} ms from the send, "
          f"{base['p99']:.1f} ms from the intended send; codes {base['codes']}")
    print(f"overload ({over['rate']:.0f}/s = {args.overload}x): codes {over['codes']}, "
          f"errors {over['errors']}, timeouts {over['timeouts']}, unsent {over['unsent']}")
    print(f"  admitted (201): {over['created'] / args.duration:.0f}/s, p50 {over['service_p50']:.1f} ms, "
          f"p99 {over['service_p99']:.1f} ms from the send "
          f"({over['service_p99'] / max(base['service_p99'], 1e-9):.2f}x unloaded); "
          f"p99 {over['p99']:.1f} ms from the intended send")
    print(f"  refused (503): p50 {over['shed_p50']:.2f} ms, p99 {over['shed_p99']:.2f} ms from the send")
    if rss:
        print(f"  RSS MiB: first half max {max(rss[:half] or rss):.1f}, second half "
              f"min {min(rss[half:]):.1f} max {max(rss[half:]):.1f}, last {rss[-1]:.1f}")
    print(f"every 201 stored: {added == created} ({created} answered 201, {added} rows added)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"unloaded": base, "overload": over, "rss_mib": rss,
                       "created": created, "rows_added": added}, f, indent=1)


def run(args, rate, duration):
    out = os.path.join(tempfile.gettempdir(), "orders-overload-step.json")
    subprocess.run([f"{args.bin_dir}/surgepool-lab", "http",
                    "--target", f"http://127.0.0.1:{args.port}/api/orders",
                    "--rps", str(rate), "--duration-s", str(duration),
                    "--connections", str(args.connections),
                    "--method", "POST", "--body", BODY, "--json", out],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    with open(out) as f:
        s = json.load(f)["strategies"][0]
    codes = {int(k): v for k, v in s["status_counts"].items()}
    result = {"rate": rate, "codes": codes, "created": codes.get(201, 0),
              "errors": s["errors"], "timeouts": s["timeouts"], "unsent": s["unsent"],
              "p99": s["latency_ms"]["p99"], "service_p50": s["service_latency_ms"]["p50"],
              "service_p99": s["service_latency_ms"]["p99"],
              "shed_p50": s["shed_service_latency_ms"]["p50"],
              "shed_p99": s["shed_service_latency_ms"]["p99"],
              "series": s["series"]}
    return result


def sample_rss(pid, out, stop):
    while not stop.wait(1.0):
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        out.append(int(line.split()[1]) / 1024)
        except OSError:
            return


if __name__ == "__main__":
    main()
