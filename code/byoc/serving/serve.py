"""`serve`: multi-model-server with our handler, on SageMaker's port, as the container's PID 1.

SageMaker runs `docker run IMAGE serve` and sends SIGTERM to stop it; its docs rule out tini as
the entrypoint. So `serve` is PID 1 itself: it starts MMS's Java frontend (with our patched
classes, containers/serving/mms), reaps every orphan the process tree leaves it, and on SIGTERM
stops the whole tree.

The serving port answers SageMaker's protocol only (byoc.mms.SageMakerApi in the frontend).
MMS's own management API listens on loopback, on a port from SAGEMAKER_SAFE_PORT_RANGE; a
single-model endpoint registers its model there, with the batching settings MMS takes for
registered models only. Multi-model endpoints (SAGEMAKER_MULTI_MODEL=true) load models through
SageMaker's /models on the serving port instead. /ping answers 200 only once the model can
answer.

The container starts as root, as SageMaker expects; MMS and its workers run as BYOC_SERVER_USER.
Settings: byoc.serving.settings.
"""
import importlib.util
import json
import os
import pwd
import signal
import socket
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
MMS_JAVA = Path(os.environ.get("BYOC_MMS_JAVA", "/opt/byoc/mms"))  # patched jar, our jar, log config
MULTI_MODEL_STORE = Path("/opt/ml/models")


def management_port(s: server_settings.Settings) -> int:
    """The first free loopback port of SAGEMAKER_SAFE_PORT_RANGE, else the first above the serving port."""
    first, last = s.safe_ports or (s.port + 1, server_settings.MAX_PORT)
    for port in range(first, min(last, server_settings.MAX_PORT) + 1):
        if port == s.port:
            continue
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    sys.exit(f"serve: no free loopback port in {first}-{min(last, server_settings.MAX_PORT)} for the model "
             "server's management API (SAGEMAKER_SAFE_PORT_RANGE)")


def mms_properties(s: server_settings.Settings, management: int) -> str:
    return "\n".join([
        f"inference_address=http://0.0.0.0:{s.port}",
        f"management_address=http://127.0.0.1:{management}",  # never reachable from outside
        "model_store=/",
        f"default_service_handler={HANDLER}",
        f"default_workers_per_model={s.workers}",
        # The frontend answers a late request 504 at the timeout (byoc_timeout_seconds); the worker's
        # alarm kills a hung forward pass half a second later (byoc.serving.handler). MMS's own
        # timeout of a worker, which also bounds model loads, is only a backstop behind that.
        # (default_response_timeout would be read in minutes.)
        f"byoc_timeout_seconds={s.timeout_s}",
        f"default_response_timeout_seconds={s.worker_timeout_s}",
        f"number_of_gpu={s.gpus}",
        "decode_input_request=false",  # hand the handler raw bytes
        # Our frontend code answers bodies over this with a JSON 413, without reading them.
        f"max_request_size={s.limits.max_payload_bytes}",
        f"max_response_size={s.limits.max_payload_bytes}",
        # Workers get no PYTHONPATH: MMS would put the model's directory on it, ahead of the
        # standard library, so a model folder's .py files could be imported. byoc comes from a .pth.
        "blacklist_env_vars=PYTHONPATH",
        "async_logging=true",
        # Read by our frontend code (byoc.mms.Settings).
        f"byoc_multi_model={str(s.multi_model).lower()}",
        f"byoc_model_name={MODEL_NAME}",
        f"byoc_model_store={MULTI_MODEL_STORE}",
        f"byoc_workers={s.workers}",
        f"byoc_batch_size={s.max_batch_size}",
        f"byoc_max_batch_delay_ms={s.max_batch_delay_ms}",
        f"byoc_execution_parameters={json.dumps(s.execution_parameters())}",
    ]) + "\n"


