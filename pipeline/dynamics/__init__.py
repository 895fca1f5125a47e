"""Retrieval dynamics: each module is a dynamics kind (see ``amsweep.pipeline.contracts``)."""
