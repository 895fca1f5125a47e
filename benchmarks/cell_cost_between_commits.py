"""CPU time of one small cell, for comparing two installs of amsweep side by side.

Not part of ``python -m benchmarks`` (the table compares implementations within one checkout):
run it with the interpreter of each checkout and the package prefix that checkout imports,
alternating, e.g. ``python benchmarks/cell_cost_between_commits.py amsweep.pipeline.`` in this
one and ``python .../cell_cost_between_commits.py pipeline.`` in a checkout from before the
namespace (commit 045fc71). One thread; best of 5 passes over 60 cells (random patterns,
N = 50, Hebb, 3 loads x 20 seeds, 3 noise levels, 10 train/test/random starts).
"""

import importlib
import sys
import time

pkg = sys.argv[1]
spec_mod = importlib.import_module(pkg + "spec")
cell = importlib.import_module(pkg + "cell")
raw = {
    "name": "b",
    "root_seed": 1,
    "seeds": list(range(20)),
    "noise": [0.0, 0.1, 0.2],
    "datasets": {"random": {"N": [50], "alpha": [0.05, 0.1, 0.2]}},
    "rules": {"hebb": {}},
    "retrieval": {"train_starts": 10, "test_starts": 10, "random_starts": 10},
}
sw = spec_mod.from_dict(raw)
tasks = list(sw.tasks())
for t in tasks[:5]:
    cell.run_cell(sw.job(t))
best = 1e9
for _ in range(5):
    t0 = time.process_time()
    for t in tasks:
        cell.run_cell(sw.job(t))
    best = min(best, (time.process_time() - t0) / len(tasks))
print(f"{pkg}: {best * 1e3:.3f} ms CPU per cell ({len(tasks)} cells, best of 5)")
