#!/usr/bin/env bash
# The prepared script for a lent GPU machine (device tool): smoke test, train, export, score.
#   Here:  make gpu-data    (packs data/prepared into .gpu/ and the wheels the machine's
#                            image lacks into .whl/: `carry: [".gpu", ".whl"]` sends both)
#   There: bash training/gpu_run.sh [MINUTES]
# A device call lasts at most 10 minutes and a lease 15, so a run of MINUTES may take two
# calls: the first is cut by its timeout (`timeout 585 bash training/gpu_run.sh 10`), the
# second resumes the same schedule from runs/gpu/last.pt (saved at every validation, kept on
# the warm machine), trains what is left, then exports and scores. $OUT brings back 8 files
# at most, so the package stays in $RUN: the weights, logs and scores come back.
#
# The recipe: params.yaml's model (the Transformer decoder) on the gpu preset's schedule,
# bf16 autocast, batches of up to 128 inputs under 4 M pixels from 12 loader workers, both
# reading directions, stroke augmentation on half of the inputs (a lease gives the model
# tens of epochs, where it would otherwise learn its training set by heart), the whole model
# training at a peak of 5e-4 (the preset's 2e-3 is for a model from scratch) with BatchNorm
# on its statistics, 40% of the inputs read as images (rendered, degraded and preprocessed
# as an upload is: training/photo.py). Teacher forcing runs every token of the Transformer at
# once, not a launch per token. Not compiled: every batch has another size (inputs are
# bucketed, not resized), and compiled graphs and CUDA graphs are per shape. Measured on an
# H200 (sessions 11-12): 150-270 inputs a second, 3 steps; the loader's share of a step (the
# log's `wait`) 4%, peak memory 34.5 of 141 GB. The first 20 steps after warm-up are profiled
# (the log's "profile of 20 training steps": how busy the kernels kept the card).
# It starts from the newest committed weights (INIT): a lease trains for minutes, where the
# field trains a Transformer decoder from scratch for 200-300 epochs (BTTR, CoMER).
# Checkpoints land in $OUT as they improve (fp16), so a run cut short still returns weights.
set -euo pipefail
MINUTES=${1:-11}
OUT=${OUT:-/tmp/out}
DATA=${GPU_DATA:-.gpu/prepared}
RUN=${RUN_DIR:-runs/gpu}
INIT=${INIT-models/lineage/session12-cpu-photo.pt}  # the newest weights; INIT= from scratch
mkdir -p "$OUT" "$RUN"
# The image's Python has torch, onnx and onnxruntime but not all of the core's needs.
python3 -c "import defusedxml" 2>/dev/null || {
  python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site
}
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} TQDM_MININTERVAL=20
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true

echo "== smoke test: CUDA, bf16 autocast, one training step"
[ -n "${SKIP_SMOKE:-}" ] || timeout 60 python3 - <<'PY'
import torch
from training.model import ModelConfig, Recognizer
assert torch.cuda.is_available(), "no CUDA device"
m = Recognizer(ModelConfig(vocab_size=115, decoder="transformer")).cuda()
x = torch.rand(8, 1, 96, 512, device="cuda")
y = torch.randint(4, 115, (8, 20), device="cuda")
with torch.autocast("cuda", dtype=torch.bfloat16):
    loss = m(x, y).float().logsumexp(-1).mean()
loss.backward()
print("smoke ok:", torch.__version__, torch.cuda.get_device_name(), float(loss))
PY

# DataLoader workers hand batches over in shared memory: a small /dev/shm fails the run.
df -h /dev/shm || true
[ "$(df --output=avail -k /dev/shm 2>/dev/null | tail -1)" -gt 16000000 ] 2>/dev/null \
  || mount -o remount,size=32G /dev/shm 2>/dev/null || true

echo "== train for $MINUTES minutes in all (resumes $RUN/last.pt if a first call was cut)"
# From trained weights BatchNorm stays on their running statistics (a fixed affine map), so
# that padded, size-bucketed batches normalise as serving does from the first step.
FREEZE=$([ -n "$INIT" ] && echo true || echo false)
# The preset's peak is for a model from scratch; weights that a lease already trained
# continue at a quarter of it (session 11's 1e-3 cost 9 points of validation for minutes).
LR=${LR:-$([ -n "$INIT" ] && echo 0.0005 || echo 0.002)}
python3 -m training.train --data "$DATA" --out "$RUN" --mirror "$OUT" \
  --set train.overrides={} --set train.preset=gpu --set train.max_minutes="$MINUTES" \
  --set train.init="$INIT" --set train.freeze_batchnorm="$FREEZE" \
  --set train.lr="$LR" --set train.bidirectional=true --set train.augment_prob=0.5 \
  --set train.photo_prob="${PHOTO_PROB:-0.4}" --set train.profile_steps=20 \
  ${EXTRA_SET:-} \
  2>&1 | tee -a "$OUT/train.log"
cp "$RUN/log.jsonl" "$OUT/" 2>/dev/null || true
# A second call's $OUT is new: the run's best (perhaps from the first call) goes there too.
python3 - "$RUN/best.pt" "$OUT/best_fp16.pt" <<'PY'
import sys
from pathlib import Path
from training.checkpoint import load_checkpoint, save_checkpoint
model, vocab, pre, payload = load_checkpoint(Path(sys.argv[1]))
kept = {k: payload[k] for k in ("metrics", "train_config", "init") if k in payload}
save_checkpoint(Path(sys.argv[2]), model, vocab, pre, half=True, **kept)
PY

echo "== export the best checkpoint (the export checks itself against PyTorch)"
python3 -m model_export.export "$OUT/best_fp16.pt" "$RUN/package" --samples "$DATA" \
  2>&1 | tee "$OUT/export.log"

echo "== score the best checkpoint on CROHME 2013 and 2014"
python3 -m training.score_checkpoint "$OUT/best_fp16.pt" --data "$DATA" --beams ${BEAMS:-1 5} \
  --json "$OUT/scores.json"
