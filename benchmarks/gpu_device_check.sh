#!/bin/bash
# One prepared GPU check (see benchmarks/gpu_gradient.py): which offloading compilers
# the machine has, then the derived gradient on the GPU against the CPU.
#
# The lent H200 has neither nvc nor an offloading clang, and its gcc 13 lacks the nvptx
# offload compiler. So the GPU operators are built beforehand, on a machine with gcc 12
# and Debian's gcc-12-offload-nvptx (benchmarks/gpu_prebuild.sh), into build/offload/,
# together with that gcc's OpenMP runtime and nvptx plugin (build/offload/lib). Here
# they are loaded by the hash of their C code, which Devito generates afresh.
# For a machine without Devito: its wheels and its dependencies' in .whl/ (not
# committed; `pip download` them for that machine's Python). The output of the run on
# the lent H200 is benchmarks/results/gpu_check.log.
echo "== GPU"; nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
echo "== compilers"
for c in nvc nvc++ pgcc clang gcc nvcc; do
  if command -v $c >/dev/null; then echo "$c: $($c --version 2>&1 | head -1)"; else echo "$c: none"; fi
done
echo "gcc offload targets: $(gcc -v 2>&1 | grep -i 'offload' || echo none)"
if ! python3 -c "import devito" 2>/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=$PYTHONPATH:$PWD
python3 -c "import devito, numpy; print('devito', devito.__version__, 'numpy', numpy.__version__)"
echo "== CPU: $(lscpu | grep 'Model name' | sed 's/.*: *//'), $(nproc) CPUs"
export LD_LIBRARY_PATH=$PWD/build/offload/lib OMP_TARGET_OFFLOAD=MANDATORY
export OMP_NUM_THREADS=$(nproc) TMPDIR=$(mktemp -d)
run="python3 benchmarks/gpu_gradient.py --language openmp --compiler gnu-offload --prebuilt build/offload"
echo "== kernel launches (GOMP_DEBUG=1, 201 x 201, float64)"
GOMP_DEBUG=1 timeout 200 $run --shape 201 201 --dtype float64 > $TMPDIR/debug.log 2>&1
grep -v "^ \|GOMP_OFFLOAD\|nvptx\|cuda\|CUDA" $TMPDIR/debug.log | tail -4
echo "kernel launches: $(grep -c 'GOMP_OFFLOAD_run' $TMPDIR/debug.log)"
grep -m3 -i "cuda driver\|device.*sm_\|Loading" $TMPDIR/debug.log
for n in 401 801; do
  echo "== gradient, $n x $n"
  timeout 200 $run --shape $n $n 2>&1 | grep -v warning
done
