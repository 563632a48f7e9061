#!/usr/bin/env bash
# Starts a local three-member Triad cluster on loopback with a demo license.
#   scripts/cluster.sh          run until Ctrl-C (make run)
#   scripts/cluster.sh bench    start a fresh cluster, run `triadctl bench`, stop (make bench)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-bin}
RUN=${RUN_DIR:-.run}
MODE=${1:-run}
SEATS=10
[ "$MODE" = bench ] && SEATS=1000

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
for i in 0 1 2; do
  base=$((4085 + 100 * i))
  name=${names[$i]}
  addr=127.0.0.1:$base
  addrs+=("$addr")
  "$BIN/triadd" --name "$name" --data-dir "$RUN/$name" --listen "$addr" \
    --raft-listen "127.0.0.1:$((base + 1))" --http-listen "127.0.0.1:$((base - 5))" \
    --trust "$RUN/vendor.pub" --log-file "$RUN/$name.log" \
    --tls-ca "$RUN/tls/ca.crt" --tls-cert "$RUN/tls/$name.crt" --tls-key "$RUN/tls/$name.key" 2>>"$RUN/$name.err" &
  pids+=($!)
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
  ctl bench --feature demo --clients "${CLIENTS:-64}" --duration "${DURATION:-10s}"
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
