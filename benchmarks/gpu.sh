#!/usr/bin/env bash
# The GPU check, ready to run on a machine with one or more CUDA devices: at most about 8 minutes
# on one GPU; prints one JSON document (progress on stderr). Measured side by side in each part:
#   epochs      binary Fashion-MNIST epoch table on the GPU: lrexp (trainer=gpu) against the raw
#               loop over tensors already on the device (throughput.py --accelerator gpu)
#   ten_classes the same, all ten classes (softmax)
#   probe       a generated linear probe (PROBE_ROWS x PROBE_FEATURES, PROBE_CLASSES classes):
#               lrexp's lbfgs on the GPU against scikit-learn's LogisticRegression on the CPU,
#               test accuracy and fit time (probe.py)
#   ddp         with two or more devices: the probe's sgd run under trainer=ddp (2 processes)
# Usage: FASHION_DIR=/path/with/the/idx/gz bash benchmarks/gpu.sh > gpu.json
# (FASHION_DIR: a folder holding Fashion-MNIST's four .gz files, e.g. a copy of Debian's
# /usr/share/datasets/fashion-mnist; without it the two epoch tables are left out.)
set -euo pipefail
cd "$(dirname "$0")"
export PYTHONPATH="$PWD/../src${PYTHONPATH:+:$PYTHONPATH}"
python=${PYTHON:-python3}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
devices=$("$python" -c "import torch; print(torch.cuda.device_count())")
[ "$devices" -ge 1 ] || { echo "gpu.sh: no CUDA device" >&2; exit 2; }

if [ -n "${FASHION_DIR:-}" ]; then
  data="$out/data"
  mkdir -p "$data/FashionMNIST/raw"
  for f in "$FASHION_DIR"/*-ubyte.gz; do gunzip -c "$f" >"$data/FashionMNIST/raw/$(basename "${f%.gz}")"; done
  timeout 150 "$python" throughput.py --accelerator gpu --repeats 3 --data-dir "$data" >"$out/epochs.json"
  timeout 120 "$python" throughput.py --accelerator gpu --classes all --repeats 3 --data-dir "$data" >"$out/ten_classes.json"
fi
timeout 180 "$python" probe.py --rows "${PROBE_ROWS:-200000}" --features "${PROBE_FEATURES:-512}" \
  --classes "${PROBE_CLASSES:-100}" --config "lbfgs_gpu=model.optimizer=lbfgs,trainer=gpu" >"$out/probe.json"
if [ "$devices" -ge 2 ]; then
  timeout 120 "$python" probe.py --rows 100000 --features 256 --classes 50 \
    --config "ddp=model.optimizer=sgd,trainer=ddp,trainer.devices=2" >"$out/ddp.json"
fi
"$python" - "$out" <<'EOF'
import json, sys
from pathlib import Path
parts = {p.stem: json.loads(p.read_text()) for p in sorted(Path(sys.argv[1]).glob("*.json"))}
print(json.dumps(parts, indent=2))
EOF
