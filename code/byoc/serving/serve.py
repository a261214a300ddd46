"""`serve`: start multi-model-server with our handler on SageMaker's port.

Settings (environment):
  SAGEMAKER_BIND_TO_PORT          port for /ping and /invocations (8080)
  SAGEMAKER_MODEL_SERVER_WORKERS  worker processes (one per core)
  SAGEMAKER_MODEL_SERVER_TIMEOUT  seconds a request may take (60)
  SM_MODEL_DIR                    the model package (/opt/ml/model)
"""
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import psutil

from byoc import model_package

HANDLER = "byoc.serving.handler_service:handle"


def setting(name: str, default: int) -> int:
    raw = os.environ.get(name, "")
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        sys.exit(f"serve: {name}={raw!r} must be a whole number")
    if value < 1:
        sys.exit(f"serve: {name}={raw!r} must be at least 1")
    return value


def mms_properties(port: int, workers: int, timeout: int, model_store: Path) -> str:
    return "\n".join([
        f"inference_address=http://0.0.0.0:{port}",
        # Management API (register/unregister models) only on loopback for a single-model endpoint.
        f"management_address=http://127.0.0.1:{port + 1}",
        f"model_store={model_store}",
        f"default_service_handler={HANDLER}",
        f"default_workers_per_model={workers}",
        f"default_response_timeout={timeout}",
        "decode_input_request=false",  # hand the handler raw bytes
        "max_request_size=6291456",  # SageMaker's real-time payload limit, 6 MiB
        "max_response_size=6291456",
        "async_logging=true",
    ]) + "\n"


def stop(process: subprocess.Popen) -> None:
    """Terminate MMS's launcher, the Java frontend and its Python workers."""
    try:
        tree = psutil.Process(process.pid).children(recursive=True) + [psutil.Process(process.pid)]
    except psutil.NoSuchProcess:
        return
    for p in tree:
        try:
            p.terminate()
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(tree, timeout=20)
    for p in alive:
        p.kill()


def main() -> None:
    model_dir = Path(os.environ.get("SM_MODEL_DIR", "/opt/ml/model"))
    try:
        model_package.load_spec(model_dir)  # fail here, clearly, rather than in every worker
    except model_package.ModelPackageError as error:
        sys.exit(f"serve: cannot serve: {error}")

    port = setting("SAGEMAKER_BIND_TO_PORT", 8080)
    cores = len(os.sched_getaffinity(0))
    workers = setting("SAGEMAKER_MODEL_SERVER_WORKERS", cores)
    timeout = setting("SAGEMAKER_MODEL_SERVER_TIMEOUT", 60)

    run_dir = Path(tempfile.mkdtemp(prefix="byoc-mms-"))
    config = run_dir / "config.properties"
    config.write_text(mms_properties(port, workers, timeout, model_dir.parent))
    env = dict(os.environ, TMPDIR=str(run_dir),  # MMS keeps its pid file there: a fresh one each start
               OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", str(max(1, cores // workers))))
    command = [sys.executable, "-m", "mms.model_server", "--start", "--foreground", "--mms-config", str(config),
               "--model-store", str(model_dir.parent), "--models", f"model={model_dir.name}"]
    print(f"serve: port {port}, {workers} worker(s), model {model_dir}", flush=True)
    process = subprocess.Popen(command, cwd=run_dir, env=env)

    def on_signal(signum, _frame):
        print(f"serve: signal {signum}, stopping the model server", flush=True)
        stop(process)
        sys.exit(0)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    sys.exit(process.wait())


if __name__ == "__main__":
    main()
