#!/usr/bin/env bash
# The GPU machine's one prepared run (issue: speed on real hardware). From the project root,
# after `../shared/tools/gpu-pack` has written .device/:
#
#   run carry=[".device"]: bash .device/boot.sh bash bench/gpu/run.sh
#
# Writes under $OUT (or ./gpu-results), in this order: the adapter, every op's correctness
# tests, the op benchmarks with the built-in blocks, `voxseg tune` and the op benchmarks again
# with the tuned blocks, the training-step benchmark against the same U-Net step in the
# machine's PyTorch on CUDA with TF32 off and on, and the per-kernel profile of a training step.
# Each part is time-boxed and runs even when an earlier one failed; exit status is the number
# of failed parts.
set -uo pipefail
out=${OUT:-gpu-results}
mkdir -p "$out"
failed=0
# The whole script stays within VOXSEG_GPU_BUDGET seconds (default 540: the device runs one
# command for at most 600 s): a part gets what is left of the budget at most, and parts that
# would get under 15 s are skipped, so the most important parts run first.
budget=${VOXSEG_GPU_BUDGET:-540}
part() { # part NAME SECONDS CMD...: runs CMD with a time limit, output to $out/NAME.{out,err}
  local name=$1 limit=$2
  shift 2
  local left=$((budget - SECONDS))
  if [ "$left" -lt 15 ]; then
    echo "== $name skipped: ${left}s of the ${budget}s budget left"
    return
  fi
  [ "$limit" -gt "$left" ] && limit=$left
  echo "== $name (≤ ${limit}s)"
  local t0=$SECONDS
  if timeout "$limit" "$@" >"$out/$name.out" 2>"$out/$name.err"; then
    echo "   ok in $((SECONDS - t0)) s"
  else
    echo "   FAILED ($?) in $((SECONDS - t0)) s; last lines:"
    tail -5 "$out/$name.err" | sed 's/^/   /'
    failed=$((failed + 1))
  fi
}

# The machine's PyTorch, when it has one with CUDA.
torch_python=${VOXSEG_TORCH_PYTHON:-}
if [ -z "$torch_python" ]; then
  for py in python3 /usr/bin/python3; do
    if "$py" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
      torch_python=$(command -v "$py")
      break
    fi
  done
fi

part info 60 deno task voxseg info --json
part ops_tests 180 deno test -A tests/ops/
part bench_ops_builtin 150 deno task voxseg bench ops --json
# Measure this GPU's register blocks (cached under $OUT), then the same kernels with them.
export VOXSEG_CACHE_DIR=$out/cache
part tune 120 deno task voxseg tune --json
part bench_ops 150 deno task voxseg bench ops --json
if [ -n "$torch_python" ]; then
  export VOXSEG_TORCH_PYTHON=$torch_python VOXSEG_TORCH_DEVICE=cuda
  part bench_train_tf32_off 120 deno task voxseg bench train --json
  VOXSEG_TORCH_TF32=1 part bench_train_tf32_on 120 deno task voxseg bench train --json
else
  echo "no PyTorch with CUDA here: the training step runs without its peer"
  part bench_train 120 deno task voxseg bench train --json
fi
part bench_profile 90 deno task voxseg bench profile --json
echo "$failed part(s) failed; results in $out/"
exit "$failed"
