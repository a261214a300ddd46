"""SageMaker Python SDK v3 local mode with our images: ModelTrainer(training_mode=
Mode.LOCAL_CONTAINER), which starts the training image with no command, then a local endpoint
through the local session's clients (create_model, create_endpoint_config, create_endpoint,
invoke_endpoint). No AWS: no credentials, no network."""
import pytest
import requests

from sdk_harness import (SERVING_IMAGE, TRAINING_IMAGE, check_artifacts, check_predictions, run_driver, sample_images,
                         wait_until_stopped)

pytestmark = pytest.mark.docker


def test_v3_model_trainer_trains_and_local_endpoint_predicts(small_data, sdk_docker, sdk_root, sdk_env, serving_port,
                                                             outbound):
    images = sample_images(small_data)
    run = run_driver("v3", sdk_docker, sdk_root, sdk_env, [
        "--data", str(small_data), "--container-root", str(sdk_root), "--job-name", "byoc-sdk-v3",
        "--port", str(serving_port), "--predict", *map(str, images)])

    assert run.result["sdk_version"].startswith("3.")
    assert run.result["endpoint_status"] == "InService"
    model_dir = check_artifacts(run.result["model_data"], small_data, sdk_root / "unpacked")
    accuracy = check_predictions(run.result["predictions"], images, model_dir)
    assert accuracy >= 0.5, f"served top-1 accuracy {accuracy:.2f} on {len(images)} test images"

    assert sorted(c["image"] for c in run.containers) == sorted([SERVING_IMAGE, TRAINING_IMAGE])
    training = next(c for c in run.containers if c["image"] == TRAINING_IMAGE)
    assert training["exit_code"] == 0
    assert wait_until_stopped(sdk_docker, sdk_root) == []
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.1:{serving_port}/ping", timeout=5)
    assert outbound.attempts == []
