#!/usr/bin/env bash
# shellcheck disable=SC2317  # functions run through trap and wait_until
# Interop test: mwi-store behind a real Kamailio 5.6 (proxy, registrar, presence_mwi) on
# loopback, driven by sipp and mwi-store's own test client. docs/deployment.md, "What
# scripts/interop-kamailio.sh proves", describes each step.
#
#   bash scripts/interop-kamailio.sh            # builds mwi-store (debug) with cargo
#   MWI_STORE_BIN=/path/to/mwi-store bash scripts/interop-kamailio.sh
#   KEEP_LOGS=1 bash scripts/interop-kamailio.sh   # keep the temp dir (logs, sipp traces)
#
# Addresses (all loopback; 127.0.0.0/8 is local on Linux):
#   Kamailio  127.0.0.1:$KAM_PORT udp+tcp   the trusted proxy / presence server
#   mwi-store 127.0.0.3:$MWI_PORT udp+tcp   MSRP on 127.0.0.3 (free port)
#   alice, bob (clients, sipp)  127.0.0.1   behind Kamailio
#   intruder                    127.0.0.2   not in trusted_proxies
# One PASS/FAIL line per step; exits 1 if any step failed. Nothing waits more than 10 s.
set -uo pipefail

cd "$(dirname "$0")/.." || exit 1
repo=$PWD

# Fixed ports below Linux's ephemeral range (32768-60999): a client socket of an earlier test
# can then never hold one of them.
KAM_IP=127.0.0.1
KAM_PORT=${KAM_PORT:-25060}
MWI_IP=127.0.0.3
MWI_PORT=${MWI_PORT:-25070}
UNTRUSTED_IP=127.0.0.2
SUB_PORT=${SUB_PORT:-25080}
UNTRUSTED_PORT=${UNTRUSTED_PORT:-25090}
BUSY_PORT=${BUSY_PORT:-25100}
MSRP_RELAY_PORT=${MSRP_RELAY_PORT:-25061}
DOMAIN=example.com
FETCH_URI="sip:offline@$DOMAIN"
STEP_TIMEOUT=10

install_hint="apt-get install -y kamailio kamailio-presence-modules kamailio-sqlite-modules sip-tester sqlite3"
missing=()
for cmd in kamailio sipp sqlite3; do
  command -v "$cmd" >/dev/null || missing+=("$cmd")
done
if command -v kamailio >/dev/null; then
  for mod in presence presence_mwi db_sqlite sdpops msrp; do
    compgen -G "/usr/lib/*/kamailio/modules/$mod.so" >/dev/null \
      || compgen -G "/usr/lib*/kamailio/modules/$mod.so" >/dev/null \
      || missing+=("kamailio module $mod")
  done
