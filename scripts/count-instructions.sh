#!/usr/bin/env bash
# Server instructions per request, SierraDB against Redis 7, counted by valgrind's callgrind.
# Instruction counts do not move with the machine's load, unlike ops/s on a shared virtual
# machine, so this is how a CPU change is measured here (docs/performance.md).
#
#   scripts/count-instructions.sh [WORKLOAD...]     workloads: escan eget eappend (default all)
#
# Each server runs under callgrind with fsync off (`--sync never-unsafe`, `appendfsync no`).
# For reads it is filled with 100 streams of 100 events of 200 bytes; then the counters are
# zeroed, `redis-benchmark -c 8` sends the requests (1,000 ESCAN/XRANGE of 100, 20,000 of the
# others), the counters are dumped and divided by the number of requests.
set -euo pipefail
cd "$(dirname "$0")/.."
workloads=("${@:-escan eget eappend}")
read -r -a workloads <<<"${workloads[*]}"

need() { command -v "$1" >/dev/null || { apt-get update -qq; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null; }; }
need valgrind valgrind
need redis-server redis-server
need redis-benchmark redis-tools
cargo build --release -q -p sierradb-bin --bin sierradb
bin="${CARGO_TARGET_DIR:-target}/release/sierradb"

work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT
payload=$(head -c 200 /dev/zero | tr '\0' 'x')
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 200); do redis-cli -p "$1" PING >/dev/null 2>&1 && return; sleep 0.3; done; echo "port $1 did not open" >&2; exit 1; }

# Prints the instructions per request of one server and workload.
count() { # server(sierradb|redis) workload
  local server=$1 workload=$2 port out pid requests=20000 fill=0
  port=$(free_port)
  out="$work/$server-$workload.out"
  if [[ $server == sierradb ]]; then
    valgrind --tool=callgrind --callgrind-out-file="$out" "$bin" serve --dir "$work/data-$port" \
      --client-address "127.0.0.1:$port" --sync never-unsafe --log warn >/dev/null 2>&1 &
  else
    mkdir -p "$work/redis-$port"
    valgrind --tool=callgrind --callgrind-out-file="$out" redis-server --port "$port" \
      --bind 127.0.0.1 --dir "$work/redis-$port" --save '' --appendonly yes --appendfsync no \
      --daemonize no --loglevel warning >/dev/null 2>&1 &
  fi
  pid=$!
  wait_port "$port"
  [[ $workload == escan ]] && { fill=1; requests=1000; }
  if [[ $fill == 1 ]]; then
    for i in $(seq 0 99); do
      key=$(printf '%012d' "$i")
      for _ in $(seq 100); do
        if [[ $server == sierradb ]]; then echo "EAPPEND r-$key Ev PAYLOAD $payload"; else echo "XADD r:$key * f $payload"; fi
      done
    done | redis-cli -p "$port" >/dev/null
  fi
  local id=""
  if [[ $workload == eget ]]; then
    if [[ $server == sierradb ]]; then id=$(redis-cli -p "$port" EAPPEND g Ev PAYLOAD "$payload" | sed -n 2p);
    else redis-cli -p "$port" SET k "$payload" >/dev/null; fi
  fi
  callgrind_control -z "$pid" >/dev/null 2>&1
  local bench=(redis-benchmark -p "$port" -c 8 -n "$requests" --csv)
  case "$server/$workload" in
    sierradb/escan) "${bench[@]}" -r 100 ESCAN "r-__rand_int__" - + COUNT 100 ;;
    redis/escan) "${bench[@]}" -r 100 XRANGE "r:__rand_int__" - + COUNT 100 ;;
    sierradb/eget) "${bench[@]}" EGET "$id" ;;
    redis/eget) "${bench[@]}" GET k ;;
    sierradb/eappend) "${bench[@]}" -r 10000 EAPPEND "s-__rand_int__" Ev PAYLOAD "$payload" ;;
    redis/eappend) "${bench[@]}" -r 10000 XADD "s:__rand_int__" '*' f "$payload" ;;
  esac >/dev/null 2>&1
  callgrind_control -d "$pid" >/dev/null 2>&1
  kill "$pid"; wait "$pid" 2>/dev/null || true
  local total
  total=$(callgrind_annotate "$out.1" 2>/dev/null | awk '/PROGRAM TOTALS/ { gsub(",", "", $1); print $1; exit }')
  echo $(( total / requests ))
}

printf '%-10s %18s %18s %8s\n' workload "sierradb Ir/req" "redis Ir/req" "ratio"
for workload in "${workloads[@]}"; do
  s=$(count sierradb "$workload")
  r=$(count redis "$workload")
  awk -v w="$workload" -v s="$s" -v r="$r" \
    'BEGIN { printf "%-10s %18d %18d %7.2fx\n", w, s, r, (s > 0 ? r / s : 0) }'
done
