"""The load a bench offers: recorded simulator messages (``quiet_week``), one sample or several to
a message."""

from __future__ import annotations


def recorded_messages(
    scale: int, hours: float, end_s: float, feeds: list[str], repeats: int = 1
) -> tuple[list[tuple[int, str, bytes]], float]:
    """quiet_week's messages of ``feeds`` at ``scale``, stamped to end at ``end_s``, ``repeats`` times
    one after another (each repeat moved ``hours`` later, so none repeats a timestamp); and the
    readings (parameter values) per message. Repeats keep the simulator's memory to one span."""
    from pipeline.city import load_city
    from sensors_sim.recording import messages
    from sensors_sim.scenario import load_scenario
    from sensors_sim.simulation import simulate

    city = load_city(scale=scale)
    recording = simulate(load_scenario("quiet_week", city=city, scale=scale, duration_h=hours), city)
    frame = recording.frame[~recording.frame["malformed"] & recording.frame["kind"].isin(feeds)]
    del recording
    last_ms = int(end_s * 1000) - int(frame["send_ms"].max())
    out = []
    for r in reversed(range(repeats)):
        out += messages(frame, "yuflow", last_ms - int(r * hours * 3600 * 1000))
    return out, len(frame) / max(len(out) // repeats, 1)


def samples_per_message(messages: list[tuple[int, str, bytes]], k: int) -> list[tuple[int, str, bytes]]:
    """Each sensor's consecutive samples ``k`` to a message (a JSON array), as a data logger uploads
    what it buffered; ``k`` = 1 leaves one sample per message."""
    if k <= 1:
        return messages
    pending: dict[str, list[bytes]] = {}
    out = []
    for send_ms, topic, payload in messages:
        samples = pending.setdefault(topic, [])
        samples.append(payload)
        if len(samples) == k:
            out.append((send_ms, topic, b"[" + b",".join(pending.pop(topic)) + b"]"))
    return out + [(0, topic, b"[" + b",".join(samples) + b"]") for topic, samples in pending.items()]
