"""Retrieval dynamics: each public module is a dynamics kind; what it must define (PARAMS with
max_sweeps, relax) and may declare (POTTS, NEEDS, STOCHASTIC, flip_count) is
``amsweep.pipeline.contracts.DynamicsModule``."""
