#!/usr/bin/env bash
# Benchmarks of issue 9 on this machine, one after another, all on loopback, all bounded in
# time; docs/benchmarks.md explains each figure and keeps the last full table.
#
#   bash scripts/bench.sh            # full run: release build, C=100 M=1000 K=1000, N=10,000,
#                                    # S=10,000, page-mode ramp, sipp, Kamailio msilo
#   bash scripts/bench.sh --smoke    # seconds, tiny counts, debug build (CI runs this)
#   MWI_STORE_BIN=/path/to/mwi-store bash scripts/bench.sh   # use a built binary
#   KEEP=1 bash scripts/bench.sh     # keep the temp dir (configs, logs, JSON results)
#
# Each mwi-store run gets a fresh store (synchronous = "full") in a temp dir. The summary
# table at the end gives every figure and the ratios mwi-store/limit and mwi-store/msilo.
set -uo pipefail

cd "$(dirname "$0")/.." || exit 1
repo=$PWD

smoke=0
for arg in "$@"; do
  case $arg in
    --smoke) smoke=1 ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "bench.sh: unknown argument $arg" >&2; exit 2 ;;
  esac
done

if [ $smoke = 1 ]; then
  C=4 M=20 K=8 N=50 S=20 RAMP=200,400 STEP=1 DRAIN=2 LIMIT_SECS=30 HALF_C=4
else
  C=100 M=1000 K=1000 N=10000 S=10000 RAMP=1000,2000,4000,8000,16000 STEP=4 DRAIN=4
  LIMIT_SECS=120 HALF_C=100
fi
# Below Linux's ephemeral range (32768-60999), so no client socket can hold one of them.
BASE_PORT=${BENCH_BASE_PORT:-26000}
SIPP_RATE=${SIPP_RATE:-8000}
# MESSAGEs awaiting their answer at most: past a server's capacity the ramp turns closed-loop
# instead of piling up retransmissions.
PAGE_WINDOW=500
IP=127.0.0.1

# 10,000 sessions need one descriptor per TCP connection in both processes; root may raise
# the hard limit too.
want_files=$((S * 2 + 1024))
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt $want_files ]; then
  ulimit -n $want_files 2>/dev/null || ulimit -n "$(ulimit -Hn)"
fi

# Bursts of INVITEs and PUBLISHes overflow the default 208 KiB UDP receive buffers on
# loopback, and the test clients do not retransmit INVITE: as root, the full run raises the
# default to 4 MiB and puts it back at the end (docs/benchmarks.md, "UDP buffers").
rmem=/proc/sys/net/core/rmem_default
old_rmem=
if [ $smoke = 0 ] && [ -w $rmem ]; then
  old_rmem=$(cat $rmem)
  echo 4194304 >$rmem
fi

tmp=$(mktemp -d /tmp/mwi-bench.XXXXXX)
pids=()
# Process groups of their own (Kamailio): its workers ignore SIGTERM, and killed alone its main
# process leaves them running, bound to its port, after this script has exited.
groups=()
failures=0

stop_all() {
  local pid
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null; done
  for pid in "${pids[@]}"; do
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null
  done
  for pid in "${groups[@]}"; do kill -9 -- "-$pid" 2>/dev/null; done
  pids=() groups=()
}
on_exit() {
  stop_all
  if [ -n "$old_rmem" ]; then echo "$old_rmem" >$rmem; fi
  if [ -n "${KEEP:-}" ] || [ $failures -gt 0 ]; then
    echo "bench.sh: files kept in $tmp"
  else
    rm -rf "$tmp"
  fi
}
trap on_exit EXIT
trap 'exit 130' INT TERM

fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

# JSON figure from a result file: jget FILE KEY
jget() {
  python3 -c 'import json,sys
try:
    v = json.load(open(sys.argv[1])).get(sys.argv[2])
except Exception:
    v = None
if v is None: print("-")
elif abs(v) >= 100 or float(v).is_integer(): print(f"{v:.0f}")
else: print(f"{v:.3f}")' "$1" "$2"
}
ratio() {
  python3 -c 'import sys
try:
    print(f"{float(sys.argv[1]) / float(sys.argv[2]):.2f}")
except Exception:
    print("-")' "$1" "$2"
}

