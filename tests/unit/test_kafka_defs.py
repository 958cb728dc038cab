"""Kafka definitions without a broker: keys, broker precedence, refused settings, lanes, and
the assignor's fallbacks."""

from __future__ import annotations

from dataclasses import replace

import pytest
from kafka.coordinator.assignors.range import RangePartitionAssignor

from eoflow import Engine, KafkaMessage, kafka, kafka_consume, transaction, workflow
from eoflow.devbroker import free_port
from eoflow.engine.config import EngineConfig
from eoflow.engine.kafka.defs import CONSUMERS, message_key
from eoflow.engine.kafka.lanes import workflow_lane
from eoflow.engine.kafka.source import RangeWithLookup
from eoflow.engine.kafka.start import brokers_for
from eoflow.errors import ConfigError, DefinitionError


@kafka(brokers="code-broker:9092")
class KafkaApp:
    @kafka_consume("kd-topic", group_id="kd-group")
    @workflow()
    def kd_flow(topic: str, partition: int, message: KafkaMessage) -> None: ...


@kafka_consume("kd-other")
@transaction()
def kd_plain(topic: str, partition: int, message: KafkaMessage) -> None: ...


def spec_of(name: str):  # type: ignore[no-untyped-def]
    spec = CONSUMERS.get(name)
    assert spec is not None
    return spec


def test_the_key_format_is_fixed() -> None:
    assert message_key("g:1", "orders", 2, 40) == "kafka:orders:2:40:g:1"
    assert message_key("g:1", "orders", 2, 40, incarnation=0) == "kafka:orders:2:40:g:1"
    assert message_key("g:1", "orders", 2, 40, incarnation=3) == "kafka:orders:2:40@3:g:1"


def test_broker_precedence(monkeypatch: pytest.MonkeyPatch, journal_path: str) -> None:
    flow, plain = spec_of("KafkaApp.kd_flow"), spec_of("kd_plain")
    assert brokers_for(flow, None) == ("code-broker:9092",)  # @kafka on the class
    assert brokers_for(plain, None) == ("localhost:9092",)  # the default
    monkeypatch.setenv("EOFLOW_KAFKA_BROKERS", "env-a:1,env-b:2")
    override = EngineConfig.resolve().brokers
    assert brokers_for(flow, override) == ("env-a:1", "env-b:2")  # the environment wins
    assert EngineConfig.resolve(brokers="cli:3").brokers == ("cli:3",)  # --brokers wins
    with Engine(journal=journal_path) as engine:
        assert engine.config.brokers == ("env-a:1", "env-b:2")


def test_bad_broker_addresses() -> None:
    with pytest.raises(ConfigError, match="'nohost' is not HOST:PORT"):
        EngineConfig.resolve(brokers="nohost")
    with pytest.raises(ConfigError, match="no broker address"):
        kafka(brokers="")


def test_a_topic_has_one_handler_per_group() -> None:
    with pytest.raises(DefinitionError, match="one group may hand a topic to one handler"):
        @kafka_consume("kd-topic", group_id="kd-group")
        @workflow()
        def kd_second(topic: str, partition: int, message: KafkaMessage) -> None: ...
    with pytest.raises(DefinitionError, match="found no @kafka_consume"):
        @kafka(brokers="x:1")
        class Empty:
            pass


def test_ordered_is_true_false_or_key_and_only_for_workflows() -> None:
    for wrong in ("partition", 1, 0):
        with pytest.raises(DefinitionError, match='ordered must be True, False or "key"'):
            kafka_consume("t", ordered=wrong)  # type: ignore[arg-type]
    with pytest.raises(DefinitionError, match="ordered= applies to workflows only"):
        @kafka_consume("kd-tx-unordered", ordered=False)
        @transaction()
        def kd_tx_unordered(topic: str, partition: int, message: KafkaMessage) -> None: ...


def test_workflow_lanes_by_ordering() -> None:
    def lane(ordered: object, key: bytes | None, partition: int = 0) -> str | None:
        spec = replace(spec_of("KafkaApp.kd_flow"), ordered=ordered)
        return workflow_lane(spec, KafkaMessage("t", partition, 7, key, b"", (), None))

    assert lane(True, b"a") == lane(True, b"b") == "kafka:t:0:kd-group"
    assert lane(True, b"a", partition=1) != lane(True, b"a")
    assert lane("key", b"a") == lane("key", b"a") != lane("key", b"b")
    assert lane("key", b"a").startswith("kafka:t:0:kd-group:key:")  # type: ignore[union-attr]
    assert lane("key", None) == lane(True, None)  # keyless messages keep the partition's order
    assert lane(False, b"a") is None


class _Member:
    def __init__(self, member_id: str, topics: list[str]) -> None:
        self.member_id, self.group_instance_id = member_id, None
        self.metadata = RangePartitionAssignor.metadata(topics)


class _Cluster:
    def __init__(self, known: dict[str, set[int]]) -> None:
        self.known = known

    def partitions_for_topic(self, topic: str) -> set[int] | None:
        return self.known.get(topic)


def test_the_assignor_passes_only_connection_settings_to_its_lookup() -> None:
    assignor = RangeWithLookup({
        "bootstrap_servers": ["b:1"], "group_id": "g", "group_instance_id": "i",
        "security_protocol": "SSL", "ssl_cafile": "ca.pem", "sasl_mechanism": "PLAIN",
        "allow_auto_create_topics": True, "max_poll_records": 5, "metric_reporters": [object]})
    assert assignor._lookup_args == {
        "bootstrap_servers": ["b:1"], "security_protocol": "SSL", "ssl_cafile": "ca.pem",
        "sasl_mechanism": "PLAIN", "bootstrap_timeout_ms": 2000, "enable_auto_commit": False,
        "allow_auto_create_topics": False}


def test_the_assignor_assigns_what_it_knows_when_its_lookup_fails(
        caplog: pytest.LogCaptureFixture) -> None:
    """The leader knows topic a; b belongs to another member and no broker answers the lookup:
    the join still completes (a is assigned, b gets nothing) and a warning says why."""
    assignor = RangeWithLookup({"bootstrap_servers": [f"127.0.0.1:{free_port()}"],
                                "group_id": "g-lookup"})
    members = [_Member("m1", ["a"]), _Member("m2", ["b"])]
    result = assignor.assign(_Cluster({"a": {0, 1}}), members)
    assert [tuple(t) for t in result["m1"].assigned_partitions] == [("a", [0, 1])]
    assert result["m2"].assigned_partitions == []
    assert "cannot look up topics b" in caplog.text and "g-lookup" in caplog.text


def test_an_unknown_consumer_option_fails_at_start(journal_path: str) -> None:
    from eoflow import Engine, kafka_consume, transaction
    from eoflow.errors import ConfigError

    @kafka_consume("bogus-topic", group_id="bogus", bogus_option=1)
    @transaction(name="kd_bogus")
    def handle(topic: str, partition: int, message: object) -> None:
        return None

    with Engine(journal=journal_path) as engine:
        with pytest.raises(ConfigError, match="unknown consumer option.*bogus_option"):
            engine.consume(handle, brokers="127.0.0.1:1")
