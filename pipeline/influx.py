"""InfluxDB: line protocol for our messages, a batched async writer, and InfluxQL queries.

InfluxDB 1.x (Debian's 1.6) speaks only the v1 API, so with ``api = "v1"`` the writer posts line
protocol to ``/write``; with ``api = "v2"`` (InfluxDB 2.x/3.x) it writes through influxdb-client to
``/api/v2/write`` with a token. Queries are InfluxQL on ``/query``, which 1.x, 2.x (v1 compatibility,
DBRP mapping) and 3.x all answer. Schema (documented in docs/influx-schema.md):

- ``readings``  tags sensor_id, kind, district, station (+ detection for cameras); one float field per
  parameter in its canonical unit (+ confidence for cameras); time = reading time.
- ``alerts``    tags category, rule, district, station, sensor_id, parameter, resolved; fields value,
  limit, severity, alert_id, message; time = event time.
- ``warnings``  tags category, tier, district, station; fields warning_id, incident_id, departments,
  title, time_to_warn_s; time = issue time.
- ``deadletter`` tags code, stage, kind; fields count (=1), reason, source_topic, payload_bytes;
  time = receive time.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import urllib.parse
import urllib.request
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from functools import lru_cache

import orjson

from pipeline.schemas import (
    Alert,
    CameraDetection,
    DeadLetter,
    Delivery,
    LifecycleEvent,
    Reading,
    Silence,
    SuppressedAlert,
    Warning,
    utc_now,
)
from pipeline.settings import InfluxSettings

log = logging.getLogger(__name__)

# line protocol: commas, equals signs and spaces are escaped in tag keys and values (a backslash is
# literal); a newline cannot be in a tag
_TAG_ESCAPES = str.maketrans({",": r"\,", "=": r"\=", " ": r"\ ", "\n": r"\n"})
FULLWIDTH_BACKSLASH = "\uff3c"


def _tag(value: str) -> str:
    """A tag key or value escaped; a trailing backslash becomes the full-width ＼, as the protocol has
    no way to end a tag with one (it would escape the comma or space after it, and the point is lost)."""
    if value.endswith("\\"):
        kept = value.rstrip("\\")
        value = kept + FULLWIDTH_BACKSLASH * (len(value) - len(kept))
    return value.translate(_TAG_ESCAPES)


def _field(value: float | int | bool | str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return f"{value}i"
    if isinstance(value, float):
        return repr(value)
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')  # a newline stays a newline inside the quotes
    return f'"{escaped}"'


def _ns(ts: datetime) -> int:
    return int(ts.timestamp() * 1_000_000) * 1000  # microsecond resolution, as Python keeps it


def line(
    measurement: str, tags: dict[str, str | None], fields: dict[str, float | int | bool | str], ts: datetime
) -> str:
    """One line of line protocol; tags with empty values are left out (InfluxDB rejects them).

    >>> from datetime import UTC, datetime
    >>> line("readings", {"station": "a b", "x": ""}, {"do": 4.5, "msg": 'say "hi"'}, datetime(2026, 1, 1, tzinfo=UTC))
    'readings,station=a\\\\ b do=4.5,msg="say \\\\"hi\\\\"" 1767225600000000000'
    """
    tag_part = "".join(f",{_tag(k)}={_tag(v)}" for k, v in sorted(tags.items()) if v)
    field_part = ",".join(f"{_tag(k)}={_field(v)}" for k, v in fields.items())
    return f"{_tag(measurement)}{tag_part} {field_part} {_ns(ts)}"


def reading_line(r: Reading) -> str:
    tags = {"sensor_id": r.sensor_id, "kind": r.kind.value, "district": r.district, "station": r.station}
    fields: dict[str, float | int | bool | str] = {name: q.value for name, q in r.values.items()}
    if isinstance(r, CameraDetection):
        tags["detection"] = r.detection
        fields["confidence"] = r.confidence
    return line("readings", tags, fields, r.ts)


def reading_lines_json(raw: bytes) -> list[str]:
    """``reading_line`` of each reading of a batch record, straight from its JSON without building
    models: the sink's hot path (the bridge has validated every record on ``readings.*``).

    >>> r = (
    ...     b'{"sensor_id":"s","kind":"water","station":"a","district":"d","ts":"2026-01-01T00:00:00Z",'
    ...     b'"values":{"do":{"value":4.5,"unit":"mg/L"}}}'
    ... )
    >>> reading_lines_json(b"[" + r + b"," + r + b"]") == [reading_line(Reading.model_validate_json(r))] * 2
    True
    >>> c = (
    ...     b'{"sensor_id":"c1","kind":"camera","station":"a","district":"d","ts":"2026-01-01T00:00:00.5Z",'
    ...     b'"detection":"oil_sheen","confidence":0.9,"values":{"oil_area":{"value":3,"unit":"m2"}}}'
    ... )
    >>> from pipeline.schemas import parse_reading
    >>> reading_lines_json(b"[" + c + b"]") == [reading_line(parse_reading(c))]
    True
    """
    out = []
    stamps: dict[str, int] = {}  # a batch's readings share a few timestamps
    for r in orjson.loads(raw):
        detection = r.get("detection")
        key = (r["sensor_id"], r["kind"], r["district"], r["station"], detection)
        prefix = _READING_PREFIXES.get(key)
        if prefix is None:  # a sensor's tags are the same in every line: escaped once
            tags = {"sensor_id": key[0], "kind": key[1], "district": key[2], "station": key[3], "detection": detection}
            if len(_READING_PREFIXES) > 100_000:
                _READING_PREFIXES.clear()
            prefix = _READING_PREFIXES[key] = (
                "readings" + "".join(f",{_tag(k)}={_tag(v)}" for k, v in sorted(tags.items()) if v) + " "
            )
        values = r["values"]
        fields = _field_template(tuple(values)) % tuple(
            [float(q["value"]) for q in values.values()]
        )  # %r of a float is its repr
        if detection:
            fields += f",confidence={float(r['confidence'])!r}"
        ts = r["ts"]
        ns = stamps.get(ts)
        if ns is None:
            ns = stamps[ts] = _ns(datetime.fromisoformat(ts))
        out.append(f"{prefix}{fields} {ns}")
    return out


_READING_PREFIXES: dict[tuple, str] = {}


@lru_cache(maxsize=10_000)  # a few parameter lists are sent
def _field_template(names: tuple[str, ...]) -> str:
    """``name=%r,...`` for a reading's parameter names, escaped once."""
    return ",".join(f"{_tag(name).replace('%', '%%')}=%r" for name in names)


