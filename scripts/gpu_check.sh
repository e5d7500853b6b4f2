#!/usr/bin/env bash
# The one command for the day a GPU is lent: everything that only a GPU can show, in one run.
# Needs the repository and what a GPU image has (PyTorch with CUDA, torchvision, nvcc); uses TensorRT,
# onnxruntime-gpu and compute-sanitizer where present and says so where not. No network, no pip.
#
#     bash scripts/gpu_check.sh             # run (OUT=dir for the results; default build/gpu_check_out)
#     bash scripts/gpu_check.sh --dry-run   # list every step, and why it would be skipped on this machine
#
# Steps (each with a time limit; the whole run stays within SEGRT_GPU_CHECK_BUDGET_S, default 450 s,
# and a step that no longer fits is skipped and named):
#  1. build libsegrt_roi_align_{cpu,cuda}.so for this GPU (cmake; plain nvcc/g++ without cmake)
#  2. RoIAlign CUDA kernels vs torchvision on the GPU, fp32 + fp16 (pytest -m gpu)
#  3. compute-sanitizer memcheck / racecheck / initcheck on tests/kernels/cuda_sanitize_driver.cu
#  4. ONNX Runtime's CUDA execution provider vs its CPU results, U-Net and Mask R-CNN (gpu_check_models.py ort)
#  5. PyTorch GPU baselines for the benchmark table (scripts/gpu_baseline.py)
#  6. where `import tensorrt` works: pytest -m tensorrt, then engine builds for both models, parity with
#     ONNX Runtime on the CPU and `segrt bench model` rows (gpu_check_models.py trt)
#  7. RoIAlign timings vs torchvision (benchmarks/roi_align_bench.py)
# Prints one summary table and writes $OUT/gpu_check.json (+ logs and the steps' JSON).
# Exit status: 0 when no step failed (skips are listed, never silent).
#
# `segrt` is imported from an installed package if there is one, else from this checkout through
# scripts/bootstrap/sitecustomize.py (sdk/ is `segrt`, export/ is `segrt.export`; PYTHONPATH=repo is not enough).
set -uo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
DRY_RUN=0
[ "${1:-}" = "--dry-run" ] && DRY_RUN=1
OUT_DIR=${OUT:-$REPO/build/gpu_check_out}
BUILD=$REPO/build/gpu_check
PY=${PYTHON:-python3}
BUDGET=${SEGRT_GPU_CHECK_BUDGET_S:-450}
mkdir -p "$OUT_DIR" "$BUILD"
[ $DRY_RUN = 1 ] || exec > >(tee "$OUT_DIR/gpu_check.log") 2>&1

# ---------------------------------------------------------------- what this machine has
NVCC=$(command -v nvcc || { [ -x /usr/local/cuda/bin/nvcc ] && echo /usr/local/cuda/bin/nvcc; } || true)
SANITIZER=""
for candidate in "$(command -v compute-sanitizer)" ${NVCC:+"$(dirname "$(readlink -f "$NVCC")")/compute-sanitizer"} \
    /usr/local/cuda/bin/compute-sanitizer /usr/local/cuda/compute-sanitizer/compute-sanitizer; do
    if [ -n "$candidate" ] && [ -x "$candidate" ]; then SANITIZER=$candidate; break; fi
done
if ! "$PY" -c "import segrt" 2>/dev/null; then
    export PYTHONPATH=$REPO/scripts/bootstrap${PYTHONPATH:+:$PYTHONPATH}
