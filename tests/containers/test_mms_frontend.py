"""The serving image's MMS frontend: our patched classes are the ones it runs, the patched
response decoder survives every split of a reply that breaks MMS 1.1.11's own, the patched
batch collection sends a lone request at once where MMS's waits the whole delay, and no host
metrics process is started (containers/serving/mms)."""
import re
import time

import pytest

from support import LABEL, SERVING_IMAGE, start_serving

pytestmark = pytest.mark.docker
CHECK = "byoc.mms.checks.DecoderSplitCheck"
BATCH_CHECK = "byoc.mms.checks.BatchCollectionCheck"
PATCHED = "/opt/byoc/mms/model-server.jar"
# The wheel's own jar, left in the venv and unused by `serve`.
ORIGINAL = "$(python3 -c 'import mms, os; print(os.path.dirname(mms.__file__))')/frontend/model-server.jar"
# MMS's host-metrics script, which its MetricManager runs at start-up and every minute; a stand-in
# that leaves a mark is mounted over it.
COLLECTOR = "/opt/venv/lib/python3.11/site-packages/mms/metrics/metric_collector.py"
# `serve` with MMS's own frontend classes (BYOC_MMS_JAVA: the directory of the frontend's jars).
SERVE_WITH_ORIGINAL = ["sh", "-c", f"mkdir /tmp/original && cp {ORIGINAL} /tmp/original/model-server.jar && "
                       "cp /opt/byoc/mms/byoc-mms.jar /opt/byoc/mms/log4j2.xml /tmp/original/ && "
                       "BYOC_MMS_JAVA=/tmp/original exec serve"]


def split_check(docker_client, jar: str, check: str = CHECK) -> tuple[int, str]:
    container = docker_client.containers.run(
        SERVING_IMAGE, ["sh", "-c", f"java -cp /opt/byoc/mms/byoc-mms-checks.jar:{jar} {check}"],
        detach=True, labels=LABEL)
    try:
        code = container.wait(timeout=120)["StatusCode"]
        return code, container.logs(stderr=False).decode()
    finally:
        container.remove(force=True)


def test_the_patched_decoder_decodes_a_batched_reply_split_at_every_byte_offset(docker_client):
    code, output = split_check(docker_client, PATCHED)
    done, total = map(int, re.search(r"(\d+) of (\d+) split replies decoded correctly", output).groups())
    assert code == 0 and done == total > 1000, output


def test_mms_own_decoder_fails_the_same_check(docker_client):
    """The check can fail: against the unpatched class it does, as the frontend did under load."""
    code, output = split_check(docker_client, ORIGINAL)
    done, total = map(int, re.search(r"(\d+) of (\d+) split replies decoded correctly", output).groups())
    assert code == 1 and done < total, output
    assert "Invalid message size" in output


def test_the_patched_model_sends_a_lone_request_at_once_and_still_batches_under_load(docker_client):
    code, output = split_check(docker_client, PATCHED, BATCH_CHECK)
    assert code == 0 and "batches collected as promised" in output and "FAIL" not in output, output


def test_mms_own_model_waits_the_whole_delay_for_a_lone_request(docker_client):
    code, output = split_check(docker_client, ORIGINAL, BATCH_CHECK)
    assert code == 1 and "FAIL a lone request is sent at once" in output, output


def test_serve_runs_the_patched_jar_first_on_the_class_path(docker_client):
    container = docker_client.containers.run(
        SERVING_IMAGE, ["python3", "-c", "from pathlib import Path; from byoc.serving import serve, settings;"
                        "print(' '.join(serve.java_command(Path('/c'), Path('/r'), settings.from_environment())))"],
        detach=True, labels=LABEL, network_mode="none")
    try:
        container.wait(timeout=60)
        command = container.logs().decode()
    finally:
        container.remove(force=True)
    assert f"-cp {PATCHED}:/opt/byoc/mms/byoc-mms.jar com.amazonaws.ml.mms.ModelServer" in command


def metric_collector_ran(docker_client, model_dir, tmp_path, command=("serve",)) -> bool:
    stand_in = tmp_path / "metric_collector.py"
    stand_in.write_text('open("/tmp/metric-collector-ran", "a").write("ran\\n")\n')
    stand_in.chmod(0o644)
    endpoint = start_serving(docker_client, model_dir, command=command,
                             volumes={str(model_dir): {"bind": "/opt/ml/model", "mode": "ro"},
                                      str(stand_in): {"bind": COLLECTOR, "mode": "ro"}})
    try:
        time.sleep(3)  # MMS schedules its first run at once, on start-up
        return endpoint.container.exec_run(["test", "-e", "/tmp/metric-collector-ran"]).exit_code == 0
    finally:
        endpoint.container.remove(force=True)


def test_the_frontend_starts_no_host_metrics_process_where_mms_own_does(docker_client, trained, tmp_path):
    """Its output went only to a logger log4j2.xml turns off; each run took a core for tens of ms."""
    model_dir = trained.opt_ml / "model"
    assert not metric_collector_ran(docker_client, model_dir, tmp_path)
    assert metric_collector_ran(docker_client, model_dir, tmp_path, SERVE_WITH_ORIGINAL)
