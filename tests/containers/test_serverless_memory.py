"""The serving image in the memory a serverless endpoint gives it: SageMaker's smallest size,
1024 MB, with no swap (docker's mem_limit = memswap_limit). The shared trained model loads, /ping
answers, single requests and a burst of a full dynamic batch are answered as the model answers on
the host, and the container is not killed for memory. (make bench-serverless-memory measures the
sizes each model needs, ResNet-50 included: BENCHMARKS.md.)"""
from concurrent.futures import ThreadPoolExecutor

import pytest

from support import assert_same_predictions, expected_answer, post_image, start_serving

pytestmark = pytest.mark.docker
SMALLEST_SERVERLESS_MB = 1024


def test_the_image_serves_in_the_smallest_serverless_memory(docker_client, trained, small_data):
    model = trained.opt_ml / "model"
    limit = f"{SMALLEST_SERVERLESS_MB}m"
    endpoint = start_serving(docker_client, model, mem_limit=limit, memswap_limit=limit, wait=180)
    try:
        images = [next((small_data / "test" / folder.name).glob("*.png"))
                  for folder in sorted((small_data / "test").iterdir())][:8]
        for image in images[:2]:
            answer = post_image(f"{endpoint.url}/invocations", image)
            assert answer.status_code == 200, answer.text
            assert_same_predictions(answer.json()["predictions"],
                                    expected_answer(model, image.read_bytes())["predictions"])
        with ThreadPoolExecutor(len(images)) as pool:  # a full dynamic batch at once: the most memory
            answers = list(pool.map(lambda path: post_image(f"{endpoint.url}/invocations", path), images))
        assert [a.status_code for a in answers] == [200] * len(images)
        endpoint.container.reload()
        assert endpoint.container.attrs["HostConfig"]["Memory"] == SMALLEST_SERVERLESS_MB * 1024 * 1024
        assert not endpoint.container.attrs["State"]["OOMKilled"]
        assert endpoint.container.status == "running"
    finally:
        endpoint.container.remove(force=True)
