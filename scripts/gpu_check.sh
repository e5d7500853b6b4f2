#!/usr/bin/env bash
# GPU check of the RoIAlign kernels, for a fresh GPU machine with PyTorch+CUDA and nvcc
# (no TensorRT needed). Budget: under 5 minutes on an H100. Run from anywhere:
#
#     OUT=/some/dir bash scripts/gpu_check.sh
#
# 1. build libsegrt_roi_align_{cpu,cuda}.so for this GPU's architecture (cmake; plain nvcc/g++ if no cmake)
# 2. GPU parity vs torchvision's CUDA ops, fp32 + fp16, both ops (pytest -m gpu; scripts/gpu_check_parity.py
#    when pytest is not installed)
# 3. compute-sanitizer memcheck / racecheck / initcheck on tests/kernels/cuda_sanitize_driver.cu (edge cases,
#    exact-size buffers, results checked against the CPU implementation)
# 4. timings vs torchvision.ops.roi_align / MultiScaleRoIAlign (1000 RoIs, 256 ch, P2..P5 of 800x1344, 7x7 + 14x14)
# Prints a table and writes $OUT/gpu_check.json (+ logs, bench JSON); OUT defaults to build/gpu_check_out.
# Exit status: 0 when every step passed.
set -uo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
OUT_DIR=${OUT:-$REPO/build/gpu_check_out}
BUILD=$REPO/build/gpu_check
PY=${PYTHON:-python3}
mkdir -p "$OUT_DIR" "$BUILD"
exec > >(tee "$OUT_DIR/gpu_check.log") 2>&1

NVCC=$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)
SANITIZER=""
for candidate in "$(command -v compute-sanitizer)" "$(dirname "$(readlink -f "$NVCC")")/compute-sanitizer" \
    /usr/local/cuda/bin/compute-sanitizer /usr/local/cuda/compute-sanitizer/compute-sanitizer; do
    if [ -n "$candidate" ] && [ -x "$candidate" ]; then SANITIZER=$candidate; break; fi
done
ARCH=$("$PY" -c "import torch; print('%d%d' % torch.cuda.get_device_capability())" 2>/dev/null || echo 90)
JOBS=$(nproc 2>/dev/null || echo 4)
STEPS=()

run_step() { # name limit_seconds command...
    local name=$1 limit=$2
    shift 2
    echo
    echo "=== $name"
    local t0=$SECONDS
    timeout "$limit" "$@"
    local rc=$?
    local dt=$((SECONDS - t0))
    [ $rc -eq 124 ] && echo "(timed out after ${limit}s)"
    echo "=== $name: $([ $rc -eq 0 ] && echo PASS || echo "FAIL rc=$rc") (${dt}s)"
    STEPS+=("$name|$rc|$dt")
    return $rc
}

echo "GPU check: $(date -u +%FT%TZ) arch=sm_$ARCH repo=$REPO out=$OUT_DIR"
if ! "$PY" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "torch sees no CUDA device: this check needs a GPU"
    # SEGRT_GPU_CHECK_DRY_RUN=1 runs the steps anyway (to test this script on a machine without a GPU)
    [ "${SEGRT_GPU_CHECK_DRY_RUN:-0}" = 1 ] || exit 1
fi
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
"$NVCC" --version | tail -1 || true
"$PY" -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision', torchvision.__version__, 'cuda', torch.version.cuda)"

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
if command -v cmake >/dev/null; then
    run_step "build (cmake, sm_$ARCH)" 180 bash -c build_cmake
else
    run_step "build (nvcc, no cmake, sm_$ARCH)" 180 bash -c build_plain
fi
export SEGRT_ROI_ALIGN_LIB=$BUILD/libsegrt_roi_align_cpu.so
export SEGRT_ROI_ALIGN_CUDA_LIB=$BUILD/libsegrt_roi_align_cuda.so
export SEGRT_REQUIRE_GPU_TESTS=1
export PYTHONPATH=$REPO${PYTHONPATH:+:$PYTHONPATH}  # segrt and tests importable without pip install

