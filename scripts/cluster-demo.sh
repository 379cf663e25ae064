#!/usr/bin/env bash
# A whole abis cluster on this machine, on loopback, to see how the pieces fit:
#   3 NATS servers (one JetStream cluster; the write log replicated on all 3),
#   `abis cluster init --shards 3`, 2 replicas of each shard, 1 router serving gRPC.
#
#   scripts/cluster-demo.sh [DIR]        # Ctrl-C stops everything; files stay in DIR
#
# Then, from another shell: `abis client --addr 127.0.0.1:$ROUTER_PORT insert|identify|...`
# and `abis cluster status --nats nats://127.0.0.1:$NATS_PORT` (see README "Cluster").
# Environment: ABIS (the binary, default target/release/abis), NATS_SERVER, NATS_PORT (first
# of 3 client ports, default 14222), ROUTER_PORT (first router, default 50051; replicas' health
# from ROUTER_PORT+10), SHARDS (3), REPLICAS per shard (2), ROUTERS (1), REPLICA_GRACE_S (600);
# other ABIS__* variables reach every node (e.g. ABIS__SEARCH__RETAIN_PREPARED=false). A replica
# whose DIR/replica-<shard><letter>/gallery already holds a store (from a previous run) starts from
# it and replays the log from its own position.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
abis="${ABIS:-$root/target/release/abis}"
[[ -x $abis ]] || { echo "cluster-demo: build first: cargo build --release -p abis-server" >&2; exit 1; }
nats="${NATS_SERVER:-$(command -v nats-server || echo /usr/sbin/nats-server)}"
[[ -x $nats ]] || { echo "cluster-demo: nats-server not found: run make setup" >&2; exit 1; }
dir="${1:-$(mktemp -d /tmp/abis-cluster.XXXXXX)}"
mkdir -p "$dir"
nats_port="${NATS_PORT:-14222}"
router_port="${ROUTER_PORT:-50051}"
shards="${SHARDS:-3}"
replicas="${REPLICAS:-2}"
routers="${ROUTERS:-1}"
grace="${REPLICA_GRACE_S:-600}"

pids=()
nats_pids=()
stop() {
  trap - INT TERM EXIT
  echo "cluster-demo: stopping" >&2
  # The abis processes this script started first (they checkpoint and leave their queue
  # groups while NATS is still up), then the NATS servers.
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  for p in "${nats_pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap stop INT TERM EXIT

urls=""
routes=""
for i in 0 1 2; do
  urls+="${urls:+,}nats://127.0.0.1:$((nats_port + i))"
  routes+="${routes:+, }\"nats-route://127.0.0.1:$((nats_port + 2000 + i))\""
done
for i in 0 1 2; do
  n="n$((i + 1))"
  mkdir -p "$dir/$n"
  cat >"$dir/$n.conf" <<EOF
server_name: "$n"
listen: "127.0.0.1:$((nats_port + i))"
http: "127.0.0.1:$((nats_port + 4000 + i))"
log_file: "$dir/$n.log"
jetstream { store_dir: "$dir/$n", max_memory_store: 64MB, max_file_store: 8GB }
cluster { name: "abis-demo", listen: "127.0.0.1:$((nats_port + 2000 + i))", routes: [$routes] }
EOF
  "$nats" -c "$dir/$n.conf" >/dev/null 2>&1 &
  nats_pids+=($!)
done
echo "cluster-demo: NATS on $urls" >&2

# JetStream answers once its meta group has a leader: retry init until then.
for _ in $(seq 1 100); do
  if "$abis" cluster init --nats "$urls" --shards "$shards" --replicas 3 --replica-grace-s "$grace" >"$dir/spec.json" 2>"$dir/init.err"; then
    break
  fi
  sleep 0.2
done
[[ -s $dir/spec.json ]] || { cat "$dir/init.err" >&2; exit 1; }
echo "cluster-demo: cluster $(tr -d ' \n' <"$dir/spec.json")" >&2

export ABIS__CLUSTER__NATS_URL="$urls" ABIS__LOGGING__FILTER="${ABIS__LOGGING__FILTER:-warn}"
port=$((router_port + 10))
letters=(a b c d e f g h)
for ((shard = 0; shard < shards; shard++)); do
  for ((r = 0; r < replicas; r++)); do
    node="replica-$shard${letters[r]}"
    ABIS__CLUSTER__ROLE=replica ABIS__CLUSTER__SHARD=$shard ABIS__SERVER__NODE=$node \
      "$abis" serve --data "$dir/$node" --listen "127.0.0.1:$port" >"$dir/$node.out" 2>"$dir/$node.err" &
    pids+=($!)
    port=$((port + 1))
  done
done
for ((r = 0; r < routers; r++)); do
  node="router-$((r + 1))"
  ABIS__CLUSTER__ROLE=router ABIS__SERVER__NODE=$node \
    "$abis" serve --data "$dir/$node" --listen "127.0.0.1:$((router_port + r))" >"$dir/$node.out" 2>"$dir/$node.err" &
  pids+=($!)
done

for _ in $(seq 1 150); do
  grep -q "listening on" "$dir/router-$routers.out" 2>/dev/null && break
  sleep 0.2
done
cat <<EOF
cluster-demo: $routers router(s) from 127.0.0.1:$router_port, $shards shards x $replicas replicas
  abis client --addr 127.0.0.1:$router_port count
  abis cluster status --nats $urls
files and logs: $dir     (Ctrl-C stops the cluster)
EOF
wait
