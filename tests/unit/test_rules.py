"""The rule files of config/ load into typed models; a wrong key fails at start, naming the file and the key."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.rule_files import RainFile, WarningsFile
from pipeline.rules import FILES, RulesError, WarningRouting, load_rule, load_rules, rules
from pipeline.settings import CONFIG_DIR

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def config(tmp_path: Path) -> Path:
    """A copy of the shipped config directory, to break."""
    return Path(shutil.copytree(CONFIG_DIR, tmp_path / "config"))


def misspell(directory: Path, name: str, old: str, new: str) -> None:
    path = directory / f"{name}.toml"
    text = path.read_text(encoding="utf-8")
    assert text.count(old) == 1, f"{old!r} is not once in {name}.toml"
    path.write_text(text.replace(old, new), encoding="utf-8")


def test_every_shipped_rule_file_validates():
    loaded = load_rules(CONFIG_DIR)
    for name in FILES:
        assert getattr(loaded, name) is not None
    assert rules().warnings.grouping.trace_hold_h == 2.5
    assert rules().rain.watch.corroborate_fraction == 0.2  # once a default in the code, now in the model
    assert rules().tracing.fit.max_travel_h == 48 and isinstance(rules().tracing.fit.max_travel_h, int)


@pytest.mark.parametrize(
    ("name", "old", "new", "key"),
    [
        ("warnings", "trace_hold_h = 2.5", "trace_hld_h = 2.5", "grouping.trace_hld_h"),
        ("warnings", "yellow = 0.25", "yelow = 0.25", "tier_from_severity.yelow"),
        ("rain", "corroborate_fraction = 0.2", "corroborate_fractoin = 0.2", "watch.corroborate_fractoin"),
        ("crowd", "persons_per_officer = 150", "persons_per_oficer = 150", "watch.persons_per_oficer"),
        ("tracing", "looks_min = [5, 15, 30, 60, 120]", "look_min = [5, 15, 30, 60, 120]", "agent.look_min"),
        (
            "routing",
            '[categories.crowd]\nblue = ["grassroots_governance_centre"]',
            "[categories.crowd]\nbleu = []",
            "categories.crowd.bleu",
        ),
        (
            "parameters",
            "resolution = 0.01\n\n[water.temperature]",
            "resolutoin = 0.01\n\n[water.temperature]",
            "water.do.resolutoin",
        ),
        ("gb3838", 'bound = "range"', 'bound = "ranges"', "ph.bound"),
    ],
)
def test_a_misspelt_key_fails_naming_the_file_and_the_key(config, name, old, new, key):
    misspell(config, name, old, new)
    with pytest.raises(RulesError) as error:
        load_rules(config)
    message = str(error.value)
    assert f"{name}.toml" in message and key in message, message
    assert all(f"{name}.toml" in line for line in message.splitlines())  # the other files are fine


def test_the_message_says_what_is_wrong_with_the_key(config):
    misspell(config, "warnings", "trace_hold_h = 2.5", "trace_hld_h = 2.5")
    with pytest.raises(RulesError) as error:
        load_rule("warnings", WarningsFile, config)
    lines = str(error.value).splitlines()
    assert any(line.endswith("warnings.toml: grouping.trace_hld_h: extra inputs are not permitted") for line in lines)
    assert any(line.endswith("warnings.toml: grouping.trace_hold_h: field required") for line in lines)


def test_a_wrong_value_names_the_list_entry(config):
    misspell(config, "rain", 'tier = "orange"', 'tier = "amber"')
    with pytest.raises(RulesError, match=r"rain\.toml: tiers\[2\]\.tier: input should be"):
        load_rule("rain", RainFile, config)


def test_a_department_missing_from_the_list_is_refused(config):
    misspell(config, "routing", 'commerce = "商务委"', "")
    with pytest.raises(RulesError, match=r"routing\.toml: .*unknown department commerce"):
        load_rules(config)


def test_routing_and_roster_reach_the_models_engine():
    routing = rules().warning_routing
    levels, departments = routing.route("water", "red")
    assert levels == ["township", "district", "city"] and "emergency_management" in departments
    assert routing.recipients(["water_bureau"], ["township"], "liangping", "", {}) == [
        "李明 (梁平区水利局 值班长, 023-5320-0001)",
        "liangping水利局 值班室",
    ]
    assert WarningRouting(routing=rules().routing).recipients(["water_bureau"], ["city"], "x", "", {}) == []


def _config_show(directory: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "YUFLOW_CONFIG_DIR": str(directory)}
    return subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "config", "show"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_config_show_exits_non_zero_naming_the_file_and_key(config):
    misspell(config, "crowd", "clear_after_min = 15", "clear_after_mins = 15")
    done = _config_show(config)
    assert done.returncode == 1
    assert "crowd.toml: watch.clear_after_mins: extra inputs are not permitted" in done.stderr
    assert "Traceback" not in done.stderr + done.stdout


def test_config_show_reports_a_city_that_does_not_load(config):
    (config / "city.toml").write_text("[[stations]]\nid = 1\n", encoding="utf-8")
    done = _config_show(config)
    assert done.returncode == 1 and "city.toml" in done.stderr and "Traceback" not in done.stderr
