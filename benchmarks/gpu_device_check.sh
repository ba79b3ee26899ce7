#!/bin/bash
# One prepared GPU check (see benchmarks/gpu_gradient.py): which offloading compilers
# the machine has, and, where one offloads, the derived gradient on the GPU vs the CPU.
# For a machine without Devito: its wheels and its dependencies' in .whl/ (not
# committed; `pip download`/`pip wheel` them for that machine's Python). The output
# of the run on the lent H200 is benchmarks/results/gpu_check.log.
echo "== GPU"; nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
echo "== compilers"
for c in nvc nvc++ pgcc clang gcc nvcc; do
  if command -v $c >/dev/null; then echo "$c: $($c --version 2>&1 | head -1)"; else echo "$c: none"; fi
done
ls -d /opt/nvidia/hpc_sdk 2>/dev/null || echo "no /opt/nvidia/hpc_sdk"
echo "gcc offload targets: $(gcc -v 2>&1 | grep -i 'offload' || echo none)"
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site:$PWD
python3 -c "import devito, numpy; print('devito', devito.__version__, 'numpy', numpy.__version__)"
cat > /tmp/t.c <<'C'
#include <stdio.h>
#include <omp.h>
int main(void) { int n = 0;
#pragma omp target map(tofrom: n)
{ n = omp_is_initial_device() ? -1 : 1; }
printf("offload %d, devices %d\n", n, omp_get_num_devices()); return 0; }
C
for cc in "gcc -foffload=nvptx-none" "clang -fopenmp-targets=nvptx64"; do
  echo "== $cc"
  if $cc -fopenmp /tmp/t.c -o /tmp/t 2>/tmp/err && /tmp/t | tee /tmp/out; then
    if grep -q "offload 1" /tmp/out; then
      timeout 300 python3 benchmarks/gpu_gradient.py --language openmp --compiler ${cc%% *} --shape 201 201
    fi
  else head -3 /tmp/err; fi
done
