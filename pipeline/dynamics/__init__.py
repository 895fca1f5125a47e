"""Retrieval dynamics: each module is a dynamics kind with PARAMS and relax(model, states, params, rng) -> Relaxation."""
