"""The multi-model load check (byoc.serving.load_request): what a load may name, and the memory rule."""
import json
import os
import subprocess
import sys

import pytest
import torch

from byoc import model_package
from byoc.contract import ModelSpec, Preprocessing
from byoc.serving import load_request, memory
from byoc.serving.errors import RequestError

SPEC = ModelSpec("small_cnn", ["a", "b"], Preprocessing(28, 28))


@pytest.fixture
def store(tmp_path):
    """/opt/ml/models as SageMaker lays it out: <store>/<id>/model, holding one small package."""
    torch.manual_seed(0)
    model_package.save(model_package.build(SPEC), SPEC, tmp_path / "store" / "m1" / "model")
    return tmp_path / "store"


def body(**fields) -> bytes:
    return json.dumps(fields).encode()


def test_a_sagemaker_load_request_names_a_package_under_the_store(store):
    answer = load_request.check(body(model_name="m1", url=f"{store}/m1/model"), store, 1)
    assert answer == {"status": 200, "model_name": "m1", "path": str(store / "m1" / "model")}


@pytest.mark.parametrize("fields, status, says", [
    ({"model_name": "m1", "url": "https://example.com/model.tar.gz"}, 400, "models are not downloaded"),
    ({"model_name": "m1", "url": "file:///opt/ml/models/m1/model"}, 400, "models are not downloaded"),
    ({"model_name": "m1", "url": "m1/model"}, 400, "absolute path"),
    ({"model_name": "m1", "url": "{store}/../m1/model"}, 400, "not a directory under"),
    ({"model_name": "m1", "url": "/etc"}, 400, "not a directory under"),
    ({"model_name": "m1", "url": "{store}"}, 400, "not a directory under"),
    ({"model_name": "m1", "url": "{store}/nope/model"}, 404, "does not exist"),
    ({"model_name": "m1", "url": "{store}/m1/model/model.json"}, 400, "not a model directory"),
    ({"model_name": "m1", "url": "{store}/m1/model", "handler": "os:system"}, 400, "not accepted: handler"),
    ({"model_name": "m1", "url": "{store}/m1/model", "runtime": "python2"}, 400, "not accepted: runtime"),
    ({"model_name": "m1", "url": "{store}/m1/model", "initial_workers": 8}, 400, "not accepted: initial_workers"),
    ({"url": "{store}/m1/model"}, 400, "A load request is"),
    ({"model_name": "../x", "url": "{store}/m1/model"}, 400, "model_name '../x'"),
    ({"model_name": "a/b", "url": "{store}/m1/model"}, 400, "model_name 'a/b'"),
    ({"model_name": "x" * 129, "url": "{store}/m1/model"}, 400, "1-128"),
    ({"model_name": 7, "url": "{store}/m1/model"}, 400, "model_name 7"),
    ({"model_name": "m1", "url": 7}, 400, "url must be"),
])
def test_anything_else_is_refused_naming_why(store, fields, status, says):
    fields = {k: v.format(store=store) if isinstance(v, str) else v for k, v in fields.items()}
    with pytest.raises(RequestError) as error:
        load_request.check(body(**fields), store, 1)
    assert (error.value.status, says in error.value.message) == (status, True), error.value.message


def test_a_symlink_out_of_the_store_is_refused(store, tmp_path):
    outside = tmp_path / "outside"
    (store / "m1" / "model").rename(outside)
    (store / "m1" / "model").symlink_to(outside)
    with pytest.raises(RequestError, match="not a directory under"):
        load_request.check(body(model_name="m1", url=f"{store}/m1/model"), store, 1)


def test_a_broken_package_is_a_400(store):
    (store / "m1" / "model" / "model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(RequestError, match="not a safetensors file") as error:
        load_request.check(body(model_name="m1", url=f"{store}/m1/model"), store, 1)
    assert error.value.status == 400
    (store / "m1" / "model" / "model.json").write_text("{}")
    with pytest.raises(RequestError, match="is not a model package: .*format_version"):
        load_request.check(body(model_name="m1", url=f"{store}/m1/model"), store, 1)


def test_a_pickle_in_place_of_the_weights_is_a_400_never_loaded(store):
    """Weights that do not fit model.json, or are not finite, are refused by the worker as it loads
    them, also with a 400 (tests/containers/test_serving_multi_model.py): that needs torch."""
    (store / "m1" / "model" / "model.safetensors").rename(store / "m1" / "model" / "model.pth")
    with pytest.raises(RequestError, match="model.pth is never loaded") as error:
        load_request.check(body(model_name="m1", url=f"{store}/m1/model"), store, 1)
    assert error.value.status == 400


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads everything; the container test covers it as byoc")
def test_files_the_server_user_cannot_read_are_a_403(store):
    (store / "m1" / "model" / "model.safetensors").chmod(0o000)
    with pytest.raises(RequestError, match="not readable by the model server's user") as error:
        load_request.check(body(model_name="m1", url=f"{store}/m1/model"), store, 1)
    assert error.value.status == 403


def test_no_room_in_memory_is_a_507(store, monkeypatch):
    monkeypatch.setattr(memory, "available", lambda: memory.WORKER_BYTES + 1024)
    with pytest.raises(RequestError, match="needs about .* MiB to load") as error:
        load_request.check(body(model_name="m1", url=f"{store}/m1/model"), store, 2)
    assert error.value.status == 507


def test_room_is_the_cgroup_limit_less_its_processes_memory_not_its_page_cache(tmp_path):
    (tmp_path / "memory.max").write_text("1073741824\n")
    (tmp_path / "memory.stat").write_text(f"anon {300 * memory.MIB}\nfile {500 * memory.MIB}\n"
                                          f"shmem {100 * memory.MIB}\n")
    assert memory.cgroup_room(tmp_path) == (1024 - 400) * memory.MIB
    (tmp_path / "memory.max").write_text("max\n")
    assert memory.cgroup_room(tmp_path) is None
    v1 = tmp_path / "v1" / "memory"
    v1.mkdir(parents=True)
    (v1 / "memory.limit_in_bytes").write_text(str(2 << 30))
    (v1 / "memory.stat").write_text(f"cache {1 << 30}\nrss 7\ntotal_rss {1 << 30}\ntotal_shmem 0\n")
    assert memory.cgroup_room(tmp_path / "v1") == 1 << 30


def test_the_command_answers_one_json_line(store):
    result = subprocess.run([sys.executable, "-m", "byoc.serving.load_request", "--store", str(store)],
                            input=b'{"model_name": "m1", "url": "https://x"}', capture_output=True, check=True)
    assert json.loads(result.stdout)["status"] == 400