fi
probe() { "$PY" -c "$1" 2>/dev/null; }
SEGRT_OK=$(probe "import segrt; print(1)" || echo 0)
SEGRT_FROM=$(probe "import segrt; print(segrt.__file__)" || echo "not importable")
TORCH_CUDA=$(probe "import torch; print(int(torch.cuda.is_available()))" || echo 0)
TORCHVISION=$(probe "import torchvision; print(1)" || echo 0)
PYTEST=$(probe "import pytest; print(1)" || echo 0)
ORT_CUDA=$(probe "import onnxruntime as o; print(int('CUDAExecutionProvider' in o.get_available_providers()))" || echo 0)
TRT=$(probe "import tensorrt; print(tensorrt.__version__)" || echo "")
CUDA_PYTHON=$(probe "from cuda.bindings import runtime; print(1)" || echo 0)
ARCH=$(probe "import torch; print('%d%d' % torch.cuda.get_device_capability())" || echo 90)
JOBS=$(nproc 2>/dev/null || echo 4)

# why_not NEED...: every missing requirement, in words, joined by "; " (empty when all are there)
why_not() {
    local missing=()
    for need in "$@"; do
        case $need in
            gpu) [ "$TORCH_CUDA" = 1 ] || missing+=("torch sees no CUDA GPU") ;;
            nvcc) [ -n "$NVCC" ] || missing+=("nvcc not found (PATH, /usr/local/cuda/bin)") ;;
            sanitizer) [ -n "$SANITIZER" ] || missing+=("compute-sanitizer not found (PATH, next to nvcc)") ;;
            segrt) [ "$SEGRT_OK" = 1 ] || missing+=("segrt does not import (installed or via scripts/bootstrap)") ;;
            torchvision) [ "$TORCHVISION" = 1 ] || missing+=("torchvision is not installed") ;;
            pytest) [ "$PYTEST" = 1 ] || missing+=("pytest is not installed") ;;
            ort_cuda) [ "$ORT_CUDA" = 1 ] || missing+=("onnxruntime has no CUDAExecutionProvider (onnxruntime-gpu)") ;;
            tensorrt) [ -n "$TRT" ] || missing+=("import tensorrt fails (TensorRT's Python package is not installed)") ;;
            cuda_python) [ "$CUDA_PYTHON" = 1 ] || missing+=("cuda-python (cuda.bindings) is not installed") ;;
            built) [ -f "$BUILD/libsegrt_roi_align_cuda.so" ] || [ $DRY_RUN = 1 ] ||
                missing+=("the CUDA library was not built (step 1)") ;;
            driver) [ -x "$BUILD/cuda_sanitize_driver" ] || [ $DRY_RUN = 1 ] || missing+=("the sanitizer driver was not built") ;;
        esac
    done
    local IFS=";"
    echo "${missing[*]}" | sed 's/;/; /g'
}

STEPS=()
START=$SECONDS
# step NAME LIMIT_S "NEED ..." COMMAND...: run it within the limit and what is left of the budget, or skip it and say why
step() {
    local name=$1 limit=$2 needs=$3
    shift 3
    local reason
    reason=$(why_not $needs)
    local left=$((BUDGET - (SECONDS - START)))
    if [ -z "$reason" ] && [ $DRY_RUN = 0 ] && [ $left -lt 15 ]; then
        reason="time budget of ${BUDGET}s spent"
    fi
    if [ $DRY_RUN = 1 ]; then
        if [ -n "$reason" ]; then
            printf '%-48s %-5s skip: %s\n' "$name" "${limit}s" "$reason"
            STEPS+=("$name|skip|0|$reason")
        else
            printf '%-48s %-5s would run: %s\n' "$name" "${limit}s" "$*"
            STEPS+=("$name|run|0|")
        fi
        return 0
    fi
    if [ -n "$reason" ]; then
        echo "=== $name: SKIP ($reason)"
        STEPS+=("$name|skip|0|$reason")
        return 0
    fi
    [ "$limit" -gt "$left" ] && limit=$left
    echo
    echo "=== $name (limit ${limit}s)"
    local t0=$SECONDS
    timeout "$limit" "$@"
    local rc=$?
    local dt=$((SECONDS - t0))
    local note=""
    [ $rc -eq 124 ] && note="timed out after ${limit}s"
    echo "=== $name: $([ $rc -eq 0 ] && echo PASS || echo "FAIL rc=$rc") (${dt}s)"
    STEPS+=("$name|$rc|$dt|$note")
}

