"""Yuflow pipeline: settings, topics and schemas, the MQTT->Kafka bridge, sinks, services and the CLI."""
