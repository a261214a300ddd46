"""SAGEMAKER_MULTI_MODEL=true: SageMaker's /models protocol (list, load, invoke, unload) for two models,
and nothing else of MMS's management API; the server runs unprivileged and checks each model's files."""
import base64
import io
import json
import shutil
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import requests
from PIL import Image
from safetensors.torch import load_file, save_file

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


def _three_names(model):
    document = json.loads((model / "model.json").read_text())
    (model / "model.json").write_text(json.dumps({**document, "class_names": ["a", "b", "c"]}))


def _nan(model):
    weights = load_file(model / "model.safetensors")
    save_file({k: v.fill_(float("nan")) if v.is_floating_point() else v for k, v in weights.items()},
              model / "model.safetensors")


SPOILED = {"three-names": (_three_names), "nan": (_nan)}


@pytest.fixture(scope="module")
def models_endpoint(docker_client, trained, three_class_model, tmp_path_factory):
    # SageMaker unpacks each model to /opt/ml/models/<id>/model and names that path when loading.
    models = tmp_path_factory.mktemp("models")
    shutil.copytree(trained.opt_ml / "model", models / "ten" / "model")
    shutil.copytree(three_class_model, models / "three" / "model")
    # A model whose files the server's user cannot read (root's, mode 0600, as an upload might leave it).
    shutil.copytree(trained.opt_ml / "model", models / "private" / "model")
    (models / "private" / "model" / "model.safetensors").chmod(0o600)
    # A model folder with Python files named like modules the worker imports: they must stay data.
    shutil.copytree(trained.opt_ml / "model", models / "planted" / "model")
    for module in ("numpy", "json", "torch"):
        (models / "planted" / "model" / f"{module}.py").write_text("import os\nos._exit(86)\n")
    # Packages a worker could not load (a class list the head lacks) or would answer NaN with.
    for name, spoil in SPOILED.items():
        shutil.copytree(trained.opt_ml / "model", models / name / "model")
        spoil(models / name / "model")
        for file in (models / name / "model").iterdir():
            file.chmod(0o644)
    for folder in [models, *models.rglob("*")]:
        if folder.is_dir():
            folder.chmod(0o755)
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


def load(url: str, name: str, path: str) -> requests.Response:
    return requests.post(f"{url}/models", json={"model_name": name, "url": path}, timeout=120)


FORBIDDEN = [
    # MMS's registration, by query string, by URL, with a handler or runtime of the caller's choosing
    ("POST", "/models?url=/opt/ml/models/ten/model&model_name=q&initial_workers=1", None, 400, "no query parameters"),
    ("POST", "/models", {"model_name": "q", "url": "https://example.com/model.mar"}, 400, "not downloaded"),
    ("POST", "/models", {"model_name": "q", "url": "file:///opt/ml/models/ten/model"}, 400, "not downloaded"),
    ("POST", "/models", {"model_name": "q", "url": "/opt/ml/models/ten/model", "handler": "os:system"}, 400,
     "not accepted: handler"),
    ("POST", "/models", {"model_name": "q", "url": "/opt/ml/models/ten/model", "runtime": "python2"}, 400,
     "not accepted: runtime"),
    ("POST", "/models", {"model_name": "q", "url": "/opt/ml/models/ten/model", "batch_size": 64,
                         "initial_workers": 4, "response_timeout": 1}, 400, "not accepted: batch_size"),
    # paths outside /opt/ml/models
    ("POST", "/models", {"model_name": "q", "url": "/opt/ml/models/../../../etc"}, 400, "not a directory under"),
    ("POST", "/models", {"model_name": "q", "url": "/opt/byoc"}, 400, "not a directory under"),
    ("POST", "/models", {"model_name": "q", "url": "/opt/ml/models/nothing/model"}, 404, "does not exist"),
    ("POST", "/models", {"model_name": "../q", "url": "/opt/ml/models/ten/model"}, 400, "model_name"),
    # worker scaling and retargeting, and the rest of MMS's surface
    ("PUT", "/models/ten?min_worker=4&max_worker=4", None, 405, "PUT is not allowed"),
    ("POST", "/invocations-model?name=ten", None, 404, "No such resource"),
    ("POST", "/invocations", None, 404, "No such resource"),
    ("GET", "/api-description", None, 404, "No such resource"),
    ("OPTIONS", "/", None, 404, "No such resource"),
    ("POST", "/predictions/ten", None, 404, "No such resource"),
    ("GET", "/models/ten/invoke", None, 405, "use POST"),
]


