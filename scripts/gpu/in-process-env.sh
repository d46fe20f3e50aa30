# Sourced by the GPU scripts that start the self-contained build inside Python (scripts/gpu/kernels-in-process.py):
# unpacks the build once and puts PyTorch's libtorch and CUDA libraries on LD_LIBRARY_PATH, as .gpu/run.sh does for the
# build's own launcher, so that the build and PyTorch share one libtorch in the process.
bash .gpu/run.sh actorinfer version > /dev/null 2>&1
torchlib=$(python3 -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')
site=$(dirname "$(dirname "$torchlib")")
libs=$torchlib
for d in "$site/nvidia/cu13/lib" /usr/local/cuda/lib64; do [ -d "$d" ] && libs=$libs:$d; done
export LD_LIBRARY_PATH=$libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
