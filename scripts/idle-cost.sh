#!/usr/bin/env bash
# Idle cost of `raceflow run`: a simulated API with no race to poll and a
# fresh database; prints the CPU of the process and of its database
# backends over WINDOW seconds, after WARM seconds of start-up.
#
#   BIN=./raceflow ADMIN_URL=postgres://postgres@127.0.0.1:5432/postgres scripts/idle-cost.sh
#
# The database server must run on this machine (its backends' CPU is read
# from /proc). RACEFLOW_PUBSUB picks the backend (default postgres).
set -euo pipefail
BIN=${BIN:-./raceflow}
ADMIN_URL=${ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres}
WARM=${WARM:-10}
WINDOW=${WINDOW:-40}
DB=raceflow_idle_$$
DB_URL=${ADMIN_URL%/*}/$DB
psql -q "$ADMIN_URL" -c "CREATE DATABASE $DB"
cleanup() {
  kill "${RUN:-}" "${SIM:-}" 2>/dev/null || true
  wait 2>/dev/null || true
  psql -q "$ADMIN_URL" -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)"
}
trap cleanup EXIT
# A simulated day with nothing for the scheduler to poll.
"$BIN" simulate --addr 127.0.0.1:18091 --meetings 1 --races 1 --extra-meetings 0 \
  --start "$(TZ=Pacific/Auckland date +%F)T23:00:00+13:00" >/dev/null 2>&1 & SIM=$!
DATABASE_URL=$DB_URL NZTAB_API_URL=http://127.0.0.1:18091/affiliates/v1 RACEFLOW_HTTP_ADDR=127.0.0.1:0 LOG_LEVEL=warn \
  "$BIN" run >/dev/null 2>&1 & RUN=$!
sleep "$WARM" # start-up is not what is measured
ticks() { awk '{print $14+$15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
backends() { psql -At "$ADMIN_URL" -c "SELECT pid FROM pg_stat_activity WHERE datname = '$DB'"; }
declare -A b0
for p in $(backends); do b0[$p]=$(ticks "$p"); done
r0=$(ticks $RUN); t0=$(date +%s.%N)
sleep "$WINDOW" # the measuring window
r1=$(ticks $RUN); t1=$(date +%s.%N)
db=0; n=0
for p in $(backends); do db=$((db + $(ticks "$p") - ${b0[$p]:-0})); n=$((n + 1)); done
hz=$(getconf CLK_TCK)
awk -v r=$((r1 - r0)) -v d=$db -v t0="$t0" -v t1="$t1" -v n=$n -v hz="$hz" 'BEGIN {
  s = t1 - t0; f = 100 / hz / s
  printf "over %.1f s: raceflow %.2f%% of a core, its %d database backends %.2f%%, together %.2f%%\n", s, r * f, n, d * f, (r + d) * f }'
