"""amsweep benchmarks: each module compares one amsweep kernel with its baseline, side by side.

Run them all with ``python -m benchmarks`` from the repository root; results and the
machine they were measured on are kept in ``benchmarks/RESULTS.md``.
"""
