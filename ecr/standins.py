"""AWS stand-ins on loopback: moto's server (ECR, SageMaker, S3, ... APIs) and Debian's
docker-registry (the registry that receives pushes). For tests and `make standins`.

    python -m ecr.standins up --dir DIR --moto-port 4566 --registry-port 5000   # prints the env to use
    python -m ecr.standins down --dir DIR
"""
import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
REGISTRY_CONFIG = """version: 0.1
log: {{level: warn}}
storage:
  filesystem: {{rootdirectory: {root}}}
  delete: {{enabled: true}}
http:
  addr: 127.0.0.1:{port}
"""


def docker_registry_binary(tools: Path = ROOT / ".tools" / "docker-registry") -> str:
    """Debian's docker-registry, unpacked into tools on first use."""
    return subprocess.run([str(ROOT / "scripts" / "install-docker-registry.sh"), str(tools)],
                          capture_output=True, text=True, check=True).stdout.strip()


def _wait(url: str, process: subprocess.Popen, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode}")
        try:
            requests.get(url, timeout=1)
            return
        except requests.ConnectionError:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError(f"{what} did not answer on {url} within {timeout} s")


def start_moto(port: int, log: Path) -> subprocess.Popen:
    moto = Path(sys.executable).with_name("moto_server")
    process = subprocess.Popen([str(moto), "-H", "127.0.0.1", "-p", str(port)],
                               stdout=log.open("ab"), stderr=subprocess.STDOUT, start_new_session=True)
    _wait(f"http://127.0.0.1:{port}/moto-api/", process, "moto_server")
    return process


def start_registry(port: int, workdir: Path) -> subprocess.Popen:
    storage = workdir / "registry-storage"
    storage.mkdir(parents=True, exist_ok=True)
    config = workdir / "registry.yml"
    config.write_text(REGISTRY_CONFIG.format(root=storage, port=port))
    process = subprocess.Popen([docker_registry_binary(), "serve", str(config)],
                               stdout=(workdir / "registry.log").open("ab"), stderr=subprocess.STDOUT,
                               start_new_session=True)
    _wait(f"http://127.0.0.1:{port}/v2/", process, "docker-registry")
    return process


def env(moto_port: int, registry_port: int) -> dict[str, str]:
    """What makes boto3 and `python -m ecr` use the stand-ins (fake credentials: moto ignores them)."""
    return {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{moto_port}", "ECR_REGISTRY": f"127.0.0.1:{registry_port}",
            "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1"}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m ecr.standins", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("action", choices=["up", "down"])
    p.add_argument("--dir", type=Path, default=ROOT / ".tools" / "standins")
    p.add_argument("--moto-port", type=int, default=4566)
    p.add_argument("--registry-port", type=int, default=5000)
    args = p.parse_args(argv)
    args.dir.mkdir(parents=True, exist_ok=True)
    pids = args.dir / "pids"
    if args.action == "down":
        for pid in pids.read_text().split() if pids.exists() else []:
            try:
                os.killpg(int(pid), signal.SIGTERM)
            except ProcessLookupError:
                pass
        pids.unlink(missing_ok=True)
        return 0
    if pids.exists():
        print(f"stand-ins already up ({pids}); `down` first", file=sys.stderr)
        return 1
    processes = [start_moto(args.moto_port, args.dir / "moto.log"), start_registry(args.registry_port, args.dir)]
    pids.write_text(" ".join(str(p.pid) for p in processes))
    for key, value in env(args.moto_port, args.registry_port).items():
        print(f"export {key}={value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
