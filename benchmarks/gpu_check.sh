#!/usr/bin/env bash
# The GPU check: on a machine with a CUDA GPU, run
#   1. the CUDA-marked tests (fp16 edits, model CPU offload, the history's pinned copies,
#      inversion in fp16): pytest -m cuda;
#   2. stock against edit against the explicit baseline at 512², SD v1.5's architecture, fp16
#      (benchmarks/gpu_edit.py);
#   3. null-text inversion plus an edit at 512² on SD v1.5's architecture in fp16, timed
#      (benchmarks/inversion.py --model sd15-random --timing-only), and the built-in model's
#      inversion benchmark in fp16 on the GPU (PSNRs, colour swaps);
# and write one JSON with all of it.
#
#   bash benchmarks/gpu_check.sh                 # writes benchmarks/results/gpu-check-<date>.json
#   bash benchmarks/gpu_check.sh --out FILE.json
#   bash benchmarks/gpu_check.sh --dry-run       # list the commands, run nothing
#
# PYTHON picks the interpreter (default: python). A part that fails is recorded as failed in the
# JSON and the others still run; the exit status is 1 if any part failed.
set -uo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-python}
dry_run=0
out="benchmarks/results/gpu-check-$(date -u +%Y-%m-%dT%H%M).json"
while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) dry_run=1 ;;
    --out) out="$2"; shift ;;
    -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
    *) echo "gpu_check.sh: unknown argument $1 (use --dry-run, --out FILE)" >&2; exit 2 ;;
  esac
  shift
done

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

parts=(cuda_tests edit_512_fp16 inversion_512_fp16 inversion_builtin_gpu)
declare -A commands=(
  [cuda_tests]="$python -m pytest -m cuda tests -q --junitxml=$work/cuda_tests.xml"
  [edit_512_fp16]="$python benchmarks/gpu_edit.py --out $work/edit_512_fp16.json"
  [inversion_512_fp16]="$python benchmarks/inversion.py --model sd15-random --device cuda --timing-only --threads 4 --out $work/inversion_512_fp16"
  [inversion_builtin_gpu]="$python benchmarks/inversion.py --device cuda --drawings 8 --swaps 8 --threads 4 --out $work/inversion_builtin_gpu"
)

if [ "$dry_run" -eq 1 ]; then
  for part in "${parts[@]}"; do echo "${commands[$part]}"; done
  echo "$python benchmarks/gpu_merge.py $work $out ${parts[*]}"
  exit 0
fi

if ! $python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  echo "gpu_check.sh: no CUDA GPU here (torch.cuda.is_available() is False); nothing run." >&2
  echo "  On a CPU machine run the ordinary tests and benchmarks instead." >&2
  exit 3
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader > "$work/gpu.txt" 2>/dev/null || true

failed=0
for part in "${parts[@]}"; do
  echo "== $part: ${commands[$part]}"
  start=$(date +%s)
  ${commands[$part]} 2>&1 | tee "$work/$part.log"
  status=${PIPESTATUS[0]}
  echo "$status $(( $(date +%s) - start ))" > "$work/$part.status"
  [ "$status" -eq 0 ] || failed=1
done

$python benchmarks/gpu_merge.py "$work" "$out" "${parts[@]}"
exit "$failed"
