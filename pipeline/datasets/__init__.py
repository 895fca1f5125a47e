"""Datasets: each public module is a dataset kind; what it must define (PARAMS, check, make) and
may declare (Q, META, natural_N, data_files) is ``amsweep.pipeline.contracts.DatasetModule``."""
