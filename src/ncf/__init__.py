"""Neural Collaborative Filtering on MovieLens, as a DVC pipeline.

Importing `ncf` first sets how torch computes on the CPU, before torch is loaded (a value
already in the environment wins; torchrun's processes inherit these):
- MKL, oneDNN and PyTorch's own kernels use their AVX2 code paths on x86-64, also on AVX-512
  CPUs, so every x86-64 CPU with AVX2, Intel or AMD, computes the same floats; so does the
  OpenBLAS under numpy and scipy (its Haswell kernels), which iALS (`implicit`) uses. Without it,
  MKL's AVX-512 matrix products round differently (even row by row within one product), and
  early stopping turns a last-digit difference into another model.
- idle OpenMP threads sleep instead of spinning, so `threads` above 1 does not collapse when
  another process keeps a core busy.
"""

import os
import platform

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
if platform.machine().lower() in ("x86_64", "amd64"):
    for _name, _value in (("MKL_CBWR", "AVX2"), ("ATEN_CPU_CAPABILITY", "avx2"),
                          ("ONEDNN_MAX_CPU_ISA", "AVX2"), ("OPENBLAS_CORETYPE", "Haswell")):
        os.environ.setdefault(_name, _value)