# ---- build
if [ -n "${MWI_STORE_BIN:-}" ]; then
  bin=$MWI_STORE_BIN
elif [ $smoke = 1 ]; then
  cargo build -q -p mwi-store --bin mwi-store || { fail "cargo build"; exit 1; }
  bin=${CARGO_TARGET_DIR:-$repo/target}/debug/mwi-store
else
  cargo build -q --release -p mwi-store --bin mwi-store || { fail "cargo build --release"; exit 1; }
  bin=${CARGO_TARGET_DIR:-$repo/target}/release/mwi-store
fi
[ -x "$bin" ] || { fail "$bin is not executable"; exit 1; }

echo "bench.sh: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg), ulimit -n $(ulimit -n), rmem_default $(cat $rmem), $bin"

# ---- mwi-store server: start_server NAME MWI_MODE [EXTRA_TOML]
#      -> $server_pid, $sip_port, $db, $presence
start_server() {
  local name=$1 mode=$2 extra=${3:-} dir=$tmp/$1
  BASE_PORT=$((BASE_PORT + 10))
  sip_port=$BASE_PORT
  presence=$IP:$((BASE_PORT + 2))
  db=$dir/mwi-store.db
  mkdir -p "$dir"
  cat >"$dir/mwi-store.toml" <<EOF
[sip]
listen = ["udp:$IP:$sip_port"]
trusted_proxies = ["$IP/32"]
[msrp]
listen = "$IP:$((BASE_PORT + 1))"
[store]
path = "$db"
synchronous = "${SYNC:-full}"
max_messages_per_mailbox = 100000
max_bytes_per_mailbox = 1073741824
[mwi]
mode = "$mode"
proxy = "udp:$presence"
[deposit]
idle_timeout_secs = 300
[limits]
# The abuse limits would throttle a load generator that is one caller from one address.
max_sessions = $((S + 1000))
deposit_rate_per_minute = 0
[metrics]
listen = "$IP:$((BASE_PORT + 3))"
$extra
EOF
  metrics_addr=$IP:$((BASE_PORT + 3))
  "$bin" serve --config "$dir/mwi-store.toml" --log-format json >"$dir/mwi-store.log" 2>&1 &
  server_pid=$!
  pids+=("$server_pid")
  for _ in $(seq 200); do
    if grep -q '"mwi-store started"' "$dir/mwi-store.log" 2>/dev/null; then
      server_ticks_started=$(awk '{print $14 + $15}' "/proc/$server_pid/stat" 2>/dev/null || echo 0)
      return 0
    fi
    kill -0 "$server_pid" 2>/dev/null || break
    sleep 0.1
  done
  fail "$name: mwi-store did not start ($(tail -n 3 "$dir/mwi-store.log"))"
  return 1
}

# server_cpu NAME -> $tmp/NAME.cpu: the running server's CPU time (user + system, from
# /proc) per message stored in run NAME, in µs, start-up and sessions included.
server_cpu() {
  local name=$1 ticks stored
  ticks=$(awk '{print $14 + $15}' "/proc/$server_pid/stat" 2>/dev/null) || return 0
  stored=$(jget "$tmp/$name.json" db_rows_added)
  python3 -c 'import sys, os
ticks, since_up, stored, out = sys.argv[1:]
tck = os.sysconf("SC_CLK_TCK")
try: per_message = f"{int(ticks) / tck * 1e6 / float(stored):.1f}"
except Exception: per_message = "-"
open(out + ".cpu", "w").write(per_message + "\n")
open(out + ".cpu-s", "w").write(f"{(int(ticks) - int(since_up)) / tck}\n")' \
    "$ticks" "$server_ticks_started" "$stored" "$tmp/$name"
}
cpu_of() { cat "$tmp/$1.cpu" 2>/dev/null || echo -; }
# busy_of NAME: how busy the machine's cores were during run NAME: the server's CPU since it was
# up (-> $tmp/NAME.cpu-s) and the generator's own during the run (`generator_cpu_seconds`),
# over the cores times the run's seconds: "total % (server % + generator %)".
busy_of() {
  python3 -c 'import json, os, sys
try:
    d = json.load(open(sys.argv[1] + ".json"))
    server = float(open(sys.argv[1] + ".cpu-s").read())
    cores = os.cpu_count() * d["seconds"]
    s, g = 100 * server / cores, 100 * d["generator_cpu_seconds"] / cores
    print(f"{s + g:.0f} % ({s:.0f} % + {g:.0f} %)")
except Exception:
    print("-")' "$tmp/$1"
}

