"""Datasets: each module is a dataset kind (see ``amsweep.pipeline.contracts``)."""
