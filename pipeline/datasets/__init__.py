"""Datasets: each module is a dataset kind with PARAMS, check(N, P, P_test, params) and make(N, P, P_test, params, rng) -> Data."""
