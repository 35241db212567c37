#!/usr/bin/env bash
# The GPU check, one prepared script for one GPU (H100/H200 class): under ten minutes (its step limits add up to
# 600 s). It has not run on a GPU yet.
#
#   1. a synthetic dataset in BTCV's folder layout (4 training cases + validation case 35, SHAPE 48 x 512 x 512);
#   2. the BTCV Swin-B paper config trained ITERS (50) iterations, --num-gpus 1, AMP on (as the config says),
#      backbone from scratch, batch BATCH (8, the paper's total); seconds per iteration and peak GPU memory
#      into $OUT/training_speed.json;
#   3. --eval-only on btcv_val with the config's click protocols;
#   4. the encoder's fast paths (TEST.S2VNET.ENCODE_DTYPE float16 / bfloat16, CHANNELS_LAST, COMPILE, batch sizes) on
#      32 slices of 512 x 512, timed and compared with float32 (tools/profile_encoder.py);
#   5. the decoder step per slice, float32 and TEST.S2VNET.DECODE_DTYPE float16 / bfloat16 against the reference
#      path (tools/profile_decoder.py, 192 and 512, 8 slices);
#   6. the speed benchmark (projects/S2VNet/benchmark.py) on a real 512 x 512 CT and a 512 x 512 x 200 volume.
#
# The GPU machine reaches no package registry, so what its PyTorch image lacks travels as wheels:
#   here, once:   make gpu-wheels           # cp312 wheels + the benchmark CTs
#   on the GPU:   bash projects/S2VNet/gpu_bench.sh     (carry: .cache/gpu_wheels datasets/benchmark)
# Each step has its own time limit and log in $OUT; a failed step is recorded in $OUT/summary.txt and the
# next one still runs. Big files (checkpoints, slice cache) stay in a temporary folder.
set -uo pipefail
cd "$(dirname "$0")/../.."
PY=${PYTHON:-python3}
OUT=${OUT:-output/gpu_bench}
ITERS=${ITERS:-50}
BATCH=${BATCH:-8}
SHAPE=${SHAPE:-48 512 512}   # z y x of the synthetic volumes
WORK=$(mktemp -d)
mkdir -p "$OUT"
: > "$OUT/summary.txt"

step() {  # step NAME SECONDS COMMAND...: run with a time limit, log to $OUT/NAME.log, record the outcome
  local name=$1 limit=$2 start=$SECONDS
  shift 2
  timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
  local code=$?
  echo "$name: exit $code after $((SECONDS - start)) s" | tee -a "$OUT/summary.txt"
  return $code
}

step install 60 bash -c "'$PY' -m pip install --no-index --no-deps .cache/gpu_wheels/*.whl && \
  '$PY' -m pip install --no-index --no-deps --no-build-isolation -e ."
nvidia-smi --query-gpu=name,memory.total --format=csv | tee "$OUT/gpu.txt"

export DETECTRON2_DATASETS="$WORK/datasets"
step data 30 "$PY" projects/S2VNet/reproduce.py synthetic-data btcv --root "$DETECTRON2_DATASETS" \
  --train 4 --val 1 --shape $SHAPE
COMMON=(--config-file configs/btcv/s2vnet_swinb.yaml --num-gpus 1 MODEL.SWIN_TIMM.PRETRAINED scratch
        INPUT.VOLUME.CACHE_DIR "$WORK/cache" OUTPUT_DIR "$WORK/btcv")

if step train 180 "$PY" train_net.py "${COMMON[@]}" SOLVER.MAX_ITER "$ITERS" SOLVER.IMS_PER_BATCH "$BATCH" \
     SOLVER.CHECKPOINT_PERIOD 100000 DATASETS.TEST "()"; then
  "$PY" projects/S2VNet/reproduce.py training-speed "$WORK/btcv" | tee -a "$OUT/summary.txt"
  cp "$WORK/btcv/training_speed.json" "$OUT/"
  step eval 100 "$PY" train_net.py "${COMMON[@]}" --eval-only MODEL.WEIGHTS "$WORK/btcv/model_final.pth"
  cp "$WORK/btcv/inference/btcv_val/metrics.json" "$OUT/eval_metrics.json" 2>/dev/null
fi
cp "$WORK/btcv/log.txt" "$OUT/train_log.txt" 2>/dev/null

step encoder 60 "$PY" tools/profile_encoder.py --device cuda --config-file configs/btcv/s2vnet_swinb.yaml \
  --size 512 --slices 32 --variants float32 float16 bfloat16 channels-last "bfloat16 + channels-last" compile \
  --batch-sizes 8 32 --output "$OUT/encoder_gpu.json"
for dtype in float32 float16 bfloat16; do
  step "decoder_$dtype" 20 "$PY" tools/profile_decoder.py --device cuda --config-file configs/btcv/s2vnet_swinb.yaml \
    --size 192 512 --slices 8 --output "$OUT/decoder_gpu_$dtype.json" TEST.S2VNET.DECODE_DTYPE "$dtype"
done
# every method but the compiled one, whose compilation would not fit this step's limit
step benchmark 110 "$PY" projects/S2VNet/benchmark.py --device cuda --volumes lung1 --synthetic-depth 200 \
  --full-3d --repeats 2 --data-dir datasets/benchmark --output "$OUT/benchmark_gpu.json" \
  --methods s2vnet:demo naive:demo s2vnet:swinb naive:swinb s2vnet:swinb-bf16 swinunetr unetr unet3d
rm -rf "$WORK"
cat "$OUT/summary.txt"
