#!/usr/bin/env bash
# The GPU checks of issue 20 in one run (about 8 minutes on one H200): the CUDA tests
# (fused SE against eager in bf16, the fused SE inside the captured step, the packed grid
# against points trained alone, nvJPEG against the CPU decoder), then the benchmark rows
# (fused SE, packed grid, input stages). Tables go to $OUT (or ./device-check).
#   bash benchmarks/device_check.sh [imagenet-sample.tar.gz]
set -u
cd "$(dirname "$0")/.."
out="${OUT:-device-check}"
mkdir -p "$out"
py="${PYTHON:-python}"
export PYTHONPATH="$PWD"
"$py" -m pytest -q -n0 -rs -p no:cacheprovider tests/test_fused_se.py tests/test_data_decode.py \
    tests/test_packed_grid.py -k "cuda or nvjpeg or captured" 2>&1 | tee "$out/cuda-tests.txt"
input=()
if [ "${1:-}" != "" ] && [ -f "$1" ]; then
    # The issue's input set: 20 copies of each sample image as a train/ tree, val/ as is.
    tree="$(mktemp -d)"
    tar xzf "$1" -C "$tree"
    src="$(find "$tree" -mindepth 1 -maxdepth 1 -type d | head -1)"
    for copy in $(seq 1 20); do
        find "$src/val" -name '*.JPEG' | while read -r f; do
            d="$src/train/$(basename "$(dirname "$f")")"
            mkdir -p "$d" && cp "$f" "$d/c${copy}_$(basename "$f")"
        done
    done
    input=(--input-root "$src" --input-images 2000)
fi
BENCH_GPU_JSON="$out/bench.json" timeout 420 "$py" benchmarks/bench_gpu.py --device cuda \
    --models resnet110,se_resnet110,resnet50,se_resnet50 --no-timm --k 8 \
    --paths graphs,packed,packed-grid,fused-se,fused-block "${input[@]}" \
    2> "$out/bench.err" | tee "$out/bench.md"
