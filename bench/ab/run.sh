#!/bin/bash
# A/B pairs of one conv3d case on two checkouts, alternating which runs first, with the median
# of the per-pair ratios (A/B) of wall and CPU time: a before/after figure that holds on a
# shared, noisy machine. Both use built-in tiles (an empty tuning cache).
#   bash bench/ab/run.sh A_CHECKOUT B_CHECKOUT [PAIRS] [CI,CO,S]
# With STEP=1, a training step of the `deno task train` preset instead (step_time.ts).
set -euo pipefail
a=$1 b=$2 pairs=${3:-12} case=${4:-1,16,64}
here=$(cd "$(dirname "$0")" && pwd)
cache=$(mktemp -d)
trap 'rm -rf "$cache"' EXIT
for i in $(seq 1 "$pairs"); do
  if (( i % 2 )); then order="$a $b"; else order="$b $a"; fi
  for root in $order; do
    if [[ ${STEP:-} == 1 ]]; then
      line=$(ROOT=$root VOXSEG_CACHE_DIR=$cache deno run -A --unstable-webgpu "$here/step_time.ts" 5)
    else
      line=$(ROOT=$root VOXSEG_CACHE_DIR=$cache deno run -A --unstable-webgpu "$here/conv_time.ts" 20 5 "$case")
    fi
    echo "$i $root $line"
  done
done | tee /dev/stderr | python3 -c '
import json, statistics, sys
a, b = sys.argv[1], sys.argv[2]
pairs = {}
for line in sys.stdin:
    i, root, js = line.split(" ", 2)
    pairs.setdefault(i, {})[root] = json.loads(js)
wall = [p[a]["ms"] / p[b]["ms"] for p in pairs.values()]
cpu = [p[a]["cpuMs"] / p[b]["cpuMs"] for p in pairs.values()]
print(json.dumps({"pairs": len(wall), "wall_ratio_median": round(statistics.median(wall), 3),
  "cpu_ratio_median": round(statistics.median(cpu), 3),
  "cpu_ratio_range": [round(min(cpu), 3), round(max(cpu), 3)]}))' "$a" "$b"
