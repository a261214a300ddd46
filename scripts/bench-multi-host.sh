#!/usr/bin/env bash
# make bench-multi-host: training images/s of one job on 1 host (docker compose up train) and on
# 2 hosts (docker compose --profile multi up algo-1 algo-2), same global batch, default data.
# On one machine the two "hosts" share its cores: this measures the DDP machinery, not scaling.
# Results: $BENCH_DIR/multi-host.json.
set -euo pipefail
cd "$(dirname "$0")/.."
export TRAINING_IMAGE=${TRAINING_IMAGE:-byoc-training:latest}
export DATA_DIR=$(realpath "${DATA_DIR:-data/fashion-mnist}")
OUT=$(realpath -m "${BENCH_DIR:-bench-results}")
HYPERPARAMETERS=${BENCH_MULTI_HYPERPARAMETERS:-'{"model": "small_cnn", "epochs": 1, "batch_size": 128, "workers": 1}'}
mkdir -p "$OUT"
job=$(mktemp -d)
project=byoc-bench-$$
trap 'docker compose -p $project --profile multi down --remove-orphans >/dev/null 2>&1; rm -rf "$job"' EXIT
mkdir -p "$job/config"
cp containers/local/config/{inputdataconfig,resourceconfig}.json "$job/config/"
"${PYTHON:-.venv/bin/python}" -m byoc.contract hyperparameters "$HYPERPARAMETERS" >"$job/config/hyperparameters.json"
export CONFIG_DIR=$job/config OPT_ML_DIR=$job/opt_ml

run() {  # name, compose arguments...
  local name=$1; shift
  echo "== $name: $HYPERPARAMETERS ($(nproc) cores)"
  start=$(date +%s.%N)
  docker compose -p "$project" "$@" >"$OUT/multi-host-$name.log" 2>&1
  echo "$name $(python3 -c "import time; print(round(time.time() - $start, 1))")" >>"$job/walls"
}
run one-host up --exit-code-from train train
mv "$job/opt_ml" "$job/one-host"
run two-hosts --profile multi up algo-1 algo-2
python3 - "$job" "$HYPERPARAMETERS" <<'PY' | tee "$OUT/multi-host.json"
import json, sys
from pathlib import Path
job = Path(sys.argv[1])
walls = dict(line.split() for line in (job / "walls").read_text().splitlines())
result = {"hyperparameters": json.loads(sys.argv[2])}
for name, metrics in (("one-host", job / "one-host/output/data/metrics.json"),
                      ("two-hosts", job / "opt_ml/algo-1/output/data/metrics.json")):
    m = json.loads(metrics.read_text())
    result[name] = {"train_images_per_sec": [round(e["images_per_sec"]) for e in m["epochs"]],
                    "test_acc": round(m["test_acc"], 4), "wall_seconds": float(walls[name])}
print(json.dumps(result))
PY