@pytest.mark.parametrize("method, path, body, status, says", FORBIDDEN, ids=[f"{m} {p} {b}" for m, p, b, *_ in FORBIDDEN])
def test_everything_outside_sagemakers_protocol_is_refused(models_endpoint, method, path, body, status, says):
    response = requests.request(method, models_endpoint.url + path, json=body, timeout=60)
    assert response.status_code == status, response.text
    assert says in response.json()["error"]


def test_refused_loads_register_nothing(models_endpoint):
    for method, path, body, *_ in FORBIDDEN:
        requests.request(method, models_endpoint.url + path, json=body, timeout=60)
    names = {m["modelName"] for m in requests.get(f"{models_endpoint.url}/models", timeout=10).json()["models"]}
    assert "q" not in names and "../q" not in names


@pytest.mark.parametrize("name, says", [("three-names", "small_cnn with 3 classes (model.json) needs [3]"),
                                        ("nan", "holds NaN or infinite values")])
def test_a_package_whose_weights_do_not_fit_or_are_nan_is_a_400_and_the_others_serve_on(models_endpoint,
                                                                                       small_data, name, says):
    """Before, the first reached a worker and was a 500; the second loaded and answered every request with an error."""
    url = models_endpoint.url
    assert load(url, "ten", "/opt/ml/models/ten/model").status_code in (200, 409)
    response = load(url, name, f"/opt/ml/models/{name}/model")
    assert response.status_code == 400 and says in response.json()["error"], response.text
    assert name not in {m["modelName"] for m in requests.get(f"{url}/models", timeout=10).json()["models"]}
    bag = next((small_data / "test" / "009.Bag").glob("*.png"))
    assert post_image(f"{url}/models/ten/invoke", bag).status_code == 200
    assert requests.get(f"{url}/ping", timeout=5).status_code == 200


def test_the_model_server_runs_unprivileged(models_endpoint):
    top = models_endpoint.container.top(ps_args="-eo pid,user,args")["Processes"]
    server = [user for _, user, args in top if "java" in args or "model_service_worker" in args]
    assert server and all(user not in ("root", "0") for user in server), top


def test_a_model_the_server_user_cannot_read_is_refused_with_a_403(models_endpoint):
    response = load(models_endpoint.url, "private", "/opt/ml/models/private/model")
    assert response.status_code == 403, response.text
    assert "model.safetensors is not readable by the model server's user 'byoc'" in response.json()["error"]


def test_python_files_in_a_model_folder_are_never_imported(models_endpoint, small_data):
    url = models_endpoint.url
    assert load(url, "planted", "/opt/ml/models/planted/model").status_code == 200
    bag = next((small_data / "test" / "009.Bag").glob("*.png"))
    assert post_image(f"{url}/models/planted/invoke", bag).status_code == 200
    assert requests.delete(f"{url}/models/planted", timeout=60).status_code == 200


def test_loading_a_model_twice_is_a_409_and_unloading_an_unknown_one_a_404(models_endpoint):
    url = models_endpoint.url
    assert load(url, "again", "/opt/ml/models/ten/model").status_code == 200
    assert load(url, "again", "/opt/ml/models/three/model").status_code == 409
    assert requests.delete(f"{url}/models/again", timeout=60).status_code == 200
    assert requests.delete(f"{url}/models/again", timeout=60).status_code == 404
    assert requests.get(f"{url}/models/again", timeout=10).status_code == 404


