"""Warning agent: Alerts -> tiered, routed Warnings, one per incident (re-issued only on escalation).

Incident state (open?, tier issued) lives in a Faust table keyed by the incident key; alerts are keyed
the same way, so an incident's alerts and state share a partition.
"""

from __future__ import annotations

from agents.app import SETTINGS, alerts_topic, app, dead_letter, warnings_topic
from models.warnings import route, tier_from_severity
from pipeline.city import City, default_city, load_toml
from pipeline.schemas import Alert, Tier, Warning

incidents_table = app.Table("incidents", default=None, partitions=SETTINGS.kafka.partitions)


def decide(alert: Alert, incident: dict | None, city: City, rules: dict, routing: dict) -> tuple[dict | None, Warning | None]:
    """New incident state and the warning to issue, if any, for one alert.

    A raised alert opens an incident (warning) or escalates it (new warning, same incident id) when
    its tier is higher than the tier already issued; a lower or equal tier issues nothing. A cleared
    alert closes the incident.
    """
    if alert.resolved:
        return (None if incident is None else {**incident, "open": False}), None
    tier = Tier(tier_from_severity(alert.severity, rules["tier_from_severity"]))
    if incident is not None and incident["open"] and Tier(incident["tier"]).rank >= tier.rank:
        return incident, None
    if incident is None or not incident["open"]:
        incident = {"incident_id": f"{alert.incident_key}:{int(alert.ts.timestamp())}", "open": True}
    levels, departments = route(alert.category.value, tier.value, routing)
    facts = {"station_name": city.site_name(alert.station), "parameter": alert.parameter}
    warning = Warning(
        warning_id=f"{incident['incident_id']}:{tier.value}",
        incident_id=incident["incident_id"],
        category=alert.category,
        tier=tier,
        district=alert.district,
        township=alert.township,
        station=alert.station,
        levels=levels,
        departments=departments,
        title=f"{tier.value.upper()} {alert.category.value} warning: {alert.parameter} at {facts['station_name']}",
        message=alert.message,
        checklist=[item.format(**facts) for item in rules["checklists"].get(alert.category.value, [])],
        alert_ids=[alert.alert_id],
        ts=alert.ts,
    )
    return {**incident, "tier": tier.value}, warning


CITY = default_city()
RULES = load_toml("warnings")
ROUTING = load_toml("routing")


@app.agent(alerts_topic)
async def warn(stream):
    async for raw in stream:
        try:
            alert = Alert.model_validate_json(raw)
            incident, warning = decide(alert, incidents_table.get(alert.incident_key), CITY, RULES, ROUTING)
        except Exception as error:  # one bad record must not stop the stream
            await dead_letter("warnings", alerts_topic, raw, error)
            continue
        incidents_table[alert.incident_key] = incident
        if warning is not None:
            await warnings_topic.send(key=warning.incident_id.encode(), value=warning.to_json())
