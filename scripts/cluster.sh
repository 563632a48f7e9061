#!/usr/bin/env bash
# Starts a local three-member Triad cluster on loopback with a demo license.
#   scripts/cluster.sh          run until Ctrl-C (make run)
#   scripts/cluster.sh bench    start a fresh cluster, run the standard `triadctl bench` set, stop (make bench):
#                               figures in $RUN_DIR/bench.json and the human table in $RUN_DIR/bench.txt
#                               (CLIENTS, CONNS, DURATION, HOLD_LEASES, HOLD_CLIENTS, HOLD_DURATION change the set;
#                               BENCH_ONLY="hold cycle-all" runs only the runs named)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-bin}
RUN=${RUN_DIR:-.run}
MODE=${1:-run}
SEATS=${SEATS:-10}
[ "$MODE" = bench ] && SEATS=$((${HOLD_LEASES:-100000} + 10000))

rm -rf "$RUN"
mkdir -p "$RUN"
pids=()
names=(alpha bravo charlie)
reported=
# stop_members sends SIGTERM to every member still running (Ctrl-C, SIGINT
# and SIGTERM of this script come here too) and reports how each one ended:
# a clean exit, a signal, or an error status (then see its .err and .log).
stop_members() {
  [ -n "$reported" ] && return
  reported=1
  trap - INT TERM
  local i p rc how
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for i in "${!pids[@]}"; do
    p=${pids[$i]}
    rc=0
    wait "$p" 2>/dev/null || rc=$?
    if [ "$rc" -eq 0 ]; then
      how="stopped cleanly (exit status 0)"
    elif [ "$rc" -gt 128 ]; then
      how="killed by signal SIG$(kill -l $((rc - 128)) 2>/dev/null || echo $((rc - 128)))"
    elif [ "$rc" -eq 127 ]; then
      how="was not running (no such process to wait for)"
    else
      how="exited with an error (status $rc): see $RUN/${names[$i]}.err and $RUN/${names[$i]}.log"
    fi
    echo "member ${names[$i]} (pid $p) $how"
  done
}
trap stop_members EXIT
trap 'echo; echo "stopping the members..."; exit 130' INT
trap 'echo "stopping the members..."; exit 143' TERM

"$BIN/triadctl" vendor keygen --out "$RUN/vendor" >/dev/null
# TLS everywhere: a cluster CA and one member certificate each, made here.
"$BIN/triadd" tls init-ca --dir "$RUN/tls" >/dev/null
for name in "${names[@]}"; do
  "$BIN/triadd" tls issue --ca-dir "$RUN/tls" --member "$name" --host 127.0.0.1,localhost --out "$RUN/tls" >/dev/null
done
export TRIAD_CA="$RUN/tls/ca.crt"
addrs=()
# start_member I starts member I (again, after a kill: same data and ports).
start_member() {
  local i=$1 base=$((${PORT_BASE:-4085} + 100 * $1)) name=${names[$1]}
  "$BIN/triadd" --name "$name" --data-dir "$RUN/$name" --listen "127.0.0.1:$base" \
    --raft-listen "127.0.0.1:$((base + 1))" --http-listen "127.0.0.1:$((base - 5))" \
    --trust "$RUN/vendor.pub" --log-file "$RUN/$name.log" \
    --tls-ca "$RUN/tls/ca.crt" --tls-cert "$RUN/tls/$name.crt" --tls-key "$RUN/tls/$name.key" 2>>"$RUN/$name.err" &
  pids[$i]=$!
}
for i in 0 1 2; do
  addrs+=("127.0.0.1:$((${PORT_BASE:-4085} + 100 * i))")
  start_member "$i"
done
members=$(IFS=,; echo "${addrs[*]}")
ctl() { "$BIN/triadctl" --server "$members" "$@"; }

for a in "${addrs[@]}"; do
  for _ in $(seq 100); do
    "$BIN/triadctl" --server "$a" --timeout 1s server show >/dev/null 2>&1 && break
    sleep 0.1
  done
