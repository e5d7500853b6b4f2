#!/usr/bin/env bash
# The installed-wheel stage of CI: build the manylinux runtime wheel, install it into a fresh venv
# whose PATH holds no compiler and no CMake (only python, bash and the venv's own scripts), and run
# tests/wheel/ against the installed package from a scratch folder, never the source tree.
#
# Usage: scripts/test_wheel.sh            (after `pip install -e '.[dev]'` into .venv: that venv builds
#                                          the wheel and the tiny test models, which need torch)
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
dev=${PYTHON:-.venv/bin/python}
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

wheel=$(PYTHON="$dev" bash scripts/build_wheel.sh "$scratch/dist" | tail -n 1)
"$dev" tests/wheel/make_models.py "$scratch/models"

# A PATH with python and bash only (Triton's Python backend starts its stub through bash).
base=$("$dev" -c 'import sys; print(sys._base_executable)')
mkdir "$scratch/bin"
ln -s "$base" "$scratch/bin/python3"
ln -s "$(command -v bash)" "$scratch/bin/bash"
"$base" -m venv "$scratch/venv"
clean_path="$scratch/venv/bin:$scratch/bin"
run_clean() { env -u PYTHONPATH -u VIRTUAL_ENV -u SEGRT_ROI_ALIGN_LIB PATH="$clean_path" "$@"; }
for tool in cc c++ gcc g++ cmake; do
    if run_clean bash -c "command -v $tool" >/dev/null; then
        echo "error: $tool is on the wheel stage's PATH ($clean_path)" >&2
        exit 1
    fi
done

# Runtime dependencies + the serve extra + pytest, nothing else (no torch, no compiler). PyTriton's
# server binary goes in with --no-deps, as the README says (its metadata pins numpy<2).
run_clean "$scratch/venv/bin/python" -m pip install --quiet "$wheel[serve]" pytest
run_clean "$scratch/venv/bin/python" -m pip install --quiet --no-deps nvidia-pytriton==0.7.0

mkdir "$scratch/run"
cd "$scratch/run"
SEGRT_WHEEL="$wheel" SEGRT_WHEEL_MODELS="$scratch/models" run_clean "$scratch/venv/bin/python" -m pytest \
    -c "$repo/tests/wheel/pytest.ini" --rootdir "$scratch/run" "$repo/tests/wheel"
