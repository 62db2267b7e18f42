#!/usr/bin/env bash
# Create Yuflow's topics on a production Kafka cluster (replication 3, min.insync.replicas 2): the same
# partition count for every topic (YUFLOW_KAFKA__PARTITIONS), as the worker's tables are co-partitioned
# with their source topics. Faust creates its changelog topics itself with the same count.
#   BOOTSTRAP=kafka-1:9092 PARTITIONS=12 deploy/kafka/create-topics.sh
set -euo pipefail
BOOTSTRAP="${BOOTSTRAP:?kafka bootstrap, e.g. kafka-1:9092}"
PARTITIONS="${PARTITIONS:-12}"
TOPICS=$(/opt/yuflow/.venv/bin/python -c 'from pipeline.topics import ALL_TOPICS; print(" ".join(ALL_TOPICS))')
DEPARTMENTS=$(/opt/yuflow/.venv/bin/python -c 'from pipeline.city import load_toml; print(" ".join("to." + d for d in load_toml("routing")["departments"]))')
for topic in $TOPICS $DEPARTMENTS; do
  kafka-topics.sh --bootstrap-server "$BOOTSTRAP" --create --if-not-exists --topic "$topic" \
    --partitions "$PARTITIONS" --replication-factor 3 --config min.insync.replicas=2
done
