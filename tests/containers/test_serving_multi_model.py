"""SAGEMAKER_MULTI_MODEL=true: SageMaker's /models protocol (list, load, invoke, unload) for two models."""
import shutil

import pytest
import requests

from support import label_of, post_image, run_training, start_serving

pytestmark = pytest.mark.docker
THREE_CLASSES = ("002.Trouser", "006.Sandal", "009.Bag")


@pytest.fixture(scope="module")
def three_class_model(docker_client, small_data, tmp_path_factory):
    """A second, different model: trained on three of the ten classes."""
    train = tmp_path_factory.mktemp("three") / "train"
    for folder in THREE_CLASSES:
        shutil.copytree(small_data / "train" / folder, train / folder)
    run = run_training(docker_client, tmp_path_factory.mktemp("opt_ml3"), {"epochs": 1, "batch_size": 64},
                       {"train": train})
    assert run.exit_code == 0, run.logs[-2000:]
    return run.opt_ml / "model"


@pytest.fixture(scope="module")
def models_endpoint(docker_client, trained, three_class_model, tmp_path_factory):
    # SageMaker unpacks each model to /opt/ml/models/<id>/model and names that path when loading.
    models = tmp_path_factory.mktemp("models")
    shutil.copytree(trained.opt_ml / "model", models / "ten" / "model")
    shutil.copytree(three_class_model, models / "three" / "model")
    models.chmod(0o755)
    endpoint = start_serving(docker_client, None, environment={"SAGEMAKER_MULTI_MODEL": "true"},
                             volumes={str(models): {"bind": "/opt/ml/models", "mode": "ro"}})
    yield endpoint
    endpoint.container.remove(force=True)


def test_load_list_invoke_unload_two_models(models_endpoint, small_data):
    url = models_endpoint.url
    assert requests.get(f"{url}/models", timeout=10).json()["models"] == []
    for name in ("ten", "three"):
        response = requests.post(f"{url}/models", json={"model_name": name, "url": f"/opt/ml/models/{name}/model"},
                                 timeout=120)
        assert response.status_code == 200, response.text
    assert sorted(m["modelName"] for m in requests.get(f"{url}/models", timeout=10).json()["models"]) == [
        "ten", "three"]

    bag = next((small_data / "test" / "009.Bag").glob("*.png"))
    ten = post_image(f"{url}/models/ten/invoke", bag).json()["predictions"]
    three = post_image(f"{url}/models/three/invoke", bag).json()["predictions"]
    assert len(ten) == 5 and len(three) == 3  # top-5, capped at the model's classes
    assert {p["label"] for p in three} == {label_of(small_data / "test" / f) for f in THREE_CLASSES}

    assert requests.delete(f"{url}/models/three", timeout=60).status_code == 200
    assert post_image(f"{url}/models/three/invoke", bag).status_code == 404
    assert post_image(f"{url}/models/ten/invoke", bag).json()["predictions"] == ten
    assert requests.get(f"{url}/ping", timeout=5).status_code == 200
