#!/usr/bin/env bash
# The accelerator report (issue 31): every GPU number of bench/RESULTS.md in
# one command on the lent device machine, in under 8 minutes.
#
#   bash bench/gpu_report.sh --fetch_wheels   # here, once: the wheels the device lacks
#   # then the device tool: carry=["bench/wheels"], command="bash bench/gpu_report.sh",
#   # timeout_s=540; the tables land in $OUT (else runs/gpu_report/).
#   GPU_REPORT_CPU_DRY_RUN=1 bash bench/gpu_report.sh   # the same parts, tiny, on a CPU
#
# The device machine has jax, flax, optax, orbax, torch, numpy and Pillow but
# no TensorFlow, TFDS, clu or ml_collections and no network: the report
# installs the carried wheels (bench/wheels/*.whl, git-ignored) and runs only
# TensorFlow-free parts. Each part has its own time limit and a failing part
# does not stop the others (no set -e); the summary says which ran.
#
# Parts (the issue's list):
#   1. training steps: AlignGAN's three stages, AGW, CAJ; bf16, official sizes;
#      median of 20 after warm-up; peak memory and compile time per step
#      (bench/train_bench.py); stage 3 again with the batched calls on;
#   2. remat convs / blocks on stage 3, the step where memory matters;
#   3. compile-only FLOPs and planned memory of every step (utilisation is ms
#      per step against these FLOPs and the card's dense bf16 peak);
#   4. evaluation: the ranking kernel and the whole SYSU-MM01-size evaluation
#      from features (bench/eval_bench.py);
#   5. learning: bench/learn_bench.py at its GPU preset, in the time left.
# Not measured here, said in the summary: the input pipeline's images/s
# (bench/input_bench.py needs tf.data, absent on the device) and the feature
# extraction of 9,800 rendered images (no script yet).
set -uo pipefail
cd "$(dirname "$0")/.."

WHEELS=bench/wheels
# What the device lacks (pure-Python wheels; their own dependencies, absl-py
# and PyYAML, come with orbax and flax).
NEEDED=("ml-collections==1.1.0")

if [[ "${1:-}" == "--fetch_wheels" ]]; then
  mkdir -p "$WHEELS"
  pip download --no-deps --dest "$WHEELS" "${NEEDED[@]}" || exit 1
  ls -l "$WHEELS"
  exit 0
fi

OUT="${OUT:-runs/gpu_report}"
mkdir -p "$OUT"
START=$(date +%s)
BUDGET="${GPU_REPORT_SECONDS:-470}"   # 7 min 50 s in all
left() { echo $((BUDGET - ($(date +%s) - START))); }
SUMMARY="$OUT/summary.txt"
: > "$SUMMARY"

# Official sizes on the device; a tiny twin of every part for a CPU dry run.
if [[ -n "${GPU_REPORT_CPU_DRY_RUN:-}" ]]; then
  STEP_FLAGS=(--depth=10 --feature_ids=2 --feature_instances=2 --pixel_ids=2 --pixel_instances=2
              --repeats=2 --warmup=1)
  STEPS=1
  EVAL_FLAGS=(--repeats=1 --loop_repeats=1)
  LEARN_FLAGS=(--preset=cpu --stage_iterations=2,2,2)
else
  STEP_FLAGS=(--repeats=20 --warmup=3)
  STEPS=1,2,3,agw,caj
  EVAL_FLAGS=()
  LEARN_FLAGS=(--preset=gpu)
fi

part() {  # part NAME SECONDS COMMAND...: runs it under a limit, logs, records the outcome
  local name=$1 limit=$2
  shift 2
  if ((limit < 20)); then
    echo "$name: skipped (no time left)" | tee -a "$SUMMARY"
    return
  fi
  echo "=== $name (limit ${limit}s): $*"
  local t0=$(date +%s)
  timeout "$limit" "$@" 2>&1 | tee "$OUT/$name.txt"
  local rc=${PIPESTATUS[0]}
  local outcome="ok"
  ((rc == 124)) && outcome="stopped at its ${limit}s limit"
  ((rc != 0 && rc != 124)) && outcome="failed (exit $rc)"
  echo "$name: $outcome, $(($(date +%s) - t0))s, output $OUT/$name.txt" | tee -a "$SUMMARY"
}

{
  echo "aligngan-jax GPU report, commit $(git rev-parse --short HEAD 2>/dev/null || echo '?'), $(date -u +%F)"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null \
    || echo "no nvidia-smi (CPU dry run?)"
} | tee -a "$SUMMARY"

if compgen -G "$WHEELS/*.whl" > /dev/null; then
  pip install --quiet --no-index --no-deps "$WHEELS"/*.whl
fi
if ! python -c "import ml_collections" 2> /dev/null; then
  echo "error: ml_collections is missing: run 'bash bench/gpu_report.sh --fetch_wheels' on a" \
       "machine with pip and carry bench/wheels." | tee -a "$SUMMARY"
  exit 1
fi
python -c "import jax; print('JAX', jax.__version__, jax.devices())" | tee -a "$SUMMARY"

# One compilation cache for every part: the FLOP counts and a repeated
# program read it back instead of compiling again. At the last GPU
# measurement (5644695) cold compiles took 29 / 43 / 100 s for stages 1 / 2 /
# 3, so the parts are ordered by what matters most if time runs out.
export JAX_COMPILATION_CACHE_DIR="$OUT/jax_cache"
part steps "$(( $(left) * 45 / 100 ))" python bench/train_bench.py --stages="$STEPS" \
  --dtypes=bfloat16 --calls=separate "${STEP_FLAGS[@]}"
part batched "$(( $(left) * 25 / 100 ))" python bench/train_bench.py --stages=3 \
  --dtypes=bfloat16 --calls=batched "${STEP_FLAGS[@]}"
part remat "$(( $(left) * 30 / 100 ))" python bench/train_bench.py --stages=3 \
  --dtypes=bfloat16 --calls=separate --remat=convs,blocks "${STEP_FLAGS[@]}"
part flops "$(( $(left) * 20 / 100 ))" python bench/train_bench.py --stages="$STEPS" \
  --dtypes=bfloat16 --calls=separate --compile_only "${STEP_FLAGS[@]}"
part eval "$(( $(left) * 30 / 100 ))" python bench/eval_bench.py "${EVAL_FLAGS[@]}"
part learn "$(( $(left) - 10 ))" python bench/learn_bench.py --workdir="$OUT/learn" \
  "${LEARN_FLAGS[@]}"

{
  echo "input: not measured (bench/input_bench.py needs tf.data; the device has no TensorFlow)"
  echo "feature extraction of 9,800 rendered images: not measured (no script yet)"
  echo "total: $(($(date +%s) - START))s of ${BUDGET}s"
} | tee -a "$SUMMARY"
