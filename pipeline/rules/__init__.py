"""Learning rules: each public module is a rule kind; what it must define (PARAMS, train) and may
declare (DEFAULT_DYNAMICS, POTTS, NEEDS_META, PROVIDES) is ``amsweep.pipeline.contracts.RuleModule``."""