echo "GPU check: $(date -u +%FT%TZ) repo=$REPO out=$OUT_DIR budget=${BUDGET}s$([ $DRY_RUN = 1 ] && echo ' (dry run: nothing is executed)')"
echo "segrt: $SEGRT_FROM${PYTHONPATH:+ (PYTHONPATH=$PYTHONPATH)}"
echo "found: gpu=$TORCH_CUDA sm_$ARCH nvcc=${NVCC:-none} compute-sanitizer=${SANITIZER:-none} segrt=$SEGRT_OK" \
     "torchvision=$TORCHVISION pytest=$PYTEST onnxruntime-cuda=$ORT_CUDA tensorrt=${TRT:-none} cuda-python=$CUDA_PYTHON"
if [ $DRY_RUN = 0 ]; then
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null || true
fi

# ---------------------------------------------------------------- 1. build
build_cmake() {
    local gen=()
    command -v ninja >/dev/null && gen=(-G Ninja)
    cmake -S "$REPO" -B "$BUILD" "${gen[@]}" -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES="$ARCH" \
        -DCMAKE_CUDA_COMPILER="$NVCC" -DSEGRT_BUILD_CUDA=ON -DSEGRT_BUILD_TRT_PLUGIN=OFF \
        -DSEGRT_WARNINGS_AS_ERRORS=ON && cmake --build "$BUILD" -j "$JOBS"
}
build_plain() { # no cmake on the machine: the same sources, same flags
    local src=$REPO/kernels/roi_align
    g++ -std=c++17 -O3 -fPIC -shared -fvisibility=hidden -pthread "$src/roi_align_cpu.cpp" "$src/roi_align_capi.cpp" \
        -o "$BUILD/libsegrt_roi_align_cpu.so" &&
    "$NVCC" -std=c++17 -O3 -arch="sm_$ARCH" -Xcompiler=-fPIC,-fvisibility=hidden -shared "$src/roi_align_kernel.cu" \
        -o "$BUILD/libsegrt_roi_align_cuda.so"
}
export REPO BUILD ARCH NVCC JOBS
export -f build_cmake build_plain
BUILDER=build_plain
command -v cmake >/dev/null && BUILDER=build_cmake
step "1 build kernels ($BUILDER, sm_$ARCH)" 150 "gpu nvcc" bash -c $BUILDER
export SEGRT_ROI_ALIGN_LIB=$BUILD/libsegrt_roi_align_cpu.so
export SEGRT_ROI_ALIGN_CUDA_LIB=$BUILD/libsegrt_roi_align_cuda.so
export SEGRT_REQUIRE_GPU_TESTS=1

# ---------------------------------------------------------------- 2. parity with torchvision
step "2 RoIAlign CUDA vs torchvision (pytest -m gpu)" 90 "gpu built segrt torchvision pytest" \
    "$PY" -m pytest -q -m gpu -rs -p no:cacheprovider --junitxml="$OUT_DIR/gpu_tests.xml" tests/kernels/test_roi_align_cuda.py

# ---------------------------------------------------------------- 3. compute-sanitizer
step "3 sanitizer driver build" 60 "gpu nvcc" "$NVCC" -std=c++17 -O2 -lineinfo -arch="sm_$ARCH" \
    -I"$REPO/kernels/roi_align" tests/kernels/cuda_sanitize_driver.cu kernels/roi_align/roi_align_kernel.cu \
    kernels/roi_align/roi_align_cpu.cpp -o "$BUILD/cuda_sanitize_driver"
step "3 driver results vs CPU (no sanitizer)" 30 "gpu driver" "$BUILD/cuda_sanitize_driver"
for tool in memcheck racecheck initcheck; do
    step "3 compute-sanitizer $tool" 60 "gpu driver sanitizer" "$SANITIZER" --tool "$tool" --error-exitcode 1 \
        "$BUILD/cuda_sanitize_driver"
