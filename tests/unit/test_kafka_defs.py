"""Kafka definitions without a broker: keys, broker precedence, refused settings."""

from __future__ import annotations

import pytest

from eoflow import Engine, KafkaMessage, kafka, kafka_consume, transaction, workflow
from eoflow.engine.config import EngineConfig
from eoflow.engine.consumer import brokers_for
from eoflow.engine.kafka_defs import CONSUMERS, message_key
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
