#!/usr/bin/env bash
# The GPU recipe (scripts/gpu_train.py): OUT=DIR bash scripts/gpu_train.sh writes DIR/model and
# DIR/report.json; SMOKE=1 runs the same recipe on CPU with a tiny config in a few minutes.
# Extra arguments go to gpu_train.py (e.g. --minutes 6).
set -euo pipefail
: "${OUT:?set OUT=DIR, the folder for the run and the model}"
cd "$(dirname "$0")/.."
python - <<'PY'
import torch
print(f"torch {torch.__version__}, cuda {torch.cuda.is_available()}"
      + (f" ({torch.cuda.get_device_name(0)})" if torch.cuda.is_available() else ""), flush=True)
PY
if [[ "${SMOKE:-0}" == "1" ]]; then
  python scripts/gpu_train.py --out "$OUT" --smoke --steps "${STEPS:-12}" "$@"
else
  python scripts/gpu_train.py --out "$OUT" "$@"
fi
# The summarize extractor reads this backbone's sentence vectors, so it is trained on them (full run only).
if [[ "${SMOKE:-0}" != "1" && -f scripts/train_extractor.py ]]; then
  python scripts/train_extractor.py --backbone "$OUT/model"
fi
