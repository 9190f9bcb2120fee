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
- numpy does not madvise its large arrays into transparent huge pages (NUMPY_MADVISE_HUGEPAGE=0):
  where THP and its defrag are both `madvise` (the project's 2-core VM), a fresh huge page can
  wait for the kernel to compact memory (numpy issue 31590). With it, the split of 20 M rows
  spent 0.4-2.0 s more system time in each of seven runs side by side, the download (less of
  its memory is numpy's) more in four of five.
- pyarrow's allocator (mimalloc) keeps memory it freed for 1 s (MIMALLOC_PURGE_DELAY=1000)
  instead of handing it back to the OS after 10 ms: the next table took it back page by page,
  1-3 s of system time in each of the download and split stages at 20 M rows. numpy's side is
  ncf.stage.reuse_freed_memory, which only those two stages call.
"""

import os
import platform

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("NUMPY_MADVISE_HUGEPAGE", "0")  # read when numpy loads
os.environ.setdefault("MIMALLOC_PURGE_DELAY", "1000")  # read when pyarrow loads
if platform.machine().lower() in ("x86_64", "amd64"):
    for _name, _value in (("MKL_CBWR", "AVX2"), ("ATEN_CPU_CAPABILITY", "avx2"),
                          ("ONEDNN_MAX_CPU_ISA", "AVX2"), ("OPENBLAS_CORETYPE", "Haswell")):
        os.environ.setdefault(_name, _value)