def java_command(config: Path, run_dir: Path, s: server_settings.Settings) -> list[str]:
    """MMS's frontend, launched as its own launcher would, with our classes first on the class path.
    Its per-request lines (log4j2.xml) are written on the request's own threads: 0.5-0.8 ms of a
    lone request (BENCHMARKS.md), so they are off unless BYOC_ACCESS_LOG=true.
    BYOC_FRONTEND_JIT=c1 stops the JVM's JIT at C1: C2 keeps recompiling the request path for
    thousands of requests (still after 2,600), up to 200 ms at a time, on the cores torch's threads
    need, and that set the tail of a lone request's forward pass (BENCHMARKS.md); C1's code is as
    fast for this frontend's little Java work per request. C1 also compiles a method after a
    twentieth of the JVM's usual count of calls: otherwise the request path runs partly interpreted
    for the first ~600 requests (~1 ms more outside the model) while C1 compiles ~1,300 methods
    beside the model's threads; scaled, that is over within the first ~20 (BENCHMARKS.md)."""
    mms_home = Path(importlib.util.find_spec("mms").origin).parent.parent
    jit = ["-XX:TieredStopAtLevel=1", "-XX:CompileThresholdScaling=0.05"] if s.frontend_jit == "c1" else []
    return ["java", *jit, f"-Dmodel_server_home={mms_home}", f"-Djava.io.tmpdir={run_dir}",
            f"-Dlog4j.configurationFile=file://{MMS_JAVA / 'log4j2.xml'}",
            f"-Dbyoc.request_log_level={'info' if s.access_log else 'warn'}",
            "-cp", f"{MMS_JAVA / 'model-server.jar'}:{MMS_JAVA / 'byoc-mms.jar'}",
            "com.amazonaws.ml.mms.ModelServer", "--python", sys.executable, "-f", str(config)]


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
    """The unprivileged account for MMS, or None to stay root. Multi-model: each load checks its
    own files as this user (byoc.serving.load_request)."""
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


def register(s: server_settings.Settings, model_dir: Path, server: subprocess.Popen, management: int) -> None:
    """Hand the model to MMS with batching; workers load it in the background. No response_timeout:
    as a query parameter MMS reads it in minutes; the default (default_response_timeout_seconds) holds."""
    query = urllib.parse.urlencode({
        "url": str(model_dir), "model_name": MODEL_NAME, "handler": HANDLER, "runtime": "python",
        "initial_workers": s.workers, "batch_size": s.max_batch_size, "max_batch_delay": s.max_batch_delay_ms,
        "synchronous": "false",
    })
    request = urllib.request.Request(f"http://127.0.0.1:{management}/models?{query}", method="POST")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if server.poll() is not None:
            sys.exit(f"serve: the model server exited with {server.returncode} before the model was registered")
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                print(f"serve: model registered: {json.loads(response.read()).get('status')}", flush=True)
                return
        except urllib.error.HTTPError as error:
            sys.exit(f"serve: the model server refused the model: {error.read().decode(errors='replace')}")
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.1)  # the management API is not up yet
    sys.exit("serve: the model server's management API did not come up within 120 s")


def stop_tree() -> None:
    """Terminate every process below this one (MMS's frontend, its Python servers and workers, and
    any orphan reparented to us), wait up to 20 s (SageMaker kills at 30 s), kill the rest, reap."""
    tree = psutil.Process().children(recursive=True)
    for process in tree:
        try:
            process.terminate()
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(tree, timeout=20)
    for process in alive:
        process.kill()
    psutil.wait_procs(alive, timeout=5)
    reap()


