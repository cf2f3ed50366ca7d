"""Every shipped configuration parses as ``fit`` options (nothing runs)."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
import yaml

from lightning_deblur.commands.fit import parse_fit_arguments
from lightning_deblur.commands.pool import read_members

SHIPPED = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))
POOLS = [path for path in SHIPPED if "members" in (yaml.safe_load(path.read_text()) or {})]
"""Pool files (``batch --members``): lists of methods, each a list of fit options."""
CONFIGS = [path for path in SHIPPED if path not in POOLS]
INPUT = ["--data.image", "blurred.png", "--data.kernel_size", "27"]  # not read: parsing only


def test_configs_are_shipped():
    assert {path.name for path in CONFIGS} >= {"fast.yaml", "improved.yaml", "nonblind.yaml", "selfdeblur.yaml"}


@pytest.mark.slow
@pytest.mark.parametrize("config", CONFIGS, ids=lambda path: path.name)
def test_a_shipped_config_parses(config):
    parsed = parse_fit_arguments(["fit", "--config", str(config), *INPUT])
    assert parsed.data.kernel_size in (27, [27, 27], (27, 27))
    assert parsed.trainer.precision == "32-true"  # bf16-mixed is an option, never a shipped method's


@pytest.mark.parametrize("pool", POOLS, ids=lambda path: path.name)
def test_every_member_of_a_shipped_pool_parses(pool):
    members = read_members(pool)
    assert len(members) >= 2
    for options in members.values():
        parsed = parse_fit_arguments(["fit", *options, *INPUT])
        assert parsed.data.kernel_size in (27, [27, 27], (27, 27))


def test_the_pool_is_shipped():
    assert [path.name for path in POOLS] == ["pool.yaml"]


def test_a_config_with_a_mistake_does_not_parse(tmp_path):
    broken = tmp_path / "broken.yaml"
    broken.write_text("model:\n  iteratons: 10\n")
    with pytest.raises(argparse.ArgumentError, match="iteratons"):
        parse_fit_arguments(["fit", "--config", str(broken), *INPUT])
