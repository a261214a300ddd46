"""`serve`: multi-model-server with our handler, on SageMaker's port.

Single-model endpoint: the model in /opt/ml/model is registered through MMS's
management API (on loopback only) with the batching settings, which MMS
cannot take for a model named on its command line. Multi-model endpoint
(SAGEMAKER_MULTI_MODEL=true): SageMaker loads and unloads models itself
through /models on the same port. Either way /ping answers 200 only once the
model can answer (our MMS plugin, see containers/serving/mms-plugins).

The container starts as root, as SageMaker expects; MMS and its workers run
as BYOC_SERVER_USER. Settings: byoc.serving.settings.
"""
import json
import os
import pwd
import signal
import stat
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import psutil

from byoc import contract, cuda
from byoc.serving import settings as server_settings

HANDLER = "byoc.serving.handler:handle"
MODEL_NAME = "model"
PLUGINS = Path(os.environ.get("BYOC_MMS_PLUGINS", "/opt/byoc/mms-plugins"))
LOG_CONFIG = PLUGINS / "log4j2.xml"  # all of MMS's log, workers' included, to stdout
MULTI_MODEL_STORE = Path("/opt/ml/models")


def mms_properties(s: server_settings.Settings) -> str:
    inference = f"http://0.0.0.0:{s.port}"
    # SageMaker's multi-model protocol is MMS's management API on the serving port;
    # a single-model endpoint keeps that API on loopback, one port up.
    management = inference if s.multi_model else f"http://127.0.0.1:{s.port + 1}"
    return "\n".join([
        f"inference_address={inference}",
        f"management_address={management}",
        "model_store=/",  # SageMaker names multi-model paths absolutely
        f"default_service_handler={HANDLER}",
        f"default_workers_per_model={s.workers}",
        f"default_response_timeout={s.timeout_s}",
        f"number_of_gpu={s.gpus}",
        f"plugins_path={PLUGINS}",
        "decode_input_request=false",  # hand the handler raw bytes
        # Netty cuts bodies above this with an empty 413; the handler answers JSON up to it.
        f"max_request_size={2 * s.max_payload_bytes}",
        f"max_response_size={s.max_payload_bytes}",
        "async_logging=true",
    ]) + "\n"


def readable_by(path: Path, user: pwd.struct_passwd) -> bool:
    """Can `user` read every file under path (by owner or world bits; we set no ACLs)?"""
    for item in [path, *path.rglob("*")]:
        mode = item.stat()
        need = (stat.S_IRUSR | (stat.S_IXUSR if item.is_dir() else 0))
        if mode.st_uid == user.pw_uid and mode.st_mode & need == need:
            continue
        world = (stat.S_IROTH | (stat.S_IXOTH if item.is_dir() else 0))
        if mode.st_mode & world != world:
            return False
    return True


def server_user(s: server_settings.Settings, model_dir: Path | None) -> pwd.struct_passwd | None:
    """The unprivileged account for MMS, or None to stay root."""
    if os.geteuid() != 0 or s.server_user == "root":
        return None
    try:
        user = pwd.getpwnam(s.server_user)
    except KeyError:
        sys.exit(f"serve: BYOC_SERVER_USER={s.server_user!r} is not a user in this image")
    if model_dir is not None and not readable_by(model_dir, user):
        print(f"serve: warning: {model_dir} is not readable by {user.pw_name}; the model server runs as root",
              flush=True)
        return None
    return user