# slow_fsyncs NAME: how many of the running server's WAL fsyncs took over 50 ms (the disk's
# stalls, docs/benchmarks.md finding 4), from its metrics, to $tmp/NAME.stalls.
slow_fsyncs() {
  python3 -c 'import sys, urllib.request
text = urllib.request.urlopen(sys.argv[1], timeout=5).read().decode()
values = dict(l.rsplit(" ", 1) for l in text.splitlines() if l and not l.startswith("#"))
h = "mwi_store_store_wal_fsync_seconds"
print(int(float(values[h + "_count"]) - float(values[h + "_bucket{le=\"0.05\"}"])))' \
    "http://$metrics_addr/metrics" >"$tmp/$1.stalls" 2>/dev/null || echo - >"$tmp/$1.stalls"
}
stalls_of() { cat "$tmp/$1.stalls" 2>/dev/null || echo -; }

# run_bench NAME ARGS... -> $tmp/NAME.json; prints the table to the terminal too
run_bench() {
  local name=$1
  shift
  echo "---- $name: mwi-store bench $*"
  if timeout $((LIMIT_SECS + 60)) "$bin" bench "$@" --time-limit-secs $LIMIT_SECS --json \
      >"$tmp/$name.json" 2>"$tmp/$name.err"; then
    python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print("  " + ", ".join(f"{k}={v}" for k,v in d.items() if k!="bench"))' "$tmp/$name.json"
  else
    fail "$name ($(tail -n 2 "$tmp/$name.err" | tr '\n' ' '))"
    [ -s "$tmp/$name.json" ] && cat "$tmp/$name.json"
  fi
}

# ---- 1. Limit: the store alone (group commit, synchronous=FULL, same schema)
limit_rate=-
limit_single=-
if [ $smoke = 0 ]; then
  echo "---- limit: message-store throughput micro-benchmark"
  if cargo test -q --release -p message-store --test throughput -- --ignored --nocapture \
      --test-threads=1 durable_insert_rate >"$tmp/limit.txt" 2>&1; then
    grep -E "durable inserts" "$tmp/limit.txt" | sed 's/^/  /'
    limit_rate=$(sed -n 's/^1000 tasks, group commit: .* = \([0-9]*\)\/s.*/\1/p' "$tmp/limit.txt")
    limit_single=$(sed -n 's/^100 tasks, one row per commit: .* = \([0-9]*\)\/s.*/\1/p' "$tmp/limit.txt")
  else
    fail "limit micro-benchmark ($(tail -n 3 "$tmp/limit.txt" | tr '\n' ' '))"
  fi
fi

# ---- 2. mwi-store
start_server deposit publish && {
  run_bench deposit deposit --sip "udp:$IP:$sip_port" --db "$db" --presence "$presence" \
    --concurrency $C --messages $M --mailboxes $K
  stop_all
}
# The same with 16 SENDs in flight per session (RFC 4975 lets a sender pipeline; the server
# commits them in order and answers each after its own commit).
start_server deposit-w16 publish && {
  run_bench deposit-w16 deposit --sip "udp:$IP:$sip_port" --db "$db" --presence "$presence" \
    --concurrency $C --messages $M --mailboxes $K --window 16
  stop_all
}
# And with 64 in flight, the server's `limits.max_pending_sends`: the best a client can get.
# A run takes only seconds, so it is repeated and the median counts.
for rep in 1 2 3; do
  start_server deposit-w64-$rep publish && {
    run_bench deposit-w64-$rep deposit --sip "udp:$IP:$sip_port" --db "$db" \
      --presence "$presence" --concurrency $C --messages $M --mailboxes $K --window 64
    server_cpu deposit-w64-$rep
    stop_all
  }
