#!/bin/bash
# Build the derived acoustic gradient's GPU operators with gcc's OpenMP offloading to
# nvptx, on a Debian 12 machine without a GPU (gcc 12.2, as here), for
# benchmarks/gpu_device_check.sh to run on a GPU machine that lacks an offloading
# compiler. Debian's offload packages are unpacked, not installed, so the machine's gcc
# is left as it was. Writes build/offload/: the shared objects, keyed by a hash of their
# C code, and lib/ with this gcc's OpenMP runtime and nvptx plugin.
# Without a GPU, libgomp runs the offloaded regions on the host, so this run also checks
# the offloaded code against the CPU build.
set -euo pipefail
cd "$(dirname "$0")/.."
root=build/offload-gcc
if [ ! -d $root/usr ]; then
  mkdir -p $root && (cd $root && apt-get download gcc-12-offload-nvptx nvptx-tools \
    libgomp-plugin-nvptx1 libgomp1 && for d in *.deb; do dpkg -x "$d" .; done)
fi
rm -rf build/offload && mkdir -p build/offload/lib
cp -L $root/usr/lib/x86_64-linux-gnu/{libgomp.so.1,libgomp-plugin-nvptx.so.1} build/offload/lib/
export GCC_OFFLOAD_ROOT=$PWD/$root TMPDIR=$(mktemp -d)
for dtype in float32 float64; do
  python benchmarks/gpu_gradient.py --language openmp --compiler gnu-offload \
    --prebuilt build/offload --shape 201 201 --dtype $dtype 2>&1 | grep -v warning
done
ls -l build/offload
