#!/usr/bin/env bash
# Durable appends, scans and gets: SierraDB against Redis 7 on loopback, in one run, with the
# same redis-benchmark parameters. Redis appends with XADD under appendonly yes +
# appendfsync always (fsync per write: the closest durable append log a user already has).
#
#   scripts/bench-vs-redis.sh [REQUESTS]        (default 100000 per workload)
#
# Installs redis-server and redis-tools (Debian) if missing, builds sierradb in release mode,
# starts both servers on free loopback ports in a temporary directory, prints one line per
# workload: Redis ops/s, SierraDB ops/s, ratio, and both p99s. Stops both servers at exit.
set -euo pipefail
cd "$(dirname "$0")/.."
requests=${1:-100000}
clients=50
payload=$(head -c 200 /dev/zero | tr '\0' 'x')

if ! command -v redis-server >/dev/null || ! command -v redis-benchmark >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server redis-tools >/dev/null
fi
cargo build --release -q -p sierradb-bin --bin sierradb

work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

start_redis() { # port fsync-policy
  mkdir -p "$work/redis-$1"
  redis-server --port "$1" --bind 127.0.0.1 --dir "$work/redis-$1" --save '' \
    --appendonly yes --appendfsync "$2" --daemonize no --loglevel warning >/dev/null &
  pids+=($!)
}
start_sierradb() { # port sync-policy [more serve flags]
  local port=$1 sync=$2; shift 2
  ./target/release/sierradb serve --dir "$work/sierradb-$port" --client-address "127.0.0.1:$port" \
    --sync "$sync" --log warn "$@" >/dev/null 2>&1 &
  pids+=($!)
}
wait_port() { for _ in $(seq 100); do redis-cli -p "$1" PING >/dev/null 2>&1 && return; sleep 0.1; done; echo "port $1 did not open" >&2; exit 1; }

# Prints "ops/s p99_ms" for one redis-benchmark run of a custom command.
# __rand_int__ becomes a 12-digit zero-padded number below KEYSPACE.
measure() { # port pipeline command...
  local port=$1 pipeline=$2; shift 2
  redis-benchmark -p "$port" -c "$clients" -n "$requests" -r "${KEYSPACE:-10000}" -P "$pipeline" --csv "$@" 2>/dev/null |
    tail -n 1 | tr -d '"' | awk -F, '{ printf "%.0f %.3f\n", $2, $7 }'
}

line() { # name redis-result sierradb-result
  read -r r_ops r_p99 <<<"$2"
  read -r s_ops s_p99 <<<"$3"
  awk -v n="$1" -v ro="$r_ops" -v rp="$r_p99" -v so="$s_ops" -v sp="$s_p99" \
    'BEGIN { printf "%-34s redis %9.0f ops/s p99 %7.3f ms | sierradb %9.0f ops/s p99 %7.3f ms | ratio %.2fx\n", n, ro, rp, so, sp, (ro > 0 ? so / ro : 0) }'
}

rp=$(free_port); sp=$(free_port); rpn=$(free_port); spn=$(free_port); sp1=$(free_port)
start_redis "$rp" always; start_sierradb "$sp" always
start_redis "$rpn" no; start_sierradb "$spn" never-unsafe
# The same durable server with one bucket (one writer, one file, one fsync per batch: the
# structure of Redis's append-only file), a layout chosen when a data directory is created.
start_sierradb "$sp1" always --buckets 1
for p in "$rp" "$sp" "$rpn" "$spn" "$sp1"; do wait_port "$p"; done

for pipeline in 1 16; do
  r=$(measure "$rp" "$pipeline" XADD "s:__rand_int__" '*' f "$payload")
  s=$(measure "$sp" "$pipeline" EAPPEND "s-__rand_int__" Ev PAYLOAD "$payload")
  line "durable append, c=$clients P=$pipeline" "$r" "$s"
  s=$(measure "$sp1" "$pipeline" EAPPEND "s-__rand_int__" Ev PAYLOAD "$payload")
  line "  the same, --buckets 1" "$r" "$s"
done
r=$(measure "$rpn" 1 XADD "s:__rand_int__" '*' f "$payload")
s=$(measure "$spn" 1 EAPPEND "s-__rand_int__" Ev PAYLOAD "$payload")
line "no-fsync append (UNSAFE), c=$clients" "$r" "$s"

# Reads: 100 streams of 100 events each, then range reads of 100 and gets.
for i in $(seq 0 99); do
  key=$(printf '%012d' "$i")
  for _ in $(seq 100); do
    echo "XADD r:$key * f $payload"
    echo "EAPPEND r-$key Ev PAYLOAD $payload" >>"$work/sierradb-fill"
  done
done | redis-cli -p "$rpn" >/dev/null
redis-cli -p "$spn" <"$work/sierradb-fill" >/dev/null
r=$(KEYSPACE=100 measure "$rpn" 1 XRANGE "r:__rand_int__" - + COUNT 100)
s=$(KEYSPACE=100 measure "$spn" 1 ESCAN "r-__rand_int__" - + COUNT 100)
line "range read of 100 events" "$r" "$s"
redis-cli -p "$rpn" SET k "$payload" >/dev/null
id=$(redis-cli -p "$spn" EAPPEND g Ev PAYLOAD "$payload" | sed -n 2p)
r=$(measure "$rpn" 1 GET k)
s=$(measure "$spn" 1 EGET "$id")
line "get one event" "$r" "$s"
