"""Dynamic batching: concurrent requests share one forward pass and keep their own answers."""
import base64
import re
import threading

import pytest
import requests

from support import assert_same_predictions, post_image, start_serving

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def batching_endpoint(docker_client, trained):
    # A long delay makes MMS collect every concurrent request into one batch.
    endpoint = start_serving(docker_client, trained.opt_ml / "model",
                             environment={"BYOC_MAX_BATCH_SIZE": "8", "BYOC_MAX_BATCH_DELAY_MS": "1500"})
    yield endpoint
    endpoint.container.remove(force=True)


def test_concurrent_requests_are_batched_and_a_bad_one_fails_alone(batching_endpoint, endpoint, small_data):
    images = [next((small_data / "test" / folder).glob("*.png"))
              for folder in ("001.T-shirt_top", "002.Trouser", "006.Sandal", "009.Bag")]
    requests_to_send = [(image.read_bytes(), {"Content-Type": "image/png"}) for image in images] + [
        (b"not an image", {"Content-Type": "image/jpeg"}),
        (f'{{"images": ["{base64.b64encode(images[0].read_bytes()).decode()}", '
         f'"{base64.b64encode(images[1].read_bytes()).decode()}"]}}'.encode(), {"Content-Type": "application/json"}),
    ]
    answers = [None] * len(requests_to_send)
    start = threading.Barrier(len(requests_to_send))

    def send(i, body, headers):
        start.wait()
        answers[i] = requests.post(f"{batching_endpoint.url}/invocations", data=body, headers=headers, timeout=60)

    threads = [threading.Thread(target=send, args=(i, *r)) for i, r in enumerate(requests_to_send)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    alone = [post_image(f"{endpoint.url}/invocations", image).json() for image in images]  # unbatched server
    for answer, expected in zip(answers[:4], alone):
        assert answer.status_code == 200
        assert_same_predictions(answer.json()["predictions"], expected["predictions"])
    assert answers[4].status_code == 400 and "not a JPEG image" in answers[4].json()["error"]
    assert answers[5].status_code == 200
    assert_same_predictions(answers[5].json()["predictions"], [alone[0]["predictions"], alone[1]["predictions"]])
    assert all(a.headers["Content-Type"].startswith("application/json") for a in answers)

    logs = batching_endpoint.container.logs().decode(errors="replace")
    sizes = [int(n) for n in re.findall(r"forward pass: (\d+) request", logs)]
    assert max(sizes) >= 4, f"no batched forward pass in the log: {sizes}"
