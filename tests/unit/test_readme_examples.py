"""The README and docs as a new user reads them: every example reading is accepted by the bridge's
validator, and every command in the README's command table exists with the options it shows."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pipeline.city import default_city, load_toml
from pipeline.cli import app
from pipeline.schemas import DeadLetter
from pipeline.topics import mqtt_topic
from pipeline.validation import ReadingValidator, parameter_specs

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def json_examples() -> list[tuple[str, dict]]:
    found = []
    for doc in DOCS:
        for block in re.findall(r"```json\n(.*?)```", doc.read_text(encoding="utf-8"), flags=re.S):
            value = json.loads(block)
            if isinstance(value, dict) and "sensor_id" in value:
                found.append((doc.name, value))
    return found


def readme_commands() -> list[str]:
    rows = re.findall(r"^\| `(yuflow [^`]*)`", (ROOT / "README.md").read_text(encoding="utf-8"), flags=re.M)
    return [r.replace("\\|", "|") for r in rows]


@pytest.mark.parametrize("doc, reading", json_examples())
def test_every_example_reading_in_the_docs_is_accepted_by_the_bridge(doc, reading):
    validator = ReadingValidator(
        default_city(), parameter_specs(load_toml("parameters")), "yuflow", max_future_s=10**10
    )
    topic = mqtt_topic("yuflow", reading["district"], reading["kind"], reading["sensor_id"])
    [result] = validator.validate_message(topic, json.dumps(reading).encode(), datetime.now(UTC))
    assert not isinstance(result, DeadLetter), (doc, result.reason)


def test_the_docs_have_example_readings():
    assert json_examples()


@pytest.mark.parametrize("command", readme_commands())
def test_every_command_in_the_readme_table_exists_with_its_options(command):
    words = command.replace(" / ", "|").split()[1:]
    path = []
    for word in words:  # the command's words come before its arguments and options
        if word.startswith(("[", "-")) or not re.fullmatch(r"[a-z|]+", word):
            break
        path.append(word.split("|"))  # `ack|dispose|close|review`, `up / down / status`: each one
    options = set(re.findall(r"--[a-z-]+", command)) - {"--help"}
    for choice in path[-1] if path else [None]:
        argv = [*(p[0] for p in path[:-1]), *([choice] if choice else []), "--help"]
        result = CliRunner().invoke(app, argv, env={"COLUMNS": "200"})
        assert result.exit_code == 0, (argv, result.output)
        missing = [o for o in options if o not in result.output]
        assert not missing, (argv, missing)
