"""`docker compose up train`, then `serve`, over a local /opt/ml tree."""
import json
import os
import subprocess
from pathlib import Path

import pytest
import requests

from byoc import contract
from support import COMPOSE_PREFIX, free_port

pytestmark = pytest.mark.docker
REPO = Path(__file__).resolve().parents[2]


def test_compose_trains_then_serves(small_data, tmp_path, docker_client):
    config = tmp_path / "config"
    config.mkdir()
    for name in ("inputdataconfig.json", "resourceconfig.json"):
        (config / name).write_text((REPO / "containers/local/config" / name).read_text())
    hyperparameters = contract.encode_hyperparameters({"epochs": 2, "batch_size": 64})
    (config / "hyperparameters.json").write_text(json.dumps(hyperparameters))
    port = free_port()
    env = dict(os.environ, DATA_DIR=str(small_data), OPT_ML_DIR=str(tmp_path / "opt_ml"),
               CONFIG_DIR=str(config), SERVE_PORT=str(port))
    compose = ["docker", "compose", "-p", f"{COMPOSE_PREFIX}-test-{port}", "-f", str(REPO / "docker-compose.yml")]

    def run(*args, timeout=600):
        return subprocess.run([*compose, *args], env=env, capture_output=True, text=True, timeout=timeout)

    try:
        trained = run("up", "--exit-code-from", "train", "train")
        assert trained.returncode == 0, trained.stdout[-3000:] + trained.stderr[-2000:]
        assert (tmp_path / "opt_ml/model/model.safetensors").exists()
        assert (tmp_path / "opt_ml/output/success").exists()

        served = run("up", "-d", "--wait", "serve", timeout=180)
        assert served.returncode == 0, served.stdout + served.stderr
        image = next((small_data / "test" / "004.Dress").glob("*.png"))
        response = requests.post(f"http://127.0.0.1:{port}/invocations", data=image.read_bytes(),
                                 headers={"Content-Type": "image/png"}, timeout=30)
        assert response.status_code == 200 and len(response.json()["predictions"]) == 5
    finally:
        run("down", "--remove-orphans", timeout=120)
