#!/usr/bin/env bash
# make bench-train: the training benchmarks recorded in BENCHMARKS.md, run through the
# training image on the default data (make data). Results: $BENCH_DIR/*.json.
#  1. pipeline efficiency: full training step images/s over the same step on an in-memory batch
#  2. accuracy: Fashion-MNIST test accuracy of one training job sized for a 10-minute CPU budget
set -euo pipefail
IMAGE=${TRAINING_IMAGE:-byoc-training:latest}
DATA=$(realpath "${DATA_DIR:-data/fashion-mnist}")
OUT=${BENCH_DIR:-bench-results}
# The best recipe so far for a 10-minute job on 2 CPU cores (BENCHMARKS.md).
HYPERPARAMETERS=${BENCH_TRAIN_HYPERPARAMETERS:-'{"model": "small_cnn", "epochs": 8, "batch_size": 256, "lr": 0.1, "crop_padding": 1, "warmup_epochs": 0.3, "weight_decay": 0.0002, "hflip": false}'}
mkdir -p "$OUT"

echo "== pipeline efficiency ($IMAGE, $(nproc) cores)"
docker run --rm --network none --shm-size 1g -v "$DATA/train:/data/train:ro" "$IMAGE" \
  python -m byoc.training.benchmark --train /data/train | tee "$OUT/train-pipeline.json"

echo "== accuracy within a 10-minute CPU budget: $HYPERPARAMETERS"
job=$(mktemp -d)
trap 'rm -rf "$job"' EXIT
mkdir -p "$job/config" "$job/model" "$job/output"
cp containers/local/config/{inputdataconfig,resourceconfig}.json "$job/config/"
"${PYTHON:-.venv/bin/python}" -m byoc.contract hyperparameters "$HYPERPARAMETERS" >"$job/config/hyperparameters.json"
start=$(date +%s.%N)
docker run --rm --network none --shm-size 1g \
  -v "$job/config:/opt/ml/input/config:ro" -v "$DATA/train:/opt/ml/input/data/train:ro" \
  -v "$DATA/valid:/opt/ml/input/data/valid:ro" -v "$DATA/test:/opt/ml/input/data/test:ro" \
  -v "$job/model:/opt/ml/model" -v "$job/output:/opt/ml/output" "$IMAGE" train >"$OUT/train-accuracy.log" 2>&1
end=$(date +%s.%N)
python3 - "$job/output/data/metrics.json" "$start" "$end" "$HYPERPARAMETERS" <<'PY' | tee "$OUT/train-accuracy.json"
import json, sys
metrics = json.load(open(sys.argv[1]))
print(json.dumps({"hyperparameters": json.loads(sys.argv[4]), "wall_seconds": round(float(sys.argv[3]) - float(sys.argv[2]), 1),
                  "test_acc": round(metrics["test_acc"], 4), "epochs": len(metrics["epochs"]),
                  "train_images_per_sec": [round(e["images_per_sec"]) for e in metrics["epochs"]]}))
PY
