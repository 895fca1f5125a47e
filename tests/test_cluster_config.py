"""The shipped Ray cluster-launcher configs validate against Ray's own schema."""

from __future__ import annotations

from pathlib import Path

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


@pytest.mark.parametrize("name", ["cluster.yaml", "cluster.onprem.yaml"])
def test_cluster_config_as_written_matches_rays_schema_and_installs_s3(name):
    """The file itself, before ``prepare_config`` fills or drops anything, against Ray's own
    ray-schema.json (a top-level ``min_workers`` passed the test above but not ``ray up``), and
    with the [s3] extra the cube-on-S3 recipe needs (issue 23)."""
    import json

    import jsonschema
    import ray

    schema = json.loads((Path(ray.__file__).parent / "autoscaler" / "ray-schema.json").read_text())
    config = yaml.safe_load((ROOT / name).read_text())
    jsonschema.validate(config, schema)
    assert any("amsweep[s3]" in command for command in config["setup_commands"])
