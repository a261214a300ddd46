"""A short stress run against a batching server: sixteen clients mixing good requests (answers of
varying size) with the corpus' bad ones. Every good request is answered 200, every bad one its
4xx, and MMS's frontend drops no worker. With a model this fast, MMS's own response decoder
dropped workers in every 30 s soak (Invalid message size, then 500 Worker died): bench_soak.py
--decoder original shows it, BENCHMARKS.md has the figures."""
import re
from collections import Counter

import pytest

from hostile import bad_requests, mixed_load
from support import start_serving

pytestmark = pytest.mark.docker
SECONDS = 15
WORKER_TROUBLE = re.compile(r"Worker disconnected|Retry worker|Unknown exception|Backend worker process died|"
                            r"Invalid message size|Message size exceed limit")


def test_sixteen_clients_mixing_good_and_hostile_requests_lose_nothing(docker_client, trained, small_data):
    endpoint = start_serving(docker_client, trained.opt_ml / "model",
                             environment={"BYOC_MAX_BATCH_SIZE": "8", "BYOC_MAX_BATCH_DELAY_MS": "5"})
    try:
        endpoint.container.reload()
        host = endpoint.container.attrs["NetworkSettings"]["IPAddress"]
        good = [path.read_bytes() for path in sorted((small_data / "test").glob("*/*.png"))[:50]]
        results = mixed_load(host, 8080, good, bad_requests(), SECONDS, 16)
        wrong = Counter((kind, status, expected) for kind, status, expected, _ in results if status != expected)
        assert sum(kind == "good" for kind, *_ in results) > 50 and not wrong, wrong
        logs = endpoint.container.logs().decode(errors="replace")
        assert not WORKER_TROUBLE.findall(logs)
        batches = [int(n) for n in re.findall(r"forward pass: (\d+) request", logs)]
        assert max(batches) > 1, "no batched forward pass: the stress did not reach the decoder's batch path"
    finally:
        endpoint.container.remove(force=True)
