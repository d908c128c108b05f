#!/usr/bin/env bash
# Every GPU figure the issues ask for, in one prepared run on a lent H100/H200 (about 7 minutes in all):
#   throughput  bench/train_throughput.py --compile: official-style fp32 baseline vs our fast path, B=32, 256x256
#   restore     bench/bench_restore.py --device cuda: 1024x1024 in bf16 (target <= 20 ms)
#   degrade     bench/bench_degrade.py --device cuda: torch twins on a batch (target >= 5,000 samples/s)
#   check       bench/gpu_check.py: 200 s of on-the-fly training, noise/blur/low light, vs the official 200 s result
#
# The GPU machine has PyTorch but not the sentence encoder's wheel, so the request embeddings travel with the tree:
# run `bash bench/gpu_checks.sh prepare` here first (fills .gpu-cache/, git-ignored, about 11 MB), then on the GPU
# machine carry .gpu-cache and run `bash bench/gpu_checks.sh` (or name parts: `bash bench/gpu_checks.sh check`).
# Output: log.txt, status.txt (a line "PART exit CODE" per step) and each step's JSON under $OUT (the device
# tool's folder) or bench/results/gpu/; the exit status is non-zero when a step failed.
# GPU_CACHE: another folder for the request embeddings than .gpu-cache/.
# SMOKE=1 runs every step at toy sizes on the CPU, to test this script without a GPU.
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-bench/results/gpu}"
mkdir -p "$out"
rm -f "$out/log.txt" "$out/status.txt"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 BENCH_RESULTS="$out"
export INSTRUCTIR_CACHE="${GPU_CACHE:-$PWD/.gpu-cache}"
parts=("$@")
[ ${#parts[@]} -eq 0 ] && parts=(throughput restore degrade check)
for part in "${parts[@]}"; do
    case "$part" in
    prepare | throughput | restore | degrade | check) ;;
    *) echo "unknown part '$part': use prepare, throughput, restore, degrade or check" >&2 && exit 2 ;;
    esac
done

if [ "${SMOKE:-0}" = 1 ]; then
    throughput=(--device cpu --batch 2 --patch 32 --steps 2 --warmup 1)
    restore=(--device cpu --repeats 1)
    degrade=(--device cpu --samples-per-task 5 --batch 4 --repeats 1)
    check=(--device cpu --seconds 5 --batch 3 --patch 32 --width 8 --no-compile)
else
    throughput=(--device cuda --compile)
    restore=(--device cuda)
    degrade=(--device cuda --samples-per-task 50)
    check=(--device cuda)
fi

step() {
    local name=$1 limit=$2 script=$3
    shift 3
    echo "== $name: python3 $script $*" | tee -a "$out/log.txt"
    timeout "$limit" python3 "$script" "$@" 2>&1 | tee -a "$out/log.txt"
    local code=${PIPESTATUS[0]}
    echo "$name exit $code" | tee -a "$out/status.txt"
}

for part in "${parts[@]}"; do
    case "$part" in
    prepare) step prepare 300 bench/gpu_check.py --device cpu --prepare ;;
    throughput) step throughput 240 bench/train_throughput.py "${throughput[@]}" ;;
    restore) step restore 120 bench/bench_restore.py "${restore[@]}" ;;
    degrade) step degrade 90 bench/bench_degrade.py "${degrade[@]}" ;;
    check) step check 330 bench/gpu_check.py "${check[@]}" ;;
    esac
done
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "no GPU"; } |
    tee -a "$out/log.txt"
! grep -qv " exit 0$" "$out/status.txt" 2>/dev/null
