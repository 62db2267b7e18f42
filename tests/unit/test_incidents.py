"""The incident engine (models/incident*.py) on plain values, and the table's stored format."""

from __future__ import annotations

import json
from dataclasses import replace

from models.incident_decisions import Finding, join, settle
from models.incident_lifecycle import due, operator_action, sent
from models.incidents import Incident, IncidentRules, Member, Title

RULES = IncidentRules(
    deescalate_after_s=1800,
    early_alert_s=6 * 3600,
    trace_hold_s=2 * 3600,
    resend_after_s=600,
    escalate_after=2,
    intake_hours_red=6,
    arrival_update_s=3600,
    min_source_probability=0.5,
)

STORED = {  # a table value as the warning agent has always written it: keys and order
    "incident_id": "water:ruxi:1764000000",
    "open": True,
    "members": {
        "ruxi-mingda:oil": {"tier": "red", "until_s": None},
        "plume:ruxi-mingda": {"tier": "blue", "until_s": 1764030000.0},
    },
    "lower_since_s": None,
    "tier": "red",
    "stages": {"sensed": 1764000000.0, "warned": 1764000001.5},
    "last_sent_s": 1764000001.5,
    "resends": 0,
    "warning": {
        "warning_id": "water:ruxi:1764000000:red",
        "title": "[未签收 re-sent 1] RED water warning: oil at 明达",
    },
    "tiers_issued": ["blue", "red"],
    "traced": "ruxi-food-factory",
    "traced_tier": "red",
    "traced_arrival_s": 1764016920.0,
    "traced_probability": 0.95,
    "traced_dam": None,
}


def test_the_table_value_round_trips_unchanged():
    incident = Incident.from_dict(json.loads(json.dumps(STORED)))
    assert json.dumps(incident.to_dict()) == json.dumps(STORED)  # the same JSON on the change-log
    assert incident.title == Title("red", "water warning: oil at 明达", "[未签收 re-sent 1] ")
    assert incident.members["ruxi-mingda:oil"] == Member("red") and incident.traced.source_id == "ruxi-food-factory"
    fresh = {"incident_id": "water:puhe:1", "open": False, "members": {}, "lower_since_s": None, "stages": {}}
    assert Incident.from_dict(fresh).to_dict() == fresh  # closed before any warning: no tier, no warning keys


def test_a_finding_opens_an_incident_that_warns_then_lowers_after_the_hold_and_closes_when_it_lapses():
    red = Finding("water:ruxi", "a", "oil", "red", 0.0, plume_until_s=7200.0)
    incident, action, tier = settle(join(None, red, RULES), 0.0, RULES, raising=True)
    assert (action, tier, incident.incident_id) == ("open", "red", "water:ruxi:0")
    incident = sent(replace(incident, tier="red"), {"title": "t"}, Title("red", "t"), 1.0, 0.0)
    cleared = join(incident, Finding("water:ruxi", "a", "oil", "", 60.0, resolved=True), RULES)
    held, action, tier = settle(cleared, 60.0, RULES, raising=True)
    assert (action, tier, held.lower_since_s) == ("", "blue", 60.0)  # lower only after the hold
    assert due(held, 60.0 + 1799, RULES) != "settle" and due(held, 60.0 + 1800, RULES) == "settle"
    assert settle(held, 60.0 + 1800, RULES, raising=False)[1] == "lower"
    closed, action, _ = settle(held, 7200.0, RULES, raising=False)
    assert action == "" and not closed.open and closed.stages["closed"] == 7200.0
    assert not operator_action(incident, "closed", 90.0).open