done
"$BIN/triadctl" --server "${addrs[0]}" cluster create --members "$members"
ids=()
for a in "${addrs[@]}"; do
  ids+=("$("$BIN/triadctl" --server "$a" -o json server show | sed -n 's/.*"computer_id": *"\([^"]*\)".*/\1/p')")
done
"$BIN/triadctl" vendor issue --key "$RUN/vendor.key" --customer "Demo Corp" \
  --computer-ids "$(IFS=,; echo "${ids[*]}")" --feature "demo:1:$SEATS" \
  --valid-until "$(date -u -d '+1 year' +%F 2>/dev/null || date -u -v+1y +%F)" --out "$RUN/demo.lic"
ctl license enroll "$RUN/demo.lic"

if [ "$MODE" = bench ]; then
  # The standard set (docs/performance.md): name, then triadctl bench flags.
  # hold runs first: its memory per lease is an RSS difference, clearest on
  # members that have not yet run the other workloads.
  D=${DURATION:-10s}
  set_=(
    "hold           --workload hold --target all --leases ${HOLD_LEASES:-100000} --clients ${HOLD_CLIENTS:-1000} --conns ${HOLD_CLIENTS:-1000} --renew-every 10s --duration ${HOLD_DURATION:-30s}"
    "cycle-all      --workload cycle --target all --clients ${CLIENTS:-64} --conns ${CONNS:-8} --duration $D"
    "cycle-leader   --workload cycle --target leader --clients ${CLIENTS:-64} --conns ${CONNS:-8} --duration $D"
    "cycle-follower --workload cycle --target follower --clients ${CLIENTS:-64} --conns ${CONNS:-8} --duration $D"
    "cycle-single   --workload cycle --target leader --clients 1 --conns 1 --duration $D"
    "single-follower --workload cycle --target follower --clients 1 --conns 1 --duration $D"
    "renew          --workload renew --target all --leases 10000 --clients ${CLIENTS:-64} --conns ${CONNS:-8} --duration $D"
    "failover       --workload hold --target all --leases ${HOLD_LEASES:-100000} --clients ${HOLD_CLIENTS:-1000} --conns ${HOLD_CLIENTS:-1000} --renew-every 10s --duration 20s --kill-leader-at 8s --keep-leases"
  )
  : >"$RUN/bench.txt"
  files=()
  for entry in "${set_[@]}"; do
    read -r name flags <<<"$entry"
    if [ -n "${BENCH_ONLY:-}" ] && [[ " $BENCH_ONLY " != *" $name "* ]]; then continue; fi
    echo "== $name: triadctl bench $flags" | tee -a "$RUN/bench.txt"
    # shellcheck disable=SC2086 # flags are words
    ctl bench --feature demo $flags --json-out "$RUN/bench-$name.json" | tee -a "$RUN/bench.txt"
    jq --arg name "$name" '{name: $name} + .' "$RUN/bench-$name.json" >"$RUN/bench-$name.json.tmp"
    mv "$RUN/bench-$name.json.tmp" "$RUN/bench-$name.json"
    files+=("$RUN/bench-$name.json")
  done
  # The failover run killed the leader and left its leases held: restart
  # that member on its data and time it back in service, i.e. answering a
  # consistent read (it has restored its snapshot and caught up the log).
  killed=
  [ -f "$RUN/bench-failover.json" ] && killed=$(jq -r '.killed_member // empty' "$RUN/bench-failover.json")
  for i in 0 1 2; do [ "${names[$i]}" = "$killed" ] && k=$i; done
  if [ -n "${k:-}" ]; then
    wait "${pids[$k]}" 2>/dev/null || true
    t0=$(date +%s.%N)
    start_member "$k"
    ready= serving= inuse=
    for _ in $(seq 600); do
      now=$(date +%s.%N)
      if [ -z "$ready" ] && curl -sf "http://127.0.0.1:$((${PORT_BASE:-4085} + 100 * k - 5))/readyz" >/dev/null 2>&1; then
        ready=$(awk -v a="$now" -v b="$t0" 'BEGIN { printf "%.3f", a - b }')
      fi
      if [ -z "$serving" ] && out=$("$BIN/triadctl" --server "${addrs[$k]}" --timeout 500ms -o json usage features --consistent 2>/dev/null); then
        serving=$(awk -v a="$(date +%s.%N)" -v b="$t0" 'BEGIN { printf "%.3f", a - b }')
        inuse=$(echo "$out" | jq '[.[] | select(.feature == "demo") | .in_use] | add // 0')
      fi
      [ -n "$ready" ] && [ -n "$serving" ] && break
      sleep 0.05
    done
    echo "== restart: member $killed restarted on its data with the failover run's leases held: serving consistent reads after ${serving:-never} s (in use: ${inuse:-?}), ready (/readyz: links up) after ${ready:-never} s" | tee -a "$RUN/bench.txt"
    jq -n --arg m "$killed" --arg r "${ready:-null}" --arg s "${serving:-null}" --arg u "${inuse:-null}" \
      '{name: "restart", workload: "restart", member: $m, ready_seconds: ($r|fromjson), serving_seconds: ($s|fromjson), in_use_seen: ($u|fromjson)}' \
      >"$RUN/bench-restart.json"
    files+=("$RUN/bench-restart.json")
  fi
  jq -s --arg commit "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)" \
    'map(. + {commit: $commit})' "${files[@]}" >"$RUN/bench.json"
  {
    echo
    printf '%-15s %12s %9s %9s %9s %14s %7s %s\n' name "ops/s" "p50 ms" "p99 ms" "max ms" "CPU s/1000 op" load "B/lease (max)"
    jq -r '.[] | select(.workload != "restart")  as $r | ($r.members | map(.rss_per_lease_bytes // 0) | max) as $b |
      (if $r.workload == "cycle" then [$r.checkouts_per_second, $r.checkout_p50_ms, $r.checkout_p99_ms, $r.checkout_max_ms]
      else [$r.renewals_per_second, $r.renew_p50_ms, $r.renew_p99_ms, $r.renew_max_ms] end) as $f |
      "\($r.name)\t\($f[0]|floor)\t\($f[1])\t\($f[2])\t\($f[3])\t\($r.server_cpu_seconds_per_1000_ops*1000|round/1000)\t\($r.load_start)\t\(if $b == 0 then "-" else ($b|floor) end)"' \
      "$RUN/bench.json" | while IFS=$'\t' read -r n a b c d e f g; do
      printf '%-15s %12s %9s %9s %9s %14s %7s %s\n' "$n" "$a" "$b" "$c" "$d" "$e" "$f" "$g"
    done
  } | tee -a "$RUN/bench.txt"
  echo "figures: $RUN/bench.json (JSON), $RUN/bench.txt (table)"
  exit 0
fi

for _ in $(seq 50); do
  st=$(ctl cluster status || true) # exits 1/2 until operational
  echo "$st" | grep -q '^status *operational' && ! echo "$st" | grep -q ' unknown$' && break
  sleep 0.2
done
echo
ctl cluster status || true
cat <<TXT

Triad is running: three members on loopback, license for $SEATS seats of feature "demo", TLS on every port
(cluster CA $RUN/tls/ca.crt, which triadctl reads from TRIAD_CA or --ca).
  members      $members   (logs and data in $RUN/)
  dashboard    http://127.0.0.1:4080/  (any member: :4180, :4280; JSON at /v1/status, Prometheus at /metrics)
Try, in another terminal:
  export TRIAD_CA=$(pwd)/$RUN/tls/ca.crt
  $BIN/triadctl --server $members cluster status
  $BIN/triadctl --server $members usage features
  $BIN/triadctl --server $members checkout --feature demo --hold 30s
  $BIN/triadctl --server $members bench --feature demo --clients 8 --duration 5s
The demo vendor key that signed the license: $RUN/vendor.key (public key $RUN/vendor.pub, trusted by the
members); issue more licenses with
  $BIN/triadctl vendor issue --key $RUN/vendor.key --computer-ids $(IFS=,; echo "${ids[*]}") --feature NAME:VERSION:COUNT --out FILE.lic
Press Ctrl-C (or send SIGINT/SIGTERM to this script, pid $$) to stop all three members.
TXT
# Wait until a signal comes (the traps above stop everyone) or a member
# ends by itself (then report it and stop the others).
while :; do
  for i in "${!pids[@]}"; do
    if ! kill -0 "${pids[$i]}" 2>/dev/null; then
      echo "member ${names[$i]} ended by itself; stopping the others" >&2
      exit 1
    fi
  done
  sleep 1 &
  wait $! 2>/dev/null || true
done
