"""The consumer's lag figures (kafka/lag.py) with a stand-in for kafka-python's
consumer: every assigned partition gets a figure, a partition taken away by a rebalance is
dropped (kafka-python refuses to answer for it), and a failure never reaches the poll."""

from __future__ import annotations

from collections import namedtuple
from typing import Any

from eoflow.engine.kafka.lag import note_lags

TP = namedtuple("TP", "topic partition")
Record = namedtuple("Record", "offset")


class Consumer:
    def __init__(self, assigned: set[Any], highwater: dict[Any, int]) -> None:
        self.assigned, self.marks = assigned, highwater

    def assignment(self) -> set[Any]:
        return self.assigned

    def highwater(self, tp: Any) -> int | None:
        if tp not in self.assigned:
            raise RuntimeError("Partition is not assigned")  # as kafka-python does
        return self.marks.get(tp)


class Source:
    """The part of KafkaSource that keeps the figures."""

    def __init__(self, consumer: Consumer) -> None:
        self.consumer, self.following, self.lags = consumer, {}, {}

    def _note_lags(self, batches: dict[Any, list[Any]]) -> None:
        self.following, self.lags = note_lags(self.consumer, self.following, batches,
                                              self.lags)


def source(consumer: Consumer) -> Source:
    return Source(consumer)


def test_lags_follow_the_assignment() -> None:
    a, b = TP("t", 0), TP("t", 1)
    consumer = Consumer({a, b}, {a: 10, b: 7})
    src = source(consumer)
    src._note_lags({a: [Record(3)], b: [Record(6)]})
    assert src.lags == {("t", 0): 6, ("t", 1): 0}
    consumer.marks[a] = 12
    src._note_lags({a: []})  # nothing new polled: the figure still moves with the watermark
    assert src.lags == {("t", 0): 8, ("t", 1): 0}
    consumer.assigned = {a}  # b went to another consumer
    src._note_lags({})
    assert src.lags == {("t", 0): 8}


def test_a_failure_never_reaches_the_poll() -> None:
    class Broken(Consumer):
        def assignment(self) -> set[Any]:
            raise RuntimeError("mid-rebalance")

    src = source(Broken(set(), {}))
    src._note_lags({TP("t", 0): [Record(1)]})  # no exception
    assert src.lags == {}
