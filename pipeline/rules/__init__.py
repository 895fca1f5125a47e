"""Learning rules: each module is a rule kind with PARAMS, POTTS and train(X, q, params, rng) -> Model."""
