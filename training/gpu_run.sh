#!/usr/bin/env bash
# The prepared script for a lent GPU machine (device tool): smoke test, train, score.
#   Here:  make gpu-data    (packs data/prepared into .gpu/, which `carry` sends along)
#   There: bash training/gpu_run.sh [MINUTES]
# Checkpoints land in $OUT as they improve (fp16), so a run cut short still returns weights.
set -euo pipefail
MINUTES=${1:-7}
OUT=${OUT:-/tmp/out}
DATA=${GPU_DATA:-.gpu/prepared}
INIT=${INIT-models/release/checkpoint.pt}  # the newest weights; INIT= starts from scratch
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD TQDM_MININTERVAL=20
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true

echo "== smoke test: CUDA, bf16 autocast, one training step"
[ -n "${SKIP_SMOKE:-}" ] || timeout 60 python3 - <<'PY'
import torch
from training.model import ModelConfig, Recognizer
assert torch.cuda.is_available(), "no CUDA device"
m = Recognizer(ModelConfig(vocab_size=115)).cuda()
x = torch.rand(8, 1, 96, 512, device="cuda")
y = torch.randint(4, 115, (8, 20), device="cuda")
with torch.autocast("cuda", dtype=torch.bfloat16):
    loss = m(x, y).float().logsumexp(-1).mean()
loss.backward()
print("smoke ok:", torch.__version__, torch.cuda.get_device_name(), float(loss))
PY

echo "== train for $MINUTES minutes"
# From trained weights BatchNorm stays on their running statistics (a fixed affine map), so
# that padded, size-bucketed batches normalise as serving does from the first step.
FREEZE=$([ -n "$INIT" ] && echo true || echo false)
python3 -m training.train --data "$DATA" --out /tmp/run --no-resume --mirror "$OUT" \
  --set train.overrides={} --set train.preset=gpu --set train.max_minutes="$MINUTES" \
  --set train.init="$INIT" --set train.freeze_batchnorm="$FREEZE" \
  ${EXTRA_SET:-} \
  2>&1 | tee "$OUT/train.log"
cp /tmp/run/log.jsonl "$OUT/" 2>/dev/null || true

echo "== score the best checkpoint on CROHME 2013 and 2014"
python3 -m training.score_checkpoint "$OUT/best_fp16.pt" --data "$DATA" --beams ${BEAMS:-1 5} \
  --json "$OUT/scores.json"
