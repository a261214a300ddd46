"""SageMaker Python SDK v2 local mode with our images: Estimator(instance_type="local") on
file:// channels and output, deploy(instance_type="local") with the serving image, predict,
delete_endpoint. No AWS: no credentials, no network."""
import json
import re

import pytest
import requests

import support
from byoc import contract, model_package
from sdk_harness import (HYPERPARAMETERS, SERVING_IMAGE, TRAINING_IMAGE, check_artifacts, check_predictions, run_driver,
                         sample_images, wait_until_stopped)

pytestmark = pytest.mark.docker


# Python values, as a user passes them to Estimator(hyperparameters=...): SDK v2 sends str() of each
# ("False", "True", "None", "0.04", "1e-05"), which sagemaker-training cannot JSON-decode for the words.
PYTHON_VALUES = {**HYPERPARAMETERS, "hflip": False, "amp": True, "pretrained_weights": None, "lr": 0.04,
                 "weight_decay": 1e-05}


# The job trains at the default image_size (28) and resize_size (0: the same), so the model's input is this.
PREPROCESSING = contract.Preprocessing(resize_size=28, crop_size=28)


def preprocessed_lists(images: list, folder) -> list:
    """Each image as the model's input, as nested lists in a JSON file (what a user hands NumpySerializer)."""
    from PIL import Image

    from byoc.preprocessing import eval_transform

    folder.mkdir()
    paths = []
    for image in images:
        path = folder / f"{image.parent.name}-{image.stem}.json"
        path.write_text(json.dumps(eval_transform(Image.open(image), PREPROCESSING).numpy().tolist()))
        paths.append(path)
    return paths


def test_v2_estimator_trains_deploys_predicts(small_data, sdk_docker, sdk_root, sdk_env, serving_port, outbound):
    images = sample_images(small_data)
    lists = preprocessed_lists(images[:3], sdk_root / "lists")
    run = run_driver("v2", sdk_docker, sdk_root, sdk_env, [
        "--data", str(small_data), "--output", str(sdk_root / "output"), "--container-root", str(sdk_root),
        "--job-name", "byoc-sdk-v2", "--port", str(serving_port), "--predict", *map(str, images),
        "--predict-lists", *map(str, lists), "--hyperparameters", json.dumps(PYTHON_VALUES)])

    # The job got str() values (the toolkit says so) and ran with the Python values they stand for.
    assert "Failed to parse hyperparameter hflip value False to Json" in run.log
    assert "Failed to parse hyperparameter pretrained_weights value None to Json" in run.log
    ran = re.search(r"hyperparameters: (Hyperparameters\(.*\))", run.log).group(1)
    for shown in ("hflip=False", "amp=True", "pretrained_weights=''", "lr=0.04,", "weight_decay=1e-05,"):
        assert shown in ran, ran

    assert run.result["sdk_version"].startswith("2.")
    assert run.result["model_data"] == f"file://{sdk_root}/output/model.tar.gz"
    model_dir = check_artifacts(run.result["model_data"], small_data, sdk_root / "unpacked")
    used = json.loads((sdk_root / "unpacked/output/data/metrics.json").read_text())["hyperparameters"]
    assert {name: used[name] for name in PYTHON_VALUES} == {**PYTHON_VALUES, "pretrained_weights": ""}
    accuracy = check_predictions(run.result["predictions"], images, model_dir)
    check_predictions(run.result["default_predictions"], images, model_dir)  # octet-stream, Accept */*
    served = contract.load_spec(model_dir).preprocessing  # what the lists were made for
    assert (served.resize_size, served.crop_size, *served.mean, *served.std) == (
        PREPROCESSING.resize_size, PREPROCESSING.crop_size, *PREPROCESSING.mean, *PREPROCESSING.std)
    for image, path in zip(images, lists):  # float64 .npy of the image's preprocessed pixels
        support.assert_same_predictions(run.result["npy_predictions"][str(path)]["predictions"],
                                        run.result["predictions"][str(image)]["predictions"])
    assert accuracy >= 0.5, f"served top-1 accuracy {accuracy:.2f} on {len(images)} test images"

    # one training container, one serving container; delete_endpoint stopped the endpoint
    assert sorted(c["image"] for c in run.containers) == sorted([SERVING_IMAGE, TRAINING_IMAGE])
    assert wait_until_stopped(sdk_docker, sdk_root) == []
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.1:{serving_port}/ping", timeout=5)
    assert outbound.attempts == []


def test_v2_estimator_two_instances(small_data, sdk_docker, sdk_root, sdk_env, outbound):
    """The two hosts train one job together (DDP over Gloo, rendezvous on algo-1) and
    model.tar.gz holds one complete model. Local mode runs `compose up
    --abort-on-container-exit`: when the first host finishes, compose stops the other, which
    then exits 143 (SIGTERM) if it was still winding down."""
    run = run_driver("v2", sdk_docker, sdk_root, sdk_env, [
        "--data", str(small_data), "--output", str(sdk_root / "output"), "--container-root", str(sdk_root),
        "--job-name", "byoc-sdk-v2-two", "--instance-count", "2"])

    hosts = {c["service"]: c for c in run.containers}
    assert sorted(h.rsplit("-", 1)[0] for h in hosts) == ["algo-1", "algo-2"], run.containers  # algo-N-<suffix>
    for host in hosts:  # compose prefixes each line with the container name, which ends in the host's
        assert re.search(rf"{host}\s*\|.*distributed training: 2 host\(s\).*this is host {host} ", run.log), \
            f"{host} did not join the distributed job"
    assert sorted(c["exit_code"] for c in hosts.values()) in ([0, 0], [0, 143]), run.containers
    model_dir = check_artifacts(run.result["model_data"], small_data, sdk_root / "unpacked")
    model_package.load(model_dir)  # the weights load: no half-written file from the stopped host
    assert outbound.attempts == []
