"""Mistakes a newcomer makes get one clear error, at the moment they are made."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from eoflow import Engine, kafka_consume, step, transaction, workflow
from eoflow.cli.main import cli
from eoflow.errors import ConfigError, DefinitionError, WorkflowConflictError
from eoflow.journal import admin

BACKENDS = ("sqlite", "postgres")  # each test that takes a journal runs on both


def test_async_functions_are_refused_at_decoration() -> None:
    async def charge() -> int:
        return 1

    async def stream() -> object:
        yield 1

    for decorator in (workflow(), step(), transaction()):
        with pytest.raises(DefinitionError, match="async function.*make it a `def`"):
            decorator(charge)
    with pytest.raises(DefinitionError, match="async"):
        step()(stream)


@pytest.mark.parametrize("topic", ["orders:eu", "a b", "", ".", "x" * 250, "caf\u00e9"])
def test_topic_names_kafka_refuses_are_refused_at_decoration(topic: str) -> None:
    def handle(topic: str, partition: int, message: object) -> None:
        return None

    with pytest.raises((ConfigError, DefinitionError), match="topic"):
        kafka_consume(topic, group_id="g")(transaction(name=f"nt_{abs(hash(topic))}")(handle))


def test_produce_refuses_a_topic_with_a_colon() -> None:
    done = CliRunner().invoke(cli, ["produce", "orders:eu", "--count", "1",
                                    "--brokers", "127.0.0.1:1"])
    assert done.exit_code == 1 and "'orders:eu' is not a Kafka topic name" in done.stderr


@workflow()
def ne_flow() -> int:
    return 1


def test_fork_onto_a_taken_id_names_the_run_and_the_fix(journal_path: str) -> None:
    with Engine(journal=journal_path) as engine:
        engine.run(ne_flow, workflow_id="a")
        engine.run(ne_flow, workflow_id="b")
        with pytest.raises(WorkflowConflictError) as info:
            engine.fork("a", 1, "b")
        message = str(info.value)
        assert "'b' already belongs to a run of 'ne_flow';" in message
        assert "an existing run" not in message and "--new-id" in message
        with pytest.raises(WorkflowConflictError, match="of 'ne_flow'; fork with another"):
            admin.fork(journal_path, "a", 1, "b")
