"""Dead letters: input that could not be accepted, with why and its raw payload."""

from __future__ import annotations

from pydantic import Field

from pipeline.schemas.message import Message, UtcDatetime, utc_now

PAYLOAD_KEEP_CHARS = 4096  # of a dead letter's raw payload


class DeadLetter(Message):
    """Input that could not be accepted, with why. Raw payload kept (truncated) for diagnosis."""

    code: str = Field(description="short reason class for counting, e.g. invalid, unknown_sensor, duplicate")
    reason: str
    source_topic: str
    payload: str
    payload_bytes: int
    truncated: bool = False
    stage: str = "bridge"
    received_at: UtcDatetime = Field(default_factory=utc_now)
    sensor_id: str | None = None
    kind: str | None = None

    @classmethod
    def of(cls, code: str, reason: str, source_topic: str, payload: bytes, **context) -> DeadLetter:
        """A record for ``payload``, kept as text (undecodable bytes escaped), truncated past 4 KiB."""
        text = payload.decode("utf-8", errors="backslashreplace")
        return cls(
            code=code,
            reason=reason,
            source_topic=source_topic,
            payload=text[:PAYLOAD_KEEP_CHARS],
            payload_bytes=len(payload),
            truncated=len(text) > PAYLOAD_KEEP_CHARS,
            **context,
        )