def test_no_memory_to_load_a_model_is_a_507_and_unloading_another_makes_room(docker_client, trained,
                                                                              tmp_path_factory):
    """SageMaker answers a 507 by unloading models and loading again: in a 700 MiB container one
    model fits, a second does not until the first is gone."""
    models = tmp_path_factory.mktemp("small-host")
    for name in ("a", "b"):
        shutil.copytree(trained.opt_ml / "model", models / name / "model")
    for folder in [models, *models.rglob("*")]:
        if folder.is_dir():
            folder.chmod(0o755)
    endpoint = start_serving(docker_client, None, environment={"SAGEMAKER_MULTI_MODEL": "true"},
                             volumes={str(models): {"bind": "/opt/ml/models", "mode": "ro"}}, mem_limit="700m")
    try:
        url = endpoint.url
        assert load(url, "a", "/opt/ml/models/a/model").status_code == 200
        refused = load(url, "b", "/opt/ml/models/b/model")
        assert refused.status_code == 507, refused.text
        assert "needs about" in refused.json()["error"] and "MiB free" in refused.json()["error"]
        assert requests.delete(f"{url}/models/a", timeout=60).status_code == 200
        assert load(url, "b", "/opt/ml/models/b/model").status_code == 200
        endpoint.container.reload()
        assert not endpoint.container.attrs["State"]["OOMKilled"]
    finally:
        endpoint.container.remove(force=True)


def slow_request_body(lines: int) -> bytes:
    """JSON Lines of large (3000 x 3000) PNGs: a few seconds of decoding, resizing and scoring."""
    ramp = np.linspace(0, 255, 3000, dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(np.stack([np.tile(ramp, (3000, 1))] * 3, axis=-1)).save(buffer, "PNG")
    line = json.dumps({"image": base64.b64encode(buffer.getvalue()).decode()}).encode()
    return b"\n".join([line] * lines)


def test_an_unload_waits_for_the_models_requests_in_flight(models_endpoint):
    """SageMaker unloads the least recently used model when it needs the memory, requests in flight
    or not: they are answered (MMS cut them off with a 500 as it stopped the workers), then it goes."""
    url = models_endpoint.url
    assert load(url, "busy", "/opt/ml/models/ten/model").status_code == 200
    done = {}

    def timed(name, call, *args, **options):
        response = call(*args, **options)
        done[name] = time.monotonic()
        return response

    with ThreadPoolExecutor(2) as pool:
        answer = pool.submit(timed, "answer", requests.post, f"{url}/models/busy/invoke", data=slow_request_body(10),
                             headers={"Content-Type": "application/jsonlines"}, timeout=60)
        time.sleep(0.5)  # the request is with the worker
        unload = pool.submit(timed, "unload", requests.delete, f"{url}/models/busy", timeout=60)
        assert answer.result().status_code == 200, answer.result().text
        assert len(answer.result().text.split("\n")) == 10
        assert unload.result().status_code == 200, unload.result().text
    assert done["answer"] <= done["unload"]
    assert requests.get(f"{url}/models/busy", timeout=10).status_code == 404


@pytest.mark.parametrize("query", ["", "?next_page_token=", "?limit=1&next_page_token=0"])
def test_listing_as_sagemaker_pages_it(models_endpoint, query):
    """SageMaker may list without a token, then with each nextPageToken it was given."""
    url = models_endpoint.url
    for name in ("page-a", "page-b"):
        load(url, name, "/opt/ml/models/ten/model")
    names, token, page = [], None, query
    for _ in range(10):
        response = requests.get(f"{url}/models{page}", headers={"Accept": "application/json"}, timeout=10)
        assert response.status_code == 200, response.text
        names += [m["modelName"] for m in response.json()["models"]]
        token = response.json().get("nextPageToken")
        if token is None:
            break
        page = f"?limit=1&next_page_token={token}" if "limit" in query else f"?next_page_token={token}"
    assert {"page-a", "page-b"} <= set(names) and len(names) == len(set(names))
    for name in ("page-a", "page-b"):
        requests.delete(f"{url}/models/{name}", timeout=60)