done
# median_run KEY FILE... -> the result file with the median KEY
median_run() {
  python3 -c 'import json,sys
runs = []
for f in sys.argv[2:]:
    try: runs.append((json.load(open(f))[sys.argv[1]], f))
    except Exception: pass
runs.sort()
print(runs[len(runs) // 2][1] if runs else "/nonexistent")' "$@"
}
w64=$(median_run stored_per_sec "$tmp"/deposit-w64-1.json "$tmp"/deposit-w64-2.json "$tmp"/deposit-w64-3.json)
w64_all=$(for rep in 1 2 3; do jget "$tmp/deposit-w64-$rep.json" stored_per_sec; done | paste -sd/)
deposit_w1=$(jget "$tmp/deposit.json" stored_per_sec)
deposit_max=$(python3 -c 'import sys
v = [float(x) for x in sys.argv[1:] if x != "-"]
print(f"{max(v):.0f}" if v else "-")' "$deposit_w1" "$(jget "$tmp/deposit-w16.json" stored_per_sec)" \
  "$(jget "$w64" stored_per_sec)")

# p99 MSRP 200 latency at half the maximum deposit rate: end to end, the same with
# synchronous = "off" (what the fsyncs add), and the store alone at that rate.
# half_of RATE: RATE / 2, rounded; 0 when there is no rate.
half_of() {
  python3 -c 'import sys
try: print(f"{float(sys.argv[1]) / 2:.0f}")
except Exception: print(0)' "$1"
}
half=$(half_of "$deposit_max")
# Sessions as long as in the maximum runs (M×C/K messages), so that the half rate is the same
# work at half the pace, not twice the INVITEs and BYEs per message.
SESSION_M=$(( (M * C + K - 1) / K ))
# A p99 over seconds is at the mercy of one slow fsync, so this runs three times and the
# median counts. paced_runs NAME RATE: three paced deposits at RATE/s into fresh servers,
# $tmp/NAME-{1,2,3}.json, each with its server's CPU and slow fsyncs; then NAME_run (the median
# run's file by p99), NAME_p99_all and NAME_stalls_all.
paced_runs() {
  local name=$1 rate=$2 rep files=()
  for rep in 1 2 3; do
    start_server "$name-$rep" publish && {
      run_bench "$name-$rep" deposit --sip "udp:$IP:$sip_port" --db "$db" \
        --presence "$presence" --concurrency $HALF_C --messages $((M / 2)) \
        --per-session $SESSION_M --mailboxes $K --rate "$rate" --window 16
      server_cpu "$name-$rep"
      slow_fsyncs "$name-$rep"
      stop_all
    }
    files+=("$tmp/$name-$rep.json")
  done
  printf -v "${name//-/_}_run" '%s' "$(median_run msrp_200_p99_ms "${files[@]}")"
  printf -v "${name//-/_}_p99_all" '%s' \
    "$(for rep in 1 2 3; do jget "$tmp/$name-$rep.json" msrp_200_p99_ms; done | paste -sd/)"
  printf -v "${name//-/_}_stalls_all" '%s' \
    "$(for rep in 1 2 3; do stalls_of "$name-$rep"; done | paste -sd/)"
}
paced_runs deposit-half "$half"
# The same target read against the one-in-flight maximum, each caller's SEND waiting for the
# previous 200 as a phone's chat does: half of it, the same sessions.
half1=$(half_of "$deposit_w1")
paced_runs deposit-half1 "$half1"
SYNC=off start_server deposit-half-nosync publish && {
  run_bench deposit-half-nosync deposit --sip "udp:$IP:$sip_port" --db "$db" \
    --presence "$presence" --concurrency $HALF_C --messages $((M / 2)) \
    --per-session $SESSION_M --mailboxes $K --rate "$half" --window 16
  stop_all
}
store_half_p99=-
if [ $smoke = 0 ]; then
  if MWI_PACED_RATE=$half cargo test -q --release -p message-store --test throughput -- \
      --ignored --nocapture --test-threads=1 paced_insert_latency >"$tmp/paced.txt" 2>&1; then
    grep -E "^paced|paced [0-9]" "$tmp/paced.txt" | sed 's/^/  /'
    store_half_p99=$(sed -n 's/.*latency p50 [0-9]* µs, p99 \([0-9]*\) µs.*/\1/p' "$tmp/paced.txt" |
      python3 -c 'import sys
v = sys.stdin.read().split()
print(f"{int(v[0]) / 1000:.3f}" if v else "-")')
  else
    fail "paced store latency ($(tail -n 3 "$tmp/paced.txt" | tr '\n' ' '))"
  fi
fi

# Where the latency target holds: paced deposits at rising rates (HALF_C callers with one long
# session each), up to the last rate before the first whose p99 exceeds 5 ms. A step that
# misses while a WAL fsync took over 50 ms (this disk's stalls, docs/benchmarks.md finding 4)
# runs once more and both results are shown; the second decides.
if [ $smoke = 1 ]; then LADDER="200 400" LADDER_SECS=1; else LADDER="5000 10000 15000 20000 30000" LADDER_SECS=8; fi
ladder_held=- ladder_all="" ladder_open=1
# ladder_step RATE NAME -> $tmp/NAME.json and $tmp/NAME.stalls
ladder_step() {
  local per=$(($1 * LADDER_SECS / HALF_C))
  start_server "$2" publish && {
    run_bench "$2" deposit --sip "udp:$IP:$sip_port" --db "$db" --presence "$presence" \
      --concurrency $HALF_C --messages $per --per-session $per --mailboxes $K --rate $1 \
      --window 16
    slow_fsyncs "$2"
    stop_all
  }
}
# stall_note NAME: " [fsyncs > 50 ms: N]" when run NAME met this disk's stalls, else nothing.
stall_note() {
  local stalls
  stalls=$(stalls_of "$1")
  [ "$stalls" = 0 ] || echo " [fsyncs > 50 ms: $stalls]"
}
within_5ms() { python3 -c 'import sys; sys.exit(0 if float(sys.argv[1]) <= 5 else 1)' "$1" 2>/dev/null; }
for rate in $LADDER; do
  ladder_step $rate ladder-$rate
  p99=$(jget "$tmp/ladder-$rate.json" msrp_200_p99_ms)
  stalls=$(stall_note ladder-$rate)
  ladder_all="$ladder_all${ladder_all:+ / }$rate: $p99$stalls"
  if [ -n "$stalls" ] && ! within_5ms "$p99"; then
    ladder_step $rate ladder-$rate-again
    p99=$(jget "$tmp/ladder-$rate-again.json" msrp_200_p99_ms)
    stalls=$(stall_note ladder-$rate-again)
    ladder_all="$ladder_all, again: $p99$stalls"
  fi
  if [ $ladder_open = 1 ] && within_5ms "$p99"; then
    ladder_held=$rate
  else
    ladder_open=0
  fi
done

# 1,000 messages/s into ONE mailbox: PUBLISHes coalesce and the last carries the count.
start_server one-mailbox publish && {
  run_bench one-mailbox page --sip "udp:$IP:$sip_port" --db "$db" --presence "$presence" \
    --mailboxes 1 --rate 1000 --step-secs $((STEP + 1)) --drain-secs $DRAIN \
    --publish-delay-ms 20
  stop_all
}

start_server fetch notify && {
  run_bench fetch fetch --sip "udp:$IP:$sip_port" --db "$db" --messages $N
  stop_all
}
# The same with 256 SENDs in flight instead of the default 32 (fewer, larger commits of the
# delivered messages).
start_server fetch-w256 notify "$(printf '[fetch]\nwindow = 256')" && {
  run_bench fetch-w256 fetch --sip "udp:$IP:$sip_port" --db "$db" --messages $N
  stop_all
}

start_server sessions notify && {
  run_bench sessions sessions --sip "udp:$IP:$sip_port" --sessions $S --server-pid "$server_pid"
  stop_all
}

start_server page publish && {
  run_bench page page --sip "udp:$IP:$sip_port" --db "$db" --presence "$presence" \
    --rate $RAMP --step-secs $STEP --drain-secs $DRAIN --window $PAGE_WINDOW
  stop_all
}

# sipp as the MESSAGE generator (while it is not the bottleneck): one rate, count 2xx.
sipp_rate=-
if command -v sipp >/dev/null && [ $smoke = 0 ]; then
  cat >"$tmp/message.xml" <<'EOF'
<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="page-mode MESSAGE deposit">
  <send retrans="500">
    <![CDATA[
MESSAGE sip:user[call_number]@example.com SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: <sip:sipp@example.com>;tag=[pid]SIPpTag00[call_number]
To: <sip:user[call_number]@example.com>
Call-ID: [call_id]
CSeq: 1 MESSAGE
Max-Forwards: 70
Content-Type: text/plain
Content-Length: [len]

bench message from sipp [call_number] xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx
    ]]>
  </send>
  <recv response="202"/>
</scenario>
EOF
  start_server sipp publish && {
    # A presence stand-in is not running here: PUBLISH goes nowhere, as in page mode without
    # a proxy; mode stays publish so the server does the same work.
    n=$((SIPP_RATE * STEP))
    echo "---- sipp: $n MESSAGEs offered at $SIPP_RATE/s"
    t0=$(date +%s.%N)
    (cd "$tmp" && timeout $LIMIT_SECS sipp -sf message.xml -i $IP -p $((BASE_PORT + 5)) \
      -r "$SIPP_RATE" -l 4000 -m $n -nostdin -timeout $((STEP * 4))s -trace_stat -fd 1 \
      -stf sipp-stat.csv "$IP:$sip_port" >sipp.out 2>&1)
    t1=$(date +%s.%N)
    # The last line of sipp's statistics file: cumulative successful calls.
    ok=$(python3 -c 'import csv,sys
rows = list(csv.reader(open(sys.argv[1]), delimiter=";"))
print(rows[-1][rows[0].index("SuccessfulCall(C)")])' "$tmp/sipp-stat.csv" 2>/dev/null)
    sipp_rate=$(python3 -c 'import sys
try: print(f"{int(sys.argv[1]) / (float(sys.argv[3]) - float(sys.argv[2])):.0f}")
except Exception: print("-")' "${ok:-x}" "$t0" "$t1")
    echo "  sipp: ${ok:-?} of $n answered 202, ${sipp_rate}/s over the whole run"
    stop_all
  }
fi

# ---- 3. Kamailio msilo, same generator and ramp
msilo_run() {
  local name=$1 children=$2
  local port=$((BASE_PORT + 20)) dbf=$tmp/$name.sqlite
  BASE_PORT=$((BASE_PORT + 30))
  bash "$repo/scripts/msilo/create-db.sh" "$dbf" || { fail "$name: create-db"; return; }
  mkdir -p "$tmp/$name-run"
  setsid kamailio -f "$repo/scripts/msilo/kamailio-msilo.cfg" -DD -E -Y "$tmp/$name-run" \
    --substdef="!KAM_PORT!$port!g" --substdef="!KAM_DB_URL!sqlite://$dbf!g" \
    --substdef="!KAM_CHILDREN!$children!g" >"$tmp/$name.log" 2>&1 &
  pids+=("$!") groups+=("$!")
  sleep 1
  run_bench "$name" page --sip "udp:$IP:$port" --rate $RAMP --step-secs $STEP --drain-secs $DRAIN \
    --window $PAGE_WINDOW
  rows=$(sqlite3 "$dbf" "SELECT count(*) FROM silo;" 2>/dev/null || echo -)
  echo "  $name: $rows rows in silo"
  eval "${name//-/_}_rows=\$rows"
  stop_all
}
msilo_1_rows=- msilo_2_rows=-
if command -v kamailio >/dev/null && compgen -G "/usr/lib/*/kamailio/modules/msilo.so" >/dev/null \
    && command -v sqlite3 >/dev/null; then
  msilo_run msilo-1 1
  msilo_run msilo-2 2
else
  echo "SKIPPED: Kamailio msilo: install kamailio kamailio-sqlite-modules sqlite3"
fi

# ---- the table
d=$tmp/deposit.json
page_max=$(jget "$tmp/page.json" max_accepted_per_sec)
msilo_max=$(jget "$tmp/msilo-1.json" max_accepted_per_sec)
{
  echo
  echo "| figure | value | target |"
  echo "| --- | --- | --- |"
  echo "| limit: store alone, 1000 tasks, group commit (rows/s) | $limit_rate | |"
  echo "| limit: store alone, one row per commit (rows/s) | $limit_single | |"
  echo "| deposit C=$C M=$M K=$K, 1 SEND in flight: stored msg/s (MSRP 200) | $deposit_w1 | ≥ 50,000 |"
  echo "| deposit, 16 SENDs in flight per session: stored msg/s | $(jget "$tmp/deposit-w16.json" stored_per_sec) | ≥ 50,000 |"
  echo "| deposit, 16 in flight: MSRP 200 p50 / p99 (ms) | $(jget "$tmp/deposit-w16.json" msrp_200_p50_ms) / $(jget "$tmp/deposit-w16.json" msrp_200_p99_ms) | |"
  echo "| deposit, 64 SENDs in flight per session, median of 3: stored msg/s | $(jget "$w64" stored_per_sec) ($w64_all) | ≥ 50,000 |"
  echo "| deposit, 64 in flight: MSRP 200 p50 / p99 (ms) | $(jget "$w64" msrp_200_p50_ms) / $(jget "$w64" msrp_200_p99_ms) | |"
  echo "| deposit, 64 in flight: server CPU per stored message (µs) | $(cpu_of "$(basename "$w64" .json)") | |"
  echo "| deposit (1 in flight): rows in the DB / 200s | $(jget "$d" db_rows_added) / $(jget "$d" messages_stored) | equal |"
  echo "| deposit: MSRP 200 latency p50 / p99 / max (ms) | $(jget "$d" msrp_200_p50_ms) / $(jget "$d" msrp_200_p99_ms) / $(jget "$d" msrp_200_max_ms) | |"
  echo "| deposit: sessions/s (setup+$((M * C / K))-message session+BYE) | $(jget "$d" sessions_per_sec) | |"
  echo "| deposit: PUBLISHes seen (mailboxes) | $(jget "$d" publishes) ($(jget "$d" mailboxes_published)) | |"
  echo "| deposit at half rate ($half/s), median of 3 by p99: achieved msg/s | $(jget "$deposit_half_run" stored_per_sec) | |"
  echo "| deposit at half rate: MSRP 200 p50 / p99 (ms) | $(jget "$deposit_half_run" msrp_200_p50_ms) / $(jget "$deposit_half_run" msrp_200_p99_ms) ($deposit_half_p99_all) | p99 ≤ 5 |"
  echo "| deposit at half rate: WAL fsyncs over 50 ms in each run (disk stalls) | $deposit_half_stalls_all | |"
  echo "| deposit at half rate: server CPU per stored message (µs) | $(cpu_of "$(basename "$deposit_half_run" .json)") | |"
  echo "| deposit at half rate: the machine's cores busy (server + generator) | $(busy_of "$(basename "$deposit_half_run" .json)") | |"
  echo "| deposit at half the one-in-flight maximum ($half1/s), median of 3 by p99: MSRP 200 p50 / p99 (ms) | $(jget "$deposit_half1_run" msrp_200_p50_ms) / $(jget "$deposit_half1_run" msrp_200_p99_ms) ($deposit_half1_p99_all) | p99 ≤ 5, if the maximum is this one |"
  echo "| deposit at half the one-in-flight maximum: WAL fsyncs over 50 ms in each run; cores busy | $deposit_half1_stalls_all; $(busy_of "$(basename "$deposit_half1_run" .json)") | |"
  echo "| the same with synchronous = off: MSRP 200 p50 / p99 (ms) | $(jget "$tmp/deposit-half-nosync.json" msrp_200_p50_ms) / $(jget "$tmp/deposit-half-nosync.json" msrp_200_p99_ms) | |"
  echo "| store alone at half rate, 100 paced tasks: insert p99 (ms) | $store_half_p99 | |"
  echo "| paced deposits, $HALF_C long sessions: highest rate with p99 ≤ 5 ms (p99 per rate, ms) | $ladder_held ($ladder_all) | |"
  echo "| one mailbox at 1000/s: PUBLISHes, max in flight | $(jget "$tmp/one-mailbox.json" publishes), $(jget "$tmp/one-mailbox.json" max_publishes_in_flight_per_mailbox) | ≤ 1 in flight, exact last count |"
  echo "| fetch N=$N (fetch.window 32, the default): seconds | $(jget "$tmp/fetch.json" fetch_seconds) | ≤ 0.5 |"
  echo "| fetch N=$N with fetch.window = 256: seconds | $(jget "$tmp/fetch-w256.json" fetch_seconds) | ≤ 0.5 |"
  echo "| fetch: messages/s | $(jget "$tmp/fetch.json" fetch_per_sec) | |"
  echo "| sessions S=$S: setups/s | $(jget "$tmp/sessions.json" setups_per_sec) | ≥ 2,000 |"
  echo "| sessions: teardowns/s | $(jget "$tmp/sessions.json" teardowns_per_sec) | ≥ 2,000 |"
  echo "| sessions: RSS per idle session (KiB) | $(jget "$tmp/sessions.json" rss_per_session_kib) | ≤ 20 |"
  echo "| page mode: max stored MESSAGE/s (ramp $RAMP) | $page_max | ≥ 10× msilo |"
  echo "| page mode: 202 latency p50 / p99 (ms) | $(jget "$tmp/page.json" answer_p50_ms) / $(jget "$tmp/page.json" answer_p99_ms) | |"
  echo "| page mode via sipp ($SIPP_RATE/s offered): 202/s | $sipp_rate | |"
  echo "| msilo 1 worker: max stored MESSAGE/s | $msilo_max | |"
  echo "| msilo 1 worker: rows in silo / 202s | $msilo_1_rows / $(jget "$tmp/msilo-1.json" accepted) | |"
  echo "| msilo 2 workers: max stored MESSAGE/s | $(jget "$tmp/msilo-2.json" max_accepted_per_sec) | |"
  echo "| msilo 2 workers: rows in silo / 202s / non-2xx | $msilo_2_rows / $(jget "$tmp/msilo-2.json" accepted) / $(jget "$tmp/msilo-2.json" rejected) | |"
  echo "| ratio deposit (best) / limit | $(ratio "$deposit_max" "$limit_rate") | ≥ 0.25 |"
  echo "| ratio page mode / limit | $(ratio "$page_max" "$limit_rate") | |"
  echo "| ratio page mode / msilo (1 worker) | $(ratio "$page_max" "$msilo_max") | ≥ 10 |"
  echo "| ratio deposit (best) / msilo (1 worker) | $(ratio "$deposit_max" "$msilo_max") | |"
} | tee "$tmp/table.md"
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
if [ $failures -gt 0 ]; then
  echo "bench.sh: $failures step(s) failed"
  exit 1
fi
echo "bench.sh: all steps ran"
