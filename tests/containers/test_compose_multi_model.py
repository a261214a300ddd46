"""The README's multi-model rehearsal: `docker compose --profile multi-model up serve-models` over a
models folder, a model.tar.gz added to it while the server runs (as to a multi-model endpoint's S3
prefix), unpacked where SageMaker unpacks a TargetModel, loaded and invoked through the same
protocol SageMaker's front end speaks, answering as the model does on the host."""
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest
import requests

from support import expected_answer, free_port, assert_same_predictions

pytestmark = pytest.mark.docker
REPO = Path(__file__).resolve().parents[2]


def packed(model_dir: Path, archive: Path) -> Path:
    """model.tar.gz as a training job leaves it: the model folder's files at the archive's root."""
    with tarfile.open(archive, "w:gz") as tar:
        for path in model_dir.iterdir():
            tar.add(path, arcname=path.name)
    return archive


def unpacked(archive: Path, models: Path, name: str) -> str:
    """What SageMaker does with a TargetModel on its first request: /opt/ml/models/<name>/model."""
    target = models / name / "model"
    target.mkdir(parents=True)
    with tarfile.open(archive) as tar:
        tar.extractall(target, filter="data")
    for path in [models / name, target]:
        path.chmod(0o755)
    return f"/opt/ml/models/{name}/model"


def test_compose_rehearses_a_multi_model_endpoint(trained, small_data, tmp_path, docker_client):
    prefix, models, port = tmp_path / "prefix", tmp_path / "models", free_port()
    prefix.mkdir()
    models.mkdir(mode=0o755)
    env = dict(os.environ, MODELS_DIR=str(models), SERVE_PORT=str(port))
    compose = ["docker", "compose", "-p", f"byoc-test-mme-{port}", "-f", str(REPO / "docker-compose.yml"),
               "--profile", "multi-model"]

    def run(*args, timeout=180):
        return subprocess.run([*compose, *args], env=env, capture_output=True, text=True, timeout=timeout)

    url = f"http://127.0.0.1:{port}"
    try:
        started = run("up", "-d", "--wait", "serve-models")
        assert started.returncode == 0, started.stdout + started.stderr
        assert requests.get(f"{url}/models", timeout=10).json()["models"] == []

        # a model added under the prefix while the endpoint runs, then the first request that names it
        archive = packed(trained.opt_ml / "model", prefix / "fashion-v2.tar.gz")
        loaded = requests.post(f"{url}/models", timeout=120,
                               json={"model_name": "fashion-v2", "url": unpacked(archive, models, "fashion-v2")})
        assert loaded.status_code == 200, loaded.text
        image = next((small_data / "test" / "008.Sneaker").glob("*.png"))
        answer = requests.post(f"{url}/models/fashion-v2/invoke", data=image.read_bytes(),
                               headers={"Content-Type": "image/png"}, timeout=30)
        assert answer.status_code == 200, answer.text
        assert_same_predictions(answer.json()["predictions"],
                                expected_answer(trained.opt_ml / "model", image.read_bytes(),
                                                multi_model=True)["predictions"])
        assert [m["modelName"] for m in requests.get(f"{url}/models", timeout=10).json()["models"]] == ["fashion-v2"]
    finally:
        run("down", "--remove-orphans", timeout=120)
        shutil.rmtree(models, ignore_errors=True)