# ---------------------------------------------------------------- 2. parity
if "$PY" -c "import pytest" 2>/dev/null; then
    run_step "gpu parity (pytest -m gpu)" 240 "$PY" -m pytest -q -m gpu -rs -p no:cacheprovider \
        --junitxml="$OUT_DIR/gpu_tests.xml" tests/kernels/test_roi_align_cuda.py
else
    run_step "gpu parity (no pytest: scripts/gpu_check_parity.py)" 240 "$PY" scripts/gpu_check_parity.py
fi

# ---------------------------------------------------------------- 3. compute-sanitizer
run_step "sanitizer driver build" 120 "$NVCC" -std=c++17 -O2 -lineinfo -arch="sm_$ARCH" -I"$REPO/kernels/roi_align" \
    tests/kernels/cuda_sanitize_driver.cu kernels/roi_align/roi_align_kernel.cu kernels/roi_align/roi_align_cpu.cpp \
    -o "$BUILD/cuda_sanitize_driver"
run_step "driver results vs CPU (no sanitizer)" 60 "$BUILD/cuda_sanitize_driver"
for tool in memcheck racecheck initcheck; do
    if [ -n "$SANITIZER" ]; then
        run_step "compute-sanitizer $tool" 150 "$SANITIZER" --tool "$tool" --error-exitcode 1 \
            "$BUILD/cuda_sanitize_driver"
    else
        echo "=== compute-sanitizer $tool: SKIP (compute-sanitizer not found on PATH or next to nvcc)"
        STEPS+=("compute-sanitizer $tool (not installed)|skip|0")
    fi
done

# ---------------------------------------------------------------- 4. timings
run_step "timings vs torchvision (CUDA)" 180 "$PY" benchmarks/roi_align_bench.py --device cuda \
    --out "$OUT_DIR/roi_align_bench_gpu.json"

# ---------------------------------------------------------------- summary
"$PY" - "$OUT_DIR" "${STEPS[@]}" <<'EOF'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
steps = [dict(step=s.split("|")[0], rc=s.split("|")[1], seconds=int(s.split("|")[2])) for s in sys.argv[2:]]
for s in steps:
    s["result"] = "SKIP" if s["rc"] == "skip" else ("PASS" if s["rc"] == "0" else "FAIL")
bench_file = out / "roi_align_bench_gpu.json"
bench = json.loads(bench_file.read_text()) if bench_file.is_file() else {}
print("\n%-55s %-6s %s" % ("step", "result", "seconds"))
for s in steps:
    print("%-55s %-6s %d" % (s["step"], s["result"], s["seconds"]))
rows = [r for r in bench.get("rows", []) if r["variant"] == "segrt"]  # segrt-bench/1 report (segrt.bench)
if rows:
    print("\n%-18s %-6s %-8s %10s %14s %8s %8s" % ("op", "out", "dtype", "ours ms", "torchvision ms", "speedup", "% copy bw"))
    for r in rows:
        i = r["info"]
        print("%-18s %-6s %-8s %10.3f %14.3f %8.2f %8.0f" % (i["op"], "%dx%d" % (i["output"], i["output"]), i["dtype"],
              r["p50_ms"], r["p50_ms"] * r["speedup"], r["speedup"], 100 * i.get("fraction_of_copy_bw", 0)))
summary = dict(passed=all(s["result"] != "FAIL" for s in steps),
               skipped=[s["step"] for s in steps if s["result"] == "SKIP"], steps=steps, bench=bench)
(out / "gpu_check.json").write_text(json.dumps(summary, indent=2))
verdict = "SOME STEPS FAILED" if not summary["passed"] else ("PASSED with skips" if summary["skipped"] else "ALL PASSED")
print("\n%s; wrote %s" % (verdict, out / "gpu_check.json"))
sys.exit(0 if summary["passed"] else 1)
EOF