def reap() -> None:
    """Collect every exited child, ours or an orphan's (PID 1's duty), without blocking."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def supervise(server: subprocess.Popen) -> int:
    """Wait for the model server to exit, reaping orphans meanwhile; its exit status."""
    while True:
        try:
            pid, status = os.waitpid(-1, 0)
        except ChildProcessError:
            return server.returncode or 0
        if pid == server.pid:
            server.returncode = os.waitstatus_to_exitcode(status)
            return server.returncode


def on_signal(signum, _frame) -> None:
    print(f"serve: signal {signum}, stopping the model server", flush=True)
    stop_tree()
    sys.exit(0)


def prepare_run_dir(s: server_settings.Settings, user: pwd.struct_passwd | None, management: int) -> Path:
    run_dir = Path(tempfile.mkdtemp(prefix="byoc-mms-"))
    (run_dir / "config.properties").write_text(mms_properties(s, management))
    if user:
        os.chown(run_dir, user.pw_uid, user.pw_gid)
        os.chown(run_dir / "config.properties", user.pw_uid, user.pw_gid)
    return run_dir


def server_environment(s: server_settings.Settings, run_dir: Path, choice: cuda.Choice) -> dict[str, str]:
    """The model server's environment (its workers inherit it, less PYTHONPATH): the device
    choice's libraries first on LD_LIBRARY_PATH, MMS's pid file and logs in the run directory."""
    return dict(cuda.environment(choice, os.environ), TMPDIR=str(run_dir), HOME=str(run_dir),
                OMP_NUM_THREADS=str(s.torch_threads))


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


def check_model(model_dir: Path) -> None:
    """Exit with the reason when model.json cannot serve, or the weights are no safetensors file.
    Without torch, which would add seconds to every start: the weights against the architecture
    and their values are checked where torch is loaded anyway, as each worker loads them
    (byoc.model_package.load), and a refusal there stops the model server (see refusal below)."""
    try:
        contract.load_spec(model_dir)
        weights = contract.weights_file(model_dir)
        from safetensors import safe_open  # its header parser; the numpy framework needs no torch

        with safe_open(weights, framework="numpy"):
            pass
    except contract.ModelPackageError as error:
        sys.exit(f"serve: cannot serve: {error}")
    except Exception as error:  # whatever the safetensors parser says about a damaged file
        sys.exit(f"serve: cannot serve: {weights} is not a safetensors file: {str(error)[:200]}")


def refusal(run_dir: Path) -> str | None:
    """Why a worker refused the model package, if one did (byoc.serving.handler writes it)."""
    try:
        return (run_dir / server_settings.REFUSAL_FILE).read_text(errors="replace").strip()
    except FileNotFoundError:
        return None


def main() -> None:
    choice = choose_device()
    os.environ[contract.DEVICE_SETTING] = choice.device  # the settings and the workers follow the decision
    try:
        s = server_settings.from_environment()
    except server_settings.SettingError as error:
        sys.exit(f"serve: {error}")
    model_dir = MULTI_MODEL_STORE if s.multi_model else Path(os.environ.get("SM_MODEL_DIR", "/opt/ml/model"))
    if not s.multi_model:
        check_model(model_dir)
    user = server_user(s, None if s.multi_model else model_dir)
    management = management_port(s)
    run_dir = prepare_run_dir(s, user, management)
    mode = "multi-model" if s.multi_model else f"model {model_dir}, batches of up to {s.max_batch_size}"
    print(f"serve: port {s.port} (management on 127.0.0.1:{management}), {s.workers} worker(s) x "
          f"{s.torch_threads} thread(s), timeout {s.timeout_s} s, {mode}, as {user.pw_name if user else 'root'}",
          flush=True)
    # Before the model server starts: PID 1 ignores a signal it has no handler for.
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    server = subprocess.Popen(java_command(run_dir / "config.properties", run_dir, s), cwd=run_dir,
                              env=server_environment(s, run_dir, choice),
                              user=user.pw_uid if user else None, group=user.pw_gid if user else None,
                              extra_groups=[] if user else None)
    if not s.multi_model:
        register(s, model_dir, server, management)
    status = supervise(server)
    if reason := refusal(run_dir):
        sys.exit(f"serve: cannot serve: {reason}")
    sys.exit(status)


if __name__ == "__main__":
    main()
