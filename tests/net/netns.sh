# shellcheck shell=bash
# Several hosts on one machine: network namespaces joined by veth pairs to a
# bridge, one namespace per node. Sourced by the tests in tests/net and by
# scripts/netns; needs root (or CAP_NET_ADMIN and CAP_SYS_ADMIN) and iproute2.
#
#   source tests/net/netns.sh
#   netns_require || exit "$NETNS_SKIP"   # prints "SKIPPED: <why>"
#   netns_up 4                            # nodes 0..3, cleaned up at exit
#   netns_exec 2 ./program                # runs in node 2, address 10.77.0.3
#   netns_link_down 2                     # cuts node 2 off the bridge
#   netns_shape 1 tbf rate 20mbit burst 32kbit latency 50ms
#
# Layout: a hub namespace holds a bridge br0; node i's namespace holds eth0,
# 10.77.0.<i+1>/24, the peer of veth h<i> on the bridge. Names carry the
# shell's PID, so parallel runs do not collide; each namespace has its own
# ports, so every run can use the same port. Everything is removed by an EXIT
# trap (and on INT/TERM), killing what still runs inside first.

# The exit code ctest reads as "skipped" (SKIP_RETURN_CODE in tests/CMakeLists.txt).
export NETNS_SKIP=77
NETNS_PREFIX="tutti$$"
NETNS_SUBNET="10.77.0"
NETNS_NODES=0

netns_name() { echo "${NETNS_PREFIX}n$1"; }
netns_hub() { echo "${NETNS_PREFIX}hub"; }
netns_addr() { echo "${NETNS_SUBNET}.$(($1 + 1))"; }
netns_hub_link() { echo "h$1"; }

# Whether namespaces can be made here; if not, prints "SKIPPED: <why>" and
# returns 1.
netns_require() {
  local why=""
  if ! command -v ip >/dev/null 2>&1; then
    why="the 'ip' command (iproute2) is not installed; scripts/deps.sh installs it"
  elif ! command -v tc >/dev/null 2>&1; then
    why="the 'tc' command (iproute2) is not installed; scripts/deps.sh installs it"
  elif [ "$(id -u)" -ne 0 ]; then
    why="network namespaces need root (uid is $(id -u))"
  else
    local probe="${NETNS_PREFIX}probe" out
    if ! out=$(ip netns add "$probe" 2>&1); then
      why="'ip netns add' failed: ${out}"
    elif ! out=$(ip -n "$probe" link add br0 type bridge 2>&1); then
      why="cannot make a bridge in a namespace: ${out}"
    elif ! out=$(ip -n "$probe" link add name va type veth peer name vb 2>&1); then
      why="cannot make a veth pair: ${out}"
    fi
    ip netns del "$probe" 2>/dev/null || true
  fi
  if [ -n "$why" ]; then
    echo "SKIPPED: $why"
    return 1
  fi
  return 0
}

netns_down() {
  local i
  for ((i = 0; i < NETNS_NODES; i++)); do
    ip netns pids "$(netns_name "$i")" 2>/dev/null | xargs -r kill -9 2>/dev/null || true
    ip netns del "$(netns_name "$i")" 2>/dev/null || true
  done
  ip netns del "$(netns_hub)" 2>/dev/null || true
  NETNS_NODES=0
}

# Makes nodes 0..n-1 and the hub. Installs the cleanup trap.
netns_up() {
  local n=$1 i hub
  hub=$(netns_hub)
  trap netns_down EXIT
  trap 'netns_down; exit 130' INT
  trap 'netns_down; exit 143' TERM
  NETNS_NODES=$n
  ip netns add "$hub"
  ip -n "$hub" link add br0 type bridge
  ip -n "$hub" link set br0 up
  for ((i = 0; i < n; i++)); do
    local ns link
    ns=$(netns_name "$i")
    link=$(netns_hub_link "$i")
    ip netns add "$ns"
    ip link add name "$link" netns "$hub" type veth peer name eth0 netns "$ns"
    ip -n "$hub" link set "$link" master br0
    ip -n "$hub" link set "$link" up
    ip -n "$ns" addr add "$(netns_addr "$i")/24" dev eth0
    ip -n "$ns" link set eth0 up
    ip -n "$ns" link set lo up
  done
  # The bridge forwards once its ports leave the listening state; wait until
  # node 0 reaches every other node.
  for ((i = 1; i < n; i++)); do
    local tries=0
    until ip netns exec "$(netns_name 0)" ping -c1 -W1 "$(netns_addr "$i")" >/dev/null 2>&1 ||
      netns_tcp_probe 0 "$i"; do
      tries=$((tries + 1))
      if [ "$tries" -ge 50 ]; then
        echo "netns: node 0 cannot reach node $i ($(netns_addr "$i"))" >&2
        return 1
      fi
      sleep 0.1
    done
  done
}

# Without ping: an ARP neighbour entry for the peer shows it answered.
netns_tcp_probe() {
  ip netns exec "$(netns_name "$1")" bash -c "exec 3<>/dev/tcp/$(netns_addr "$2")/9" 2>/dev/null
  ip -n "$(netns_name "$1")" neigh show "$(netns_addr "$2")" 2>/dev/null | grep -q lladdr
}

netns_exec() {
  local i=$1
  shift
  ip netns exec "$(netns_name "$i")" "$@"
}

# Cuts node i off: its bridge port goes down (its eth0 loses carrier).
netns_link_down() { ip -n "$(netns_hub)" link set "$(netns_hub_link "$1")" down; }

# A root qdisc on both ends of node i's link, so traffic to and from node i
# is shaped: netns_shape 1 tbf rate 20mbit burst 32kbit latency 50ms.
netns_shape() {
  local i=$1
  shift
  tc -n "$(netns_name "$i")" qdisc add dev eth0 root "$@"
  tc -n "$(netns_hub)" qdisc add dev "$(netns_hub_link "$i")" root "$@"
}

netns_unshape() {
  tc -n "$(netns_name "$1")" qdisc del dev eth0 root 2>/dev/null || true
  tc -n "$(netns_hub)" qdisc del dev "$(netns_hub_link "$1")" root 2>/dev/null || true
}

# Runs `tuttirun ARGS... -- PROGRAM...` once per node, one rank per node,
# node 0 hosting the store at its address; waits for all and returns the
# first non-zero exit code (0 if all passed). Node i's output is prefixed by
# tuttirun with its rank. Env: NETNS_TUTTIRUN (path), NETNS_PORT (29500),
# NETNS_LIMIT (seconds, 600): each tuttirun is stopped then (exit 124).
netns_run_all() {
  local n=$NETNS_NODES i rc=0 pids=()
  for ((i = 0; i < n; i++)); do
    netns_exec "$i" timeout -k 10 "${NETNS_LIMIT:-600}" "$NETNS_TUTTIRUN" --nnodes "$n" --node-rank "$i" -n 1 \
      --master-addr "$(netns_addr 0)" --master-port "${NETNS_PORT:-29500}" -- "$@" &
    pids+=($!)
  done
  for ((i = 0; i < n; i++)); do
    local code=0
    wait "${pids[$i]}" || code=$?
    if [ "$code" -ne 0 ]; then
      echo "netns: node $i exited with $code" >&2
      [ "$rc" -eq 0 ] && rc=$code
    fi
  done
  return "$rc"
}
