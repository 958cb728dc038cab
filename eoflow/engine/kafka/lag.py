"""A consumer's lag per partition, for the eoflow.kafka.consumer.lag gauge (engine/otel.py).

Works on kafka-python's consumer through two of its methods, without importing it (source.py
stays its only importer): each assigned partition's high watermark, from the last fetch
response (no request), minus the next offset to poll.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

log = logging.getLogger("eoflow.kafka")
Partition = tuple[str, int]


def note_lags(consumer: Any, following: dict[Any, int], batches: Mapping[Any, list[Any]],
              lags: dict[Partition, int]) -> tuple[dict[Any, int], dict[Partition, int]]:
    """After a poll that returned `batches` (per TopicPartition, its records): the next offset
    to poll per assigned partition, and each one's lag. A metric never fails a poll: on any
    error (kafka-python's state mid-rebalance) the last figures stay."""
    try:
        following = dict(following)
        for tp, records in batches.items():
            if records:
                following[tp] = records[-1].offset + 1
        assigned = consumer.assignment()  # highwater() refuses any other partition
        following = {tp: n for tp, n in following.items() if tp in assigned}
        now: dict[Partition, int] = {}
        for tp, offset in following.items():
            highwater = consumer.highwater(tp)
            if highwater is not None:
                now[(tp.topic, tp.partition)] = max(0, highwater - offset)
        return following, now
    except Exception as error:
        log.debug("consumer lag not computed: %s", error)
        return following, lags
