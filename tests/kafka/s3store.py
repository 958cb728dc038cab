"""A local S3 server (moto, on a thread of the test process) with one fresh bucket: storage that
outlives a broker process, so a test can kill the broker and start it again with its data.
"""

from __future__ import annotations

import logging
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import boto3
from moto.server import ThreadedMotoServer

REGION = "us-east-1"


@dataclass(frozen=True)
class S3Store:
    endpoint: str
    bucket: str

    @property
    def url(self) -> str:
        """Tansu's --storage-engine for this bucket."""
        return f"s3://{self.bucket}/"

    @property
    def env(self) -> dict[str, str]:
        """What Tansu needs to reach the store (moto accepts any credentials)."""
        return {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
                "AWS_DEFAULT_REGION": REGION, "AWS_ENDPOINT": self.endpoint,
                "AWS_ALLOW_HTTP": "true"}


@contextmanager
def running_s3() -> Iterator[S3Store]:
    """Serve S3 on a free loopback port with a new bucket; on exit stop and forget everything
    (moto keeps its state in process globals, so the exit resets it for the next test)."""
    requests_log = logging.getLogger("werkzeug")  # one INFO line per request otherwise
    level = requests_log.level
    requests_log.setLevel(logging.WARNING)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    store = S3Store(f"http://{host}:{port}", f"tansu-{uuid.uuid4().hex[:12]}")
    try:
        client = boto3.client("s3", endpoint_url=store.endpoint, region_name=REGION,
                              aws_access_key_id="test", aws_secret_access_key="test")
        client.create_bucket(Bucket=store.bucket)
        client.close()
        yield store
    finally:
        try:
            reset = urllib.request.Request(f"{store.endpoint}/moto-api/reset", method="POST")
            urllib.request.urlopen(reset, timeout=10).close()
        finally:
            server.stop()
            requests_log.setLevel(level)
