#!/usr/bin/env bash
# Instructions per stored message on the deposit path, counted by callgrind (docs/benchmarks.md,
# Fix 22). Wall-clock CPU on a shared machine moves ±10 % from run to run; these counts repeat
# within ±1 %, so they show changes of a few per cent.
#
# The server runs under `valgrind --tool=callgrind --separate-threads=yes` with its store on
# tmpfs (`synchronous = "off"`) and `mwi.mode = "notify"` (no PUBLISH traffic mixes in); the
# load generator sends 3,000 paced messages (20 callers, 300/s) on loopback. Printed: the
# instructions of the tokio worker threads, of the store's writer thread and of the rest,
# each divided by the messages stored.
#
#   bash scripts/instructions.sh                  # release build, then one measurement
#   MWI_STORE_BIN=target/release/mwi-store bash scripts/instructions.sh
#   RUNS=3 bash scripts/instructions.sh           # repeat, to see the spread
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v valgrind >/dev/null; then
  echo "SKIPPED: valgrind not installed (apt-get install -y valgrind)"
  exit 0
fi
bin=${MWI_STORE_BIN:-}
if [ -z "$bin" ]; then
  cargo build --release -q -p mwi-store
  bin=${CARGO_TARGET_DIR:-target}/release/mwi-store
fi
callers=20 per_caller=150 rate=300
messages=$((callers * per_caller))
base=/tmp
[ -d /dev/shm ] && base=/dev/shm
tmp=$(mktemp -d "$base/mwi-instructions.XXXXXX")
server=
# Only a server still running is stopped (`kill 0` would signal this whole process group).
trap 'if [ -n "$server" ]; then kill "$server" 2>/dev/null || true; fi; rm -rf "$tmp"' EXIT

for run in $(seq "${RUNS:-1}"); do
  rm -rf "$tmp/run" && mkdir -p "$tmp/run"
  port=$((20000 + RANDOM % 10000))
  cat > "$tmp/run/mwi-store.toml" <<EOF
[sip]
listen = ["udp:127.0.0.1:$port"]
trusted_proxies = ["127.0.0.1/32"]
[msrp]
listen = "127.0.0.1:$((port + 1))"
[store]
path = "$tmp/run/mwi-store.db"
synchronous = "off"
[mwi]
mode = "notify"
[log]
file = "$tmp/run/server.log"
[limits]
deposit_rate_per_minute = 0
EOF
  valgrind --tool=callgrind --separate-threads=yes --dump-instr=no \
    --callgrind-out-file="$tmp/run/cg.out" \
    "$bin" serve --config "$tmp/run/mwi-store.toml" --log-format json \
    > "$tmp/run/valgrind.log" 2>&1 &
  server=$!
  for _ in $(seq 600); do
    grep -q "mwi-store started" "$tmp/run/server.log" 2>/dev/null && break
    sleep 0.1
  done
  grep -q "mwi-store started" "$tmp/run/server.log" || {
    echo "the server did not start under valgrind; see $tmp/run/valgrind.log" >&2
    exit 1
  }
  "$bin" bench deposit --sip "udp:127.0.0.1:$port" --db "$tmp/run/mwi-store.db" \
    --concurrency $callers --messages $per_caller --per-session $per_caller \
    --mailboxes $callers --rate $rate --window 16 --time-limit-secs 120 --json \
    > "$tmp/run/bench.json" 2> "$tmp/run/bench.err"
  kill -TERM "$server"
  wait "$server" 2>/dev/null || true
  server=
  python3 - "$tmp/run" "$messages" <<'PY'
import glob, json, re, sys
run, expected = sys.argv[1], int(sys.argv[2])
stored = int(json.load(open(f"{run}/bench.json")).get("db_rows_added", 0))
if stored != expected:
    sys.exit(f"only {stored} of {expected} messages stored; see {run}/bench.err")
kinds = {"tokio workers": 0, "store writer": 0, "other threads": 0}
for path in glob.glob(f"{run}/cg.out-*"):
    text = open(path, errors="replace").read()
    total = re.search(r"^summary: (\d+)", text, re.M)
    n = int(total.group(1)) if total else 0
    if "multi_thread::worker" in text and "run_task" in text:
        kinds["tokio workers"] += n
    elif "message_store::writer" in text:
        kinds["store writer"] += n
    else:
        kinds["other threads"] += n
print(", ".join(f"{k}: {v / stored:,.0f}" for k, v in kinds.items()),
      f"instructions per stored message ({stored} messages)")
PY
done
