"""What every message is: a frozen pydantic model, JSON on the wire, timestamps in UTC."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict

IDENT = r"^[A-Za-z0-9_.-]{1,64}$"


def _utc(ts: datetime) -> datetime:
    return ts.astimezone(UTC)


UtcDatetime = Annotated[AwareDatetime, AfterValidator(_utc)]


def utc_now() -> datetime:
    return datetime.now(UTC)


def utc_at(t_s: float) -> datetime:
    """The UTC datetime of a Unix time in seconds."""
    return datetime.fromtimestamp(t_s, UTC)


class Message(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    def to_json(self) -> bytes:
        return self.__pydantic_serializer__.to_json(self)  # model_dump_json() without the str round trip
