#!/bin/bash
# GET /api/hello: bare axum against one or more builds of the full stack, alternating.
# For each round and server: start it, wait 1.5 s, `wrk -t1 -c64 -d8s`, stop it; prints the
# rate and the server's CPU time per request (utime + stime from /proc/PID/stat).
#
#   examples/orders/load/hello_ab.sh 3 target/release/orders [/path/to/other/orders ...]
#
# The bare server is the first binary's `orders bare`. Run it with nothing else on the machine.
#
# PIN=1 puts every server on CPU 1 and wrk on CPU 0 (taskset): the servers then never share a
# core with the client, so the rate says how much one core serves, and the scheduler's
# placement of wrk against the server's threads stops moving the ratio from run to run.
set -euo pipefail
server_cpu=()
client_cpu=()
if [ "${PIN:-0}" = 1 ]; then
  server_cpu=(taskset -c 1)
  client_cpu=(taskset -c 0)
fi
rounds=$1
shift
servers=()
for server in "$@"; do servers+=("$(realpath "$server")"); done
first=${servers[0]}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)
for round in $(seq 1 "$rounds"); do
  for server in bare "${servers[@]}"; do
    if [ "$server" = bare ]; then
      "${server_cpu[@]}" "$first" bare --addr 127.0.0.1:8081 >/dev/null 2>&1 &
      url=http://127.0.0.1:8081/api/hello
    else
      rm -rf "$work"/data*
      "${server_cpu[@]}" "$server" --rate-limit 100000000 --rate-burst 100000000 >/dev/null 2>&1 &
      url=http://127.0.0.1:8080/api/hello
    fi
    pid=$!
    sleep 1.5
    before=$(cpu_ticks "$pid")
    out=$("${client_cpu[@]}" wrk -t1 -c64 -d8s "$url")
    after=$(cpu_ticks "$pid")
    kill -INT "$pid"
    wait "$pid" || true
    requests=$(echo "$out" | awk '/requests in/ {print $1}')
    rate=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
    us=$(awk -v t=$((after - before)) -v n="$requests" -v hz="$hz" 'BEGIN {printf "%.2f", t * 1e6 / hz / n}')
    echo "round $round  $server  req/s $rate  server CPU per request ${us} us"
  done
done
