"""Benchmarks of the `ncf` package. They live beside it, not in it: `import ncf` does not bring them.

Run them from the repository root (the Makefile does), each with `--help` for its options:
- `python -m benchmarks.bench` (`make bench`): speed and memory of training and evaluation on the
  ml-100k split against the seed lab's per-sample loop (re-implemented there as the baseline),
  GMF ranking at MovieLens-20M's shape, an epoch beside a busy core, and the loop a user waits
  for (cold, no-op and revisited `dvc repro`, a five-seed study); writes bench.json.
- `python -m benchmarks.devicebench` (`make bench-gpu`): NeuMF samples/s and full-ranking time on
  one GPU (or `--device cpu`), on ml-100k and a synthetic MovieLens-20M-shaped set; writes
  bench-gpu.json.
- `python -m benchmarks.scale` (`make bench-scale`): time and peak memory of parse, split, a GMF
  epoch and evaluation on synthetic releases (`ncf.synthetic`) of 0.1 M to 25 M interactions;
  writes docs/scale/scale.json and scale.png.

Importing this package imports `ncf` first, so its CPU settings (see ncf/__init__.py) are made
before torch loads, as for the pipeline's stages.
"""

import ncf  # noqa: F401  (first: sets how torch computes on the CPU before torch loads)
