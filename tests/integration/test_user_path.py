"""`yuflow sim run ruxi_oil_spill` and `yuflow sim run puhe_do_sag` as a user runs them, with their
defaults (flat out, the scenario ending now), on services of their own started the way `yuflow
services up`, `yuflow worker` and `yuflow bridge` start them; the operator's view is `yuflow
warnings tail --json`."""

from __future__ import annotations

import json
import re
from datetime import datetime

import pytest

from pipeline.city import default_city, load_toml
from pipeline.influx import influxql
from pipeline.processes import wait_until
from pipeline.services.influxdb import InfluxService
from sensors_sim.recording import load_truth
from tests.integration.conftest import own_services, yuflow

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def user_services(tmp_path_factory):
    with own_services(tmp_path_factory.mktemp("user-path")) as settings:
        yield settings


def warnings_of(basin: str) -> list[dict]:
    lines = yuflow("warnings", "tail", "--from-beginning", "--json", "--timeout", "5").splitlines()
    return [
        w
        for w in map(json.loads, (line for line in lines if line.startswith("{")))
        if w["incident_id"].startswith(f"water:{basin}:")
    ]


def test_sim_run_ruxi_oil_spill_names_the_factory_to_five_departments_and_never_lowers_before_the_intake(user_services):
    settings = user_services
    out = yuflow("sim", "run", "ruxi_oil_spill")
    shift_s = float(re.search(r"shift ([+-]\d+) s", out).group(1))
    truth = load_truth(next((settings.data_path / "runs").glob("ruxi_oil_spill-*.truth.json")))
    spill = truth.of_type("oil_spill")[0]
    true_arrival_s = spill.start.timestamp() + shift_s + spill.details["intake_arrival_h"]["ruxi-intake"] * 3600

    def ruxi_warnings():
        found = warnings_of("ruxi")
        return (
            found
            if any(w["suspects"] and w["suspects"][0]["source_id"] == "ruxi-food-factory" for w in found)
            else None
        )

    found = wait_until(ruxi_warnings, 120, what="a warning naming the food factory")
    print(
        "\n[user path] "
        + "; ".join(
            f"{w['title'][:70]} ({w['ts']}) {[(a['intake_id'], a['hours_left']) for a in w['arrivals']]}" for w in found
        )
    )
    source = next(w for w in found if w["suspects"] and w["suspects"][0]["source_id"] == "ruxi-food-factory")
    assert source["tier"] == "red" and source["departments"] == load_toml("routing")["categories"]["water"]["red"]
    intake = next((a for a in source["arrivals"] if a["intake_id"] == "ruxi-intake"), None)
    assert intake is not None, (source["title"], source["message"], source["arrivals"], [w["title"] for w in found])
    assert intake["hours_left"] > 0 and abs(
        datetime.fromisoformat(intake["arrival"]).timestamp() - true_arrival_s
    ) <= 0.1 * (spill.details["intake_arrival_h"]["ruxi-intake"] * 3600)
    # named with the readings of at most 15 min after the first anomalous one (the truth's expected detection)
    seen_until_s = datetime.fromisoformat(intake["arrival"]).timestamp() - intake["hours_left"] * 3600
    assert (
        seen_until_s - (spill.expected_detection.timestamp() + shift_s) <= 15 * 60 + 36
    )  # hours_left is rounded to 0.01 h
    assert intake["hours_left"] >= 5.0, intake  # the seed: the intake is about 6 h below the sighting
    dams = [d.name for d in default_city().dams.values() if d.river == "ruxi"]
    assert any(name in item for name in dams for item in source["checklist"]) and any(
        "停产" in item for item in source["checklist"]
    )
    # no lowered warning while the plume is heading to the intake (sensor time)
    lowered = [
        w for w in found if "降级" in w["title"] and datetime.fromisoformat(w["ts"]).timestamp() < true_arrival_s
    ]
    assert not lowered, [w["title"] for w in lowered]
    query = (
        f"SELECT count(\"since_reading_s\") FROM deliveries WHERE warning_id = '{source['warning_id']}' "
        "AND \"channel\" = 'topic'"
    )
    assert wait_until(
        lambda: (r := influxql(settings.influx, query)) and r[0]["values"][0][1] >= 5, 60, what="the 5 deliveries"
    )


def test_sim_run_puhe_do_sag_ranks_gunan_first_and_sanjiao_second(user_services):
    yuflow("sim", "run", "puhe_do_sag")
    found = wait_until(
        lambda: [w for w in warnings_of("puhe") if w["suspects"]] or None, 180, what="a traced Puhe warning"
    )
    print(
        "\n[user path] " + "; ".join(f"{w['title'][:70]} {[s['source_id'] for s in w['suspects'][:3]]}" for w in found)
    )
    assert [s["source_id"] for s in found[0]["suspects"][:2]] == ["puhe-sewage-gunan", "puhe-sewage-sanjiao"]
    assert all(w["suspects"][0]["source_id"] == "puhe-sewage-gunan" for w in found)


def test_the_oil_spill_is_traced_with_influxdb_down_at_a_finite_replay_speed(tmp_path):
    """Tracing keeps its stations' series from the stream, on the data's event time: neither the
    sink nor the replay speed matter."""
    with own_services(tmp_path) as settings:
        InfluxService(settings).stop()
        yuflow("sim", "run", "ruxi_oil_spill", "--speed", "1800", "--duration", "6")  # 6 h of sensor time in 12 s
        found = wait_until(
            lambda: [w for w in warnings_of("ruxi") if w["suspects"]] or None, 120, what="a traced Ruxi warning"
        )
        assert found[0]["suspects"][0]["source_id"] == "ruxi-food-factory" and found[0]["tier"] == "red"
