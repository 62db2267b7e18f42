"""Delivery: every warning to each of its departments, by each configured channel, recorded.

The stages, as in Prometheus Alertmanager's notify pipeline, each in its own module:

- ``channels``: the ``Channel`` interface (``name``, ``serves(department)``, ``send(warning,
  department) -> Outcome``, ``close()``) and its three implementations: the department's Kafka
  topic ``to.<department>``, a webhook (a JSON POST with the settings' bearer token), the log;
- ``retry``: ``RetryingChannel``, a channel behind which another is tried again with backoff;
- ``route``: the configured channels (each behind its retry stage) and the (department, channel)
  pairs a warning takes, less the deliveries already made;
- ``records``: the ``Delivery`` record of each delivery, failed ones included with why, and the
  incident's "delivered" lifecycle event.

The delivery agent (agents/delivery.py) runs them in that order and keeps the deliveries made in
a table, so each (warning, department, channel) delivery is made at most once.
"""