def alert_line(a: Alert) -> str:
    tags = {
        "category": a.category.value,
        "rule": a.rule,
        "district": a.district,
        "station": a.station,
        "area": a.area or a.station,
        "sensor_id": a.sensor_id,
        "parameter": a.parameter,
        "resolved": str(a.resolved).lower(),
    }
    fields = {
        "value": a.value,
        "limit": a.limit,
        "severity": a.severity,
        "alert_id": a.alert_id,
        "message": a.message,
        "time_to_alert_s": (a.detected_at - a.ts).total_seconds(),
    }
    return line("alerts", tags, fields, a.ts)


def warning_line(w: Warning) -> str:
    tags = {"category": w.category.value, "tier": w.tier.value, "district": w.district, "station": w.station}
    fields = {
        "warning_id": w.warning_id,
        "incident_id": w.incident_id,
        "departments": ",".join(w.departments),
        "title": w.title,
        "time_to_warn_s": (w.issued_at - w.ts).total_seconds(),
    }
    return line("warnings", tags, fields, w.issued_at)


def delivery_line(d: Delivery) -> str:
    tags = {
        "department": d.department,
        "channel": d.channel,
        "ok": str(d.ok).lower(),
        "category": d.category.value,
        "tier": d.tier.value,
    }
    fields = {
        "warning_id": d.warning_id,
        "incident_id": d.incident_id,
        "since_reading_s": d.since_reading_s,
        "detail": d.detail,
    }
    return line("deliveries", tags, fields, d.delivered_at)


def lifecycle_line(e: LifecycleEvent) -> str:
    """One incident stage: ``time_since_sensed_s`` is left to queries (the sensed record is its own point)."""
    category, area = e.incident_key.split(":")
    tags = {"stage": e.stage.value, "source": e.source, "category": category, "area": area}
    fields = {"incident_id": e.incident_id, "warning_id": e.warning_id, "actor": e.actor, "note": e.note}
    return line("lifecycle", tags, fields, e.ts)


def silence_line(x: Silence) -> str:
    """A maintenance window as set (or ended early: ``removed``), at the time it was made."""
    tags = {
        "silence_id": x.silence_id,
        "sensor_id": x.sensor_id,
        "station": x.station,
        "area": x.area,
        "removed": str(x.removed).lower(),
    }
    fields = {"until": x.until.isoformat().replace("+00:00", "Z"), "reason": x.reason, "by": x.by}
    return line("silences", tags, fields, utc_now() if x.removed else x.created_at)


def suppressed_line(x: SuppressedAlert) -> str:
    """An alert a silence held back, at the alert's event time."""
    a = x.alert
    tags = {
        "category": a.category.value,
        "rule": a.rule,
        "district": a.district,
        "station": a.station,
        "sensor_id": a.sensor_id,
        "parameter": a.parameter,
        "silence_id": x.silence_id,
    }
    fields = {"alert_id": a.alert_id, "value": a.value, "message": a.message, "reason": x.reason}
    return line("suppressed", tags, fields, a.ts)


def deadletter_line(d: DeadLetter) -> str:
    tags = {"code": d.code, "stage": d.stage, "kind": d.kind}
    fields = {"count": 1, "reason": d.reason, "source_topic": d.source_topic, "payload_bytes": d.payload_bytes}
    return line("deadletter", tags, fields, d.received_at)


