#!/bin/bash
# Times `abis serve` from process start to its log line "gallery prepared for matching", then
# kills it with SIGKILL, COUNT times: the restart time of a node after `kill -9`.
#
#   scripts/restart-time.sh DATA_DIR [COUNT] [KEY_FILE]
#
# Uses target/debug/abis (build it first); listens on 127.0.0.1:50991; prints one line per start
# with the seconds and the process's VmRSS / RssAnon at that moment.
set -euo pipefail
data=${1:?usage: scripts/restart-time.sh DATA_DIR [COUNT] [KEY_FILE]}
count=${2:-3}
if [ -n "${3:-}" ]; then
  export ABIS__STORE__ENCRYPTION_KEY_FILE=$3
fi
log=$(mktemp)
trap 'rm -f "$log"' EXIT
for i in $(seq 1 "$count"); do
  start=$(date +%s.%N)
  ./target/debug/abis serve --data "$data" --listen 127.0.0.1:50991 >"$log" 2>&1 &
  pid=$!
  until grep -q "gallery prepared for matching" "$log"; do
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "the server exited:" >&2
      tail -5 "$log" >&2
      exit 1
    fi
    sleep 0.05
  done
  end=$(date +%s.%N)
  mem=$(grep -E "^(VmRSS|RssAnon)" "/proc/$pid/status" | tr -s ' \t' ' ' | tr '\n' ' ')
  echo "start $i: $(echo "$end - $start" | bc) s; $mem"
  kill -9 "$pid"
  wait "$pid" 2>/dev/null || true
done
