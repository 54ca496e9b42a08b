#!/usr/bin/env bash
# tutti across network namespaces, one rank per namespace (tests/net/netns.sh),
# each started by tuttirun with --nnodes/--node-rank/--master-addr as on real
# hosts, over the gloo backend.
#
#   net_test.sh SCENARIO TUTTIRUN RANK_PROGRAM
#
#   collectives  4 nodes: every collective family matches the reference.
#   link-down    4 nodes: node 3's link goes down during allreduces; every
#                rank raises TimeoutError/DistNetworkError naming the
#                allreduce within the timeout + 1 s (node 3, cut off from
#                the store too, + 2 s more); none hangs.
#   tbf          3 nodes: 1 MiB allreduce and broadcast, timed as they are,
#                then with node 1's link limited by tc tbf (20 mbit); both
#                more than 2x slower and still exact.
#
# Exits 77 (ctest's SKIP_RETURN_CODE) after "SKIPPED: <why>" when namespaces
# cannot be made here.
set -euo pipefail

scenario=$1
NETNS_TUTTIRUN=$2
rank_program=$3
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=tests/net/netns.sh
source "$here/netns.sh"

netns_require || exit "$NETNS_SKIP"

case "$scenario" in
  collectives)
    netns_up 4
    NETNS_LIMIT=500 netns_run_all "$rank_program" suite
    echo "PASSED: every collective family across 4 namespaces"
    ;;

  link-down)
    timeout_ms=3000
    slack_ms=1000  # as tests/collectives/gloo_test.cpp allows a stalled peer
    netns_up 4
    dir=$(mktemp -d)
    trap 'netns_down; rm -rf "$dir"' EXIT
    NETNS_LIMIT=150 netns_run_all "$rank_program" stream --bytes 1048576 \
      --timeout-ms "$timeout_ms" --slack-ms "$slack_ms" --cut-rank 3 --dir "$dir" &
    job=$!
    for ((tries = 0; tries < 600; tries++)); do
      ready=$(find "$dir" -name 'ready.*' | wc -l)
      [ "$ready" -ge 4 ] && break
      if ! kill -0 "$job" 2>/dev/null; then break; fi
      sleep 0.1
    done
    if [ "$ready" -lt 4 ]; then
      echo "FAIL: only $ready of 4 ranks completed an allreduce before the cut" >&2
      exit 1
    fi
    sleep 0.3  # well into the stream of allreduces
    netns_link_down 3
    date +%s%N >"$dir/down.tmp"
    mv "$dir/down.tmp" "$dir/down"
    echo "link of node 3 ($(netns_addr 3)) down at $(cat "$dir/down")"
    wait "$job"
    echo "PASSED: every rank raised within ${timeout_ms} ms + the roll call's grace +" \
      "${slack_ms} ms of the cut (+ the store's slack and the root-cause lookup on the" \
      "cut rank 3), every other rank naming rank 3"
    ;;

  tbf)
    netns_up 3
    bytes=1048576
    run_timed() { NETNS_LIMIT=200 netns_run_all "$rank_program" timed --bytes "$bytes" --iters 3; }
    plain=$(run_timed) || { echo "$plain"; exit 1; }
    echo "$plain"
    netns_shape 1 tbf rate 20mbit burst 32kbit latency 50ms
    shaped=$(run_timed) || { echo "$shaped"; exit 1; }
    echo "$shaped"
    netns_unshape 1
    status=0
    for op in allreduce broadcast; do
      a=$(awk -v op="$op" '$0 ~ "timed "op" " {print $NF}' <<<"$plain")
      b=$(awk -v op="$op" '$0 ~ "timed "op" " {print $NF}' <<<"$shaped")
      if [ -z "$a" ] || [ -z "$b" ]; then
        echo "FAIL: no timing for $op" >&2
        exit 1
      fi
      # At 20 mbit, node 1 alone needs 0.42 s to receive 1 MiB.
      ratio=$(awk -v a="$a" -v b="$b" 'BEGIN {printf "%.1f", b / a}')
      echo "$op of $bytes bytes: ${a} s unshaped, ${b} s with tbf 20mbit on node 1: ${ratio}x"
      if ! awk -v a="$a" -v b="$b" 'BEGIN {exit !(b > 2 * a)}'; then
        echo "FAIL: $op under tbf is not more than 2x slower" >&2
        status=1
      fi
    done
    [ "$status" -eq 0 ] && echo "PASSED: slower under tbf and exact"
    exit "$status"
    ;;

  *)
    echo "usage: net_test.sh collectives|link-down|tbf TUTTIRUN RANK_PROGRAM" >&2
    exit 2
    ;;
esac