def register(s: server_settings.Settings, model_dir: Path, server: subprocess.Popen) -> None:
    """Hand the model to MMS with batching; workers load it in the background."""
    query = urllib.parse.urlencode({
        "url": str(model_dir), "model_name": MODEL_NAME, "initial_workers": s.workers,
        "batch_size": s.max_batch_size, "max_batch_delay": s.max_batch_delay_ms,
        "response_timeout": s.timeout_s, "synchronous": "false",
    })
    url = f"http://127.0.0.1:{s.port + 1}/models?{query}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if server.poll() is not None:
            sys.exit(f"serve: the model server exited with {server.returncode} before the model was registered")
        try:
            with urllib.request.urlopen(urllib.request.Request(url, method="POST"), timeout=10) as response:
                print(f"serve: model registered: {json.loads(response.read()).get('status')}", flush=True)
                break
        except urllib.error.HTTPError as error:
            sys.exit(f"serve: the model server refused the model: {error.read().decode(errors='replace')}")
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.1)  # the management API is not up yet
    else:
        sys.exit("serve: the model server's management API did not come up within 120 s")
    # /invocations carries no model name: tell MMS which model answers it (our plugin).
    name_url = f"http://127.0.0.1:{s.port + 1}/invocations-model?name={MODEL_NAME}"
    try:
        with urllib.request.urlopen(urllib.request.Request(name_url, method="POST"), timeout=10):
            pass
    except (urllib.error.URLError, ConnectionError) as error:
        sys.exit(f"serve: could not route /invocations to the model (byoc MMS plugin): {error}")


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


def choose_device() -> cuda.Choice:
    """Where the workers run the model; exits with the reason when the host's GPUs cannot be used
    (so the endpoint never turns healthy on the CPU in place of a GPU)."""
    try:
        choice = cuda.prepare("serving")
        if choice.device == "cuda":
            cuda.probe(choice, "serving")  # torch, in a process with the workers' environment
    except cuda.CudaUnusable as error:
        sys.exit(f"serve: cannot serve on this host: {error}")
    print(f"serve: device: {choice.reason}", flush=True)
    return choice


def main() -> None:
    choice = choose_device()
    os.environ[contract.DEVICE_SETTING] = choice.device  # the settings and the workers follow the decision
    try:
        s = server_settings.from_environment()
    except server_settings.SettingError as error:
        sys.exit(f"serve: {error}")
    model_dir = MULTI_MODEL_STORE if s.multi_model else Path(os.environ.get("SM_MODEL_DIR", "/opt/ml/model"))
    if not s.multi_model:
        try:
            contract.load_spec(model_dir)  # fail here, clearly, rather than in every worker
        except contract.ModelPackageError as error:
            sys.exit(f"serve: cannot serve: {error}")
    # Multi-model: SageMaker adds models as it goes; their files are its business.
    user = server_user(s, None if s.multi_model else model_dir)

    run_dir = Path(tempfile.mkdtemp(prefix="byoc-mms-"))
    (run_dir / "config.properties").write_text(mms_properties(s))
    env = dict(cuda.environment(choice, os.environ), TMPDIR=str(run_dir), HOME=str(run_dir),  # MMS's pid file, logs
               OMP_NUM_THREADS=str(s.torch_threads))
    if user:
        os.chown(run_dir, user.pw_uid, user.pw_gid)
        os.chown(run_dir / "config.properties", user.pw_uid, user.pw_gid)
    command = [sys.executable, "-m", "mms.model_server", "--start", "--foreground",
               "--mms-config", str(run_dir / "config.properties"), "--log-config", str(LOG_CONFIG)]
    mode = "multi-model" if s.multi_model else f"model {model_dir}, batches of up to {s.max_batch_size}"
    print(f"serve: port {s.port}, {s.workers} worker(s) x {s.torch_threads} thread(s), {mode}, "
          f"as {user.pw_name if user else 'root'}", flush=True)
    server = subprocess.Popen(command, cwd=run_dir, env=env,
                              user=user.pw_uid if user else None, group=user.pw_gid if user else None,
                              extra_groups=[] if user else None)

    def on_signal(signum, _frame):
        print(f"serve: signal {signum}, stopping the model server", flush=True)
        stop(server)
        sys.exit(0)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    if not s.multi_model:
        register(s, model_dir, server)
    sys.exit(server.wait())


if __name__ == "__main__":
    main()