done

# ---------------------------------------------------------------- 4. ONNX Runtime CUDA EP
step "4 onnxruntime CUDA EP vs CPU (both models)" 90 "gpu segrt ort_cuda torchvision" \
    "$PY" scripts/gpu_check_models.py ort --out "$OUT_DIR"

# ---------------------------------------------------------------- 5. PyTorch baselines
step "5 PyTorch GPU baselines (gpu_baseline.py)" 90 "gpu torchvision" \
    "$PY" scripts/gpu_baseline.py --out "$OUT_DIR/gpu_baseline.json"

# ---------------------------------------------------------------- 6. TensorRT
step "6 TensorRT tests (pytest -m tensorrt)" 60 "gpu segrt tensorrt cuda_python pytest" \
    "$PY" -m pytest -q -m tensorrt -rs -p no:cacheprovider tests/sdk/test_tensorrt_backend.py
step "6 TensorRT engines: build, parity, segrt bench" 150 "gpu segrt tensorrt cuda_python torchvision" \
    "$PY" scripts/gpu_check_models.py trt --out "$OUT_DIR"

# ---------------------------------------------------------------- 7. timings
step "7 RoIAlign timings vs torchvision" 60 "gpu built segrt torchvision" \
    "$PY" benchmarks/roi_align_bench.py --device cuda --out "$OUT_DIR/roi_align_bench_gpu.json"

# ---------------------------------------------------------------- summary
"$PY" - "$OUT_DIR" "$DRY_RUN" "${STEPS[@]}" <<'EOF'
import json, sys
from pathlib import Path
out, dry = Path(sys.argv[1]), sys.argv[2] == "1"
steps = []
for s in sys.argv[3:]:
    name, rc, seconds, note = (s.split("|") + [""])[:4]
    result = {"skip": "SKIP", "run": "WOULD RUN", "0": "PASS"}.get(rc, "FAIL")
    steps.append(dict(step=name, result=result, seconds=int(seconds), note=note))
print("\n%-48s %-9s %7s  %s" % ("step", "result", "seconds", "note"))
for s in steps:
    print("%-48s %-9s %7d  %s" % (s["step"], s["result"], s["seconds"], s["note"]))
bench_file = out / "roi_align_bench_gpu.json"
bench = json.loads(bench_file.read_text()) if bench_file.is_file() else {}
rows = [r for r in bench.get("rows", []) if r["variant"] == "segrt"]  # segrt-bench/1 report (segrt.bench)
if rows:
    print("\n%-18s %-6s %-8s %10s %14s %8s" % ("op", "out", "dtype", "ours ms", "torchvision ms", "speedup"))
    for r in rows:
        i = r["info"]
        print("%-18s %-6s %-8s %10.3f %14.3f %8.2f" % (i["op"], "%dx%d" % (i["output"], i["output"]), i["dtype"],
              r["p50_ms"], r["p50_ms"] * r["speedup"], r["speedup"]))
summary = dict(dry_run=dry, passed=all(s["result"] != "FAIL" for s in steps),
               skipped={s["step"]: s["note"] for s in steps if s["result"] == "SKIP"}, steps=steps,
               results={p.stem: json.loads(p.read_text()) for p in sorted(out.glob("*.json"))
                        if p.stem in ("ort", "trt", "gpu_baseline")}, bench=bench)
(out / ("gpu_check_dry_run.json" if dry else "gpu_check.json")).write_text(json.dumps(summary, indent=2))
verdict = ("DRY RUN" if dry else "SOME STEPS FAILED" if not summary["passed"]
           else "PASSED with skips" if summary["skipped"] else "ALL PASSED")
print("\n%s; wrote %s" % (verdict, out / ("gpu_check_dry_run.json" if dry else "gpu_check.json")))
sys.exit(0 if summary["passed"] else 1)
EOF
