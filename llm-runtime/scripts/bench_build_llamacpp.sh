#!/bin/sh
# Builds llama.cpp's llama-bench from the llama.cpp tree vendored in the PyPI sdist of
# llama-cpp-python 0.3.36 (llm-facts.md sec. 3.1), for the comparison in `cargo xtask bench runtime`.
#
#   bench_build_llamacpp.sh [native|avx2|aarch64-dotprod-i8mm]
#
# - native: -march=native (on the measurement VM: AVX-512 incl. VNNI, the level of our
#   avx512vnni path).
# - avx2: AVX2 + FMA + F16C only (the level of our avx2 path).
# - aarch64-dotprod-i8mm: cross-built with aarch64-linux-gnu-g++ (Debian g++-aarch64-linux-gnu)
#   for -march=armv8.6-a+dotprod+i8mm (the level of our sdot/smmla paths), without OpenMP, for
#   `qemu-aarch64 -L /usr/aarch64-linux-gnu`.
#
# Environment: LLAMA_BUILD_ROOT (default /opt/llama.cpp-build), JOBS (default 1: the machine is
# shared), PYTHON (a python3 with pip; default python3).
# Output: $LLAMA_BUILD_ROOT/build-<level>/bin/llama-bench
set -eu
LEVEL=${1:-native}
ROOT=${LLAMA_BUILD_ROOT:-/opt/llama.cpp-build}
JOBS=${JOBS:-1}
PY=${PYTHON:-python3}
VER=0.3.36
mkdir -p "$ROOT"
cd "$ROOT"
if [ ! -x tools/bin/cmake ] || [ ! -x tools/bin/ninja ]; then
    "$PY" -m venv tools
    tools/bin/pip install -q cmake ninja
fi
if [ ! -f "src/llama_cpp_python-$VER.tar.gz" ]; then
    # Only the sdist itself is built from source; its build requirements come as wheels.
    tools/bin/pip download -q --no-deps --no-binary llama-cpp-python "llama-cpp-python==$VER" -d src
fi
if [ ! -d "llama_cpp_python-$VER/vendor/llama.cpp" ]; then
    tar -xzf "src/llama_cpp_python-$VER.tar.gz"
fi
SRC="$ROOT/llama_cpp_python-$VER/vendor/llama.cpp"
COMMON="-DCMAKE_BUILD_TYPE=Release -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_TESTS=OFF \
 -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF -DBUILD_SHARED_LIBS=OFF -DGGML_OPENMP=ON"
case "$LEVEL" in
native)
    ISA="-DGGML_NATIVE=ON"
    ;;
avx2)
    ISA="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON \
 -DGGML_AVX512=OFF -DGGML_AVX_VNNI=OFF"
    ;;
aarch64-dotprod-i8mm)
    ISA="-DGGML_NATIVE=OFF -DGGML_CPU_ARM_ARCH=armv8.6-a+dotprod+i8mm \
 -DCMAKE_SYSTEM_NAME=Linux -DCMAKE_SYSTEM_PROCESSOR=aarch64 \
 -DCMAKE_C_COMPILER=aarch64-linux-gnu-gcc -DCMAKE_CXX_COMPILER=aarch64-linux-gnu-g++ \
 -DGGML_OPENMP=OFF"
    ;;
*)
    echo "unknown level $LEVEL" >&2
    exit 2
    ;;
esac
# shellcheck disable=SC2086
tools/bin/cmake -S "$SRC" -B "build-$LEVEL" -G Ninja -DCMAKE_MAKE_PROGRAM="$ROOT/tools/bin/ninja" \
    $COMMON $ISA >"build-$LEVEL.configure.log"
tools/bin/cmake --build "build-$LEVEL" -j "$JOBS" --target llama-bench
echo "$ROOT/build-$LEVEL/bin/llama-bench"