class InfluxWriter:
    """Batched writes with bounded backoff on transient errors.

    Transient failures (connection refused, 5xx, 429) are retried until they succeed, so the calling
    agent stops consuming and Kafka keeps the data (at-least-once). A 4xx other than 429 means the
    points themselves are bad: logged with the server's reason and skipped.
    """

    def __init__(self, settings: InfluxSettings, max_backoff_s: float = 5.0):
        self.settings = settings
        self.max_backoff_s = max_backoff_s
        self._session = None
        self._v2_client = None

    async def setup(self) -> None:
        if self.settings.api == "v1":
            import aiohttp

            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
        else:
            from influxdb_client.client.influxdb_client_async import InfluxDBClientAsync

            self._v2_client = InfluxDBClientAsync(
                url=self.settings.url, token=self.settings.token.get_secret_value(), org=self.settings.org
            )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
        if self._v2_client is not None:
            await self._v2_client.close()

    async def write(self, lines: Sequence[str]) -> None:
        for start in range(0, len(lines), self.settings.batch_size):
            chunk = lines[start : start + self.settings.batch_size]
            started = time.perf_counter()
            await self._write_with_retry("\n".join(chunk).encode())
            log.debug("influx write total_records=%d elapsed_s=%.3f", len(chunk), time.perf_counter() - started)

    async def _write_with_retry(self, body: bytes) -> None:
        backoff_s = 0.2
        while True:
            try:
                status, text = await self._post(body)
            except (TimeoutError, OSError) as e:
                status, text = None, f"{type(e).__name__}: {e}"
            except Exception as e:  # aiohttp.ClientError and influxdb-client errors
                status, text = getattr(e, "status", None), f"{type(e).__name__}: {e}"
            if status is not None and status < 300:
                return
            if status is not None and 400 <= status < 500 and status != 429:
                log.error("InfluxDB rejected %d bytes of points (HTTP %s): %s", len(body), status, text[:500])
                return
            log.warning("InfluxDB write failed (%s), retrying in %.1f s", text[:200], backoff_s)
            await asyncio.sleep(backoff_s)
            backoff_s = min(self.max_backoff_s, backoff_s * 2)

    async def _post(self, body: bytes) -> tuple[int, str]:
        if self._session is None and self._v2_client is None:
            await self.setup()
        if self.settings.api == "v1":
            params = {"db": self.settings.database, "precision": "ns"}
            async with self._session.post(
                f"{self.settings.url}/write", params=params, data=body, auth=self._auth()
            ) as r:
                return r.status, await r.text()
        await self._v2_client.write_api().write(
            bucket=self.settings.bucket, org=self.settings.org, record=body.decode()
        )
        return 204, ""

    def _auth(self):
        if not self.settings.username:
            return None
        import aiohttp

        return aiohttp.BasicAuth(self.settings.username, self.settings.password.get_secret_value())


def influxql(settings: InfluxSettings, query: str, timeout_s: float = 10.0, method: str = "GET") -> list[dict]:
    """Run InfluxQL; returns one dict per series: {name, tags, columns, values}. Raises on errors."""
    params = {"db": settings.database, "q": query, "epoch": "ms"}
    headers = {}
    if settings.api == "v2" and settings.token.get_secret_value():
        headers["Authorization"] = f"Token {settings.token.get_secret_value()}"
    elif settings.username:
        params.update(u=settings.username, p=settings.password.get_secret_value())
    data = None
    url = f"{settings.url}/query"
    if method == "POST":
        data = urllib.parse.urlencode(params).encode()
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    else:
        url += "?" + urllib.parse.urlencode(params)
    request = urllib.request.Request(url, data=data, headers=headers, method=method)
    with urllib.request.urlopen(request, timeout=timeout_s) as response:
        body = json.load(response)
    series = []
    for result in body.get("results", []):
        if "error" in result:
            raise RuntimeError(f"InfluxQL error: {result['error']}")
        for s in result.get("series", []):
            series.append(
                {"name": s["name"], "tags": s.get("tags", {}), "columns": s["columns"], "values": s["values"]}
            )
    return series


def influx_time(ts: datetime | float) -> str:
    """An InfluxQL time literal (RFC 3339, UTC) from an aware datetime or epoch seconds.

    >>> influx_time(1767225600.5)
    '2026-01-01T00:00:00.500000Z'
    """
    if not isinstance(ts, datetime):
        ts = datetime.fromtimestamp(ts, UTC)
    return ts.astimezone(UTC).isoformat().replace("+00:00", "Z")


def ensure_database(settings: InfluxSettings) -> None:
    """Create the v1 database (idempotent). On 2.x/3.x the bucket is provisioned by the operator."""
    if settings.api == "v1":
        influxql(settings, f'CREATE DATABASE "{settings.database}"', method="POST")


def lines_for(messages: Iterable[Reading | Alert | Warning | DeadLetter]) -> list[str]:
    converters = {Alert: alert_line, Warning: warning_line, DeadLetter: deadletter_line}
    return [converters.get(type(m), reading_line)(m) for m in messages]  # type: ignore[operator]
