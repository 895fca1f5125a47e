"""The shipped Ray cluster-launcher configs validate against Ray's own schema."""

from __future__ import annotations

import pytest
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

from tests.conftest import ROOT


@pytest.mark.parametrize("name", ["cluster.yaml", "cluster.onprem.yaml"])
def test_cluster_config_is_valid_for_the_launcher(name):
    config = prepare_config(yaml.safe_load((ROOT / name).read_text()))
    validate_config(config)  # raises on any schema violation
    setup = " ".join(config["setup_commands"])
    assert "pip install" in setup and "amsweep" in setup
    assert "~/amsweep" in config["file_mounts"]