fi
if [ ${#missing[@]} -gt 0 ]; then
  echo "SKIPPED: interop-kamailio: missing ${missing[*]}; install with: $install_hint"
  exit 0
fi

tmp=$(mktemp -d /tmp/mwi-interop-kamailio.XXXXXX)
pids=()
failures=0

stop_all() {
  local pid
  for pid in "${pids[@]}"; do
    kill "$pid" 2>/dev/null
  done
  for pid in "${pids[@]}"; do
    # Bounded: a process that ignores SIGTERM for 5 s is killed.
    for _ in $(seq 50); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -9 "$pid" 2>/dev/null
    # Kamailio runs in a process group of its own (setsid): its workers outlive a main
    # process killed alone and keep its ports.
    kill -9 -- "-$pid" 2>/dev/null
  done
  pids=()
}

on_exit() {
  stop_all
  if [ "$failures" -eq 0 ] && [ -z "${KEEP_LOGS:-}" ]; then
    rm -rf "$tmp"
  elif [ "$failures" -eq 0 ]; then
    echo "interop-kamailio: logs kept in $tmp (KEEP_LOGS)"
  else
    echo "interop-kamailio: logs kept in $tmp"
    for f in kamailio.log mwi-store.log; do
      [ -f "$tmp/$f" ] && { echo "---- last lines of $f"; tail -n 40 "$tmp/$f"; }
    done
  fi
}
trap on_exit EXIT
trap 'exit 1' INT TERM

# Records a background process: stopped by PID on exit; $tmp/pids lists them for a post-mortem.
started() {
  pids+=("$1")
  echo "$1 $2" >>"$tmp/pids"
}

pass() { echo "PASS: $*"; }
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

# Runs "$@" every 0.2 s until it succeeds or STEP_TIMEOUT seconds pass.
wait_until() {
  local deadline=$((SECONDS + STEP_TIMEOUT))
  while [ "$SECONDS" -lt "$deadline" ]; do
    "$@" && return 0
    sleep 0.2
  done
  "$@"
}

# The client's error line (anyhow prints "Error: ..." before any backtrace), else its last line.
client_error() { grep -m1 '^Error' "$1" || tail -n 1 "$1"; }

tcp_listening() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

# NOTIFY requests bob's sipp received, one per record, from sipp's -trace_msg file.
notifies() {
  awk 'BEGIN { RS = "----------------------------------------------- " }
       /received/ && /\nNOTIFY sip:/ { print; print "\f" }' "$tmp/bob-sipp-messages.log" 2>/dev/null
}

# True when one NOTIFY body has every given line.
notify_has() {
  local IFS='|'
  local want="$*"
  notifies | awk -v RS='\f' -v want="$want" '
    BEGIN { n = split(want, w, "|") }
    { ok = 1; for (i = 1; i <= n; i++) if (index($0, w[i]) == 0) ok = 0; if (ok) found = 1 }
    END { exit found ? 0 : 1 }'
}

# ---- mwi-store binary
if [ -n "${MWI_STORE_BIN:-}" ]; then
  bin=$MWI_STORE_BIN
else
  if ! cargo build -q -p mwi-store; then
    fail "build: cargo build -p mwi-store"
    exit 1
  fi
  bin=${CARGO_TARGET_DIR:-$repo/target}/debug/mwi-store
fi
[ -x "$bin" ] || { fail "build: $bin is not executable"; exit 1; }

# ---- Kamailio: fresh database, generated parameters, foreground (-DD) so $! is its PID
mkdir -p "$tmp/kamailio-run"
if ! bash "$repo/examples/kamailio/create-db.sh" "$tmp/presence.sqlite" >"$tmp/create-db.log" 2>&1; then
  fail "start: create-db.sh ($(tail -n 1 "$tmp/create-db.log"))"
  exit 1
fi
setsid kamailio -f "$repo/examples/kamailio/kamailio.cfg" -DD -E -Y "$tmp/kamailio-run" \
  -A WITH_MSRP_RELAY \
  --substdef="!KAM_IP!$KAM_IP!g" --substdef="!KAM_PORT!$KAM_PORT!g" \
  --substdef="!KAM_DOMAIN!$DOMAIN!g" --substdef="!KAM_DB_URL!sqlite://$tmp/presence.sqlite!g" \
  --substdef="!MWISTORE_IP!$MWI_IP!g" --substdef="!MWISTORE_PORT!$MWI_PORT!g" \
  --substdef="!FETCH_USER!offline!g" --substdef="!CHAT_RING_MS!3000!g" \
  --substdef="!MSRP_RELAY_PORT!$MSRP_RELAY_PORT!g" \
  >"$tmp/kamailio.log" 2>&1 &
started $! kamailio

# ---- mwi-store: the example config's keys, loopback addresses, a store in the temp dir
cat >"$tmp/mwi-store.toml" <<EOF
[sip]
listen = ["udp:$MWI_IP:$MWI_PORT", "tcp:$MWI_IP:$MWI_PORT"]
trusted_proxies = ["$KAM_IP/32"]
[msrp]
listen = "$MWI_IP:0"
[store]
path = "$tmp/mwi-store.db"
synchronous = "normal"
[fetch]
uri = "$FETCH_URI"
[mwi]
mode = "publish"
proxy = "udp:$KAM_IP:$KAM_PORT"
[log]
level = "info"
EOF
"$bin" serve --config "$tmp/mwi-store.toml" >"$tmp/mwi-store.log" 2>&1 &
started $! mwi-store

if wait_until tcp_listening "$KAM_IP" "$KAM_PORT" && wait_until tcp_listening "$MWI_IP" "$MWI_PORT"; then
  pass "start: Kamailio on $KAM_IP:$KAM_PORT, mwi-store on $MWI_IP:$MWI_PORT"
else
  fail "start: Kamailio or mwi-store not listening"
  exit 1
fi

# ---- 1. bob subscribes to his message-summary at Kamailio (sipp answers every NOTIFY)
sipp -sf "$repo/scripts/sipp/mwi-subscribe.xml" -s bob -key domain "$DOMAIN" -m 1 \
  -i "$KAM_IP" -p "$SUB_PORT" -t u1 -nostdin -timeout 90s \
  -trace_msg -message_file "$tmp/bob-sipp-messages.log" \
  "$KAM_IP:$KAM_PORT" >"$tmp/bob-sipp.out" 2>&1 &
started $! sipp-bob-subscriber
if wait_until notify_has "Subscription-State: active" "Event: message-summary"; then
  pass "1 SUBSCRIBE message-summary for bob at Kamailio: 200 and a first NOTIFY"
else
  fail "1 SUBSCRIBE message-summary for bob: no NOTIFY within ${STEP_TIMEOUT}s"
fi

# ---- 2. alice chats with bob (not registered) through Kamailio; mwi-store takes 3 messages
if timeout "$STEP_TIMEOUT" "$bin" client deposit --proxy "udp:$KAM_IP:$KAM_PORT" \
  --from "sip:alice@$DOMAIN" --to "sip:bob@$DOMAIN" --local "$KAM_IP:0" \
  "first message" "second message" "third message" >"$tmp/deposit.out" 2>&1; then
  if grep -q "I am offline" "$tmp/deposit.out"; then
    pass "2 chat INVITE alice -> bob via Kamailio answered by mwi-store, greeting, 3 messages 200"
  else
    fail "2 deposit: no greeting in the client output"
  fi
else
  fail "2 deposit via Kamailio: client exited non-zero ($(client_error "$tmp/deposit.out"))"
fi

# ---- 3. mwi-store PUBLISHes, Kamailio NOTIFYs bob: yes, 3 new text messages
if wait_until notify_has "Messages-Waiting: yes" "Text-Message: 3/0" "Message-Account: $FETCH_URI"; then
  pass "3 NOTIFY to bob relayed from mwi-store's PUBLISH: Messages-Waiting: yes, Text-Message: 3/0"
else
  fail "3 no NOTIFY with Messages-Waiting: yes and Text-Message: 3/0 within ${STEP_TIMEOUT}s"
fi

# ---- 4. bob fetches through Kamailio, gets alice's 3 messages, BYE; then Messages-Waiting: no
if timeout "$STEP_TIMEOUT" "$bin" client fetch --proxy "udp:$KAM_IP:$KAM_PORT" \
  --as "sip:bob@$DOMAIN" --fetch-uri "$FETCH_URI" --local "$KAM_IP:0" \
  >"$tmp/fetch.out" 2>&1; then
  got=$(grep -c "^FROM <\?sip:alice@$DOMAIN>\? AT .*: \(first\|second\|third\) message$" "$tmp/fetch.out")
  if [ "$got" -eq 3 ]; then
    pass "4a fetch via Kamailio: 3 messages from sip:alice@$DOMAIN, then BYE"
  else
    fail "4a fetch via Kamailio: $got of 3 messages from alice (see $tmp/fetch.out)"
  fi
else
  fail "4a fetch via Kamailio: client exited non-zero ($(client_error "$tmp/fetch.out"))"
fi
if wait_until notify_has "Messages-Waiting: no" "Text-Message: 0/0"; then
  pass "4b NOTIFY to bob after the fetch: Messages-Waiting: no"
else
  fail "4b no NOTIFY with Messages-Waiting: no within ${STEP_TIMEOUT}s"
fi

# ---- 5. the same fetch straight to mwi-store from an untrusted address: 403
if timeout "$STEP_TIMEOUT" sipp -sf "$repo/scripts/sipp/fetch-untrusted.xml" -s offline \
  -key domain "$DOMAIN" -key caller bob -m 1 -i "$UNTRUSTED_IP" -p "$UNTRUSTED_PORT" -t u1 \
  -nostdin -timeout 8s "$MWI_IP:$MWI_PORT" >"$tmp/untrusted-sipp.out" 2>&1; then
  pass "5 fetch INVITE from $UNTRUSTED_IP straight to mwi-store: 403"
else
  fail "5 fetch INVITE from $UNTRUSTED_IP: no 403 (see $tmp/untrusted-sipp.out)"
fi

# The latest message-summary body Kamailio holds for a user (its presentity table).
presentity_body() {
  sqlite3 "$tmp/presence.sqlite" "SELECT body FROM presentity WHERE username='$1' AND domain='$DOMAIN'
    AND event='message-summary' ORDER BY received_time DESC, id DESC LIMIT 1" 2>/dev/null
}
presentity_has() { presentity_body "$1" | grep -q "$2"; }

# ---- 6. alice's MSRP goes through Kamailio's msrp module (RFC 4976 relay) to mwi-store
if ! command -v python3 >/dev/null; then
  fail "6 MSRP relay: python3 missing (scripts/msrp-relay-deposit.py is the relay-aware caller)"
elif timeout "$STEP_TIMEOUT" python3 "$repo/scripts/msrp-relay-deposit.py" \
  --proxy "$KAM_IP:$KAM_PORT" --relay "$KAM_IP:$MSRP_RELAY_PORT" --from "sip:alice@$DOMAIN" \
  --to "sip:erin@$DOMAIN" "through the relay, one" "through the relay, two" >"$tmp/relay.out" 2>&1 \
  && wait_until presentity_has erin "Text-Message: 2/0"; then
  pass "6 chat alice -> erin with MSRP via Kamailio's msrp relay: 2 messages stored (Success-Report), presentity 2/0"
else
  fail "6 MSRP relay deposit: $(tail -n 1 "$tmp/relay.out")"
fi

# ---- 7. page-mode MESSAGE to carol (not registered): stored, then published to Kamailio
if timeout "$STEP_TIMEOUT" sipp -sf "$repo/scripts/sipp/message-send.xml" -s carol \
  -key domain "$DOMAIN" -key caller alice -key text "page mode hello" -m 1 -i "$KAM_IP" \
  -p "$UNTRUSTED_PORT" -t u1 -nostdin -timeout 8s "$KAM_IP:$KAM_PORT" >"$tmp/carol-sipp.out" 2>&1 \
  && wait_until presentity_has carol "Text-Message: 1/0"; then
  pass "7 MESSAGE alice -> carol (not registered) via Kamailio: 2xx from mwi-store, presentity 1/0"
else
  fail "7 MESSAGE to unregistered carol: no 2xx or no PUBLISH (presentity: $(presentity_body carol | tr '\r\n' '  '))"
fi

# ---- 8. dave is registered but busy (486): failure_route sends the MESSAGE to mwi-store
sipp -sf "$repo/scripts/sipp/busy-uas.xml" -m 2 -i "$KAM_IP" -p "$BUSY_PORT" -t u1 -nostdin \
  -timeout 20s >"$tmp/dave-sipp.out" 2>&1 &
started $! sipp-dave-busy
if timeout "$STEP_TIMEOUT" sipp -sf "$repo/scripts/sipp/register.xml" -s dave -key domain "$DOMAIN" \
  -key contact "sip:dave@$KAM_IP:$BUSY_PORT" -m 1 -i "$KAM_IP" -p "$UNTRUSTED_PORT" -t u1 \
  -nostdin -timeout 8s "$KAM_IP:$KAM_PORT" >"$tmp/dave-register.out" 2>&1 \
  && timeout "$STEP_TIMEOUT" sipp -sf "$repo/scripts/sipp/message-send.xml" -s dave \
  -key domain "$DOMAIN" -key caller alice -key text "are you there" -m 1 -i "$KAM_IP" \
  -p "$UNTRUSTED_PORT" -t u1 -nostdin -timeout 8s "$KAM_IP:$KAM_PORT" >"$tmp/dave-sipp-send.out" 2>&1 \
  && wait_until presentity_has dave "Text-Message: 1/0"; then
  pass "8 MESSAGE to registered dave answered 486: failure_route stored it in mwi-store, presentity 1/0"
else
  fail "8 failure_route for busy dave (see $tmp/dave-*.out)"
fi

# ---- 8b. the same for a chat: INVITE to busy dave, 486, failure_route, mwi-store answers
if timeout "$STEP_TIMEOUT" "$bin" client deposit --proxy "udp:$KAM_IP:$KAM_PORT" \
  --from "sip:alice@$DOMAIN" --to "sip:dave@$DOMAIN" --local "$KAM_IP:0" \
  "call me back" >"$tmp/dave-deposit.out" 2>&1 \
  && grep -q "I am offline" "$tmp/dave-deposit.out" \
  && wait_until presentity_has dave "Text-Message: 2/0"; then
  pass "8b chat INVITE to registered dave answered 486: failure_route, mwi-store took it, presentity 2/0"
else
  fail "8b chat INVITE to busy dave via failure_route ($(client_error "$tmp/dave-deposit.out"))"
fi

# ---- 9. Kamailio keeps the lamp honest: forged PUBLISH and a stranger's SUBSCRIBE get 403
if timeout "$STEP_TIMEOUT" sipp -sf "$repo/scripts/sipp/publish-forged.xml" -s bob \
  -key domain "$DOMAIN" -m 1 -i "$KAM_IP" -p "$UNTRUSTED_PORT" -t u1 -nostdin -timeout 8s \
  "$KAM_IP:$KAM_PORT" >"$tmp/forged-publish.out" 2>&1 \
  && timeout "$STEP_TIMEOUT" sipp -sf "$repo/scripts/sipp/subscribe-other.xml" -s bob \
  -key caller alice -key domain "$DOMAIN" -m 1 -i "$KAM_IP" -p "$UNTRUSTED_PORT" -t u1 -nostdin \
  -timeout 8s "$KAM_IP:$KAM_PORT" >"$tmp/other-subscribe.out" 2>&1 \
  && ! notify_has "Text-Message: 99/0"; then
  pass "9 PUBLISH message-summary from $KAM_IP (not mwi-store) and alice's SUBSCRIBE to bob: 403"
else
  fail "9 forged PUBLISH or foreign SUBSCRIBE not refused (see $tmp/forged-publish.out, other-subscribe.out)"
fi

stop_all
if [ "$failures" -eq 0 ]; then
  echo "interop-kamailio: all steps passed"
  exit 0
fi
echo "interop-kamailio: $failures step(s) failed"
exit 1
