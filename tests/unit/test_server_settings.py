import json
import socket
from pathlib import Path

import pytest

from byoc.serving import serve, settings

NAMES = ("SAGEMAKER_BIND_TO_PORT", "SAGEMAKER_SAFE_PORT_RANGE", "SAGEMAKER_MODEL_SERVER_WORKERS",
         "SAGEMAKER_MODEL_SERVER_TIMEOUT", "SAGEMAKER_MODEL_SERVER_TIMEOUT_SECONDS", "BYOC_MAX_BATCH_SIZE",
         "BYOC_MAX_PAYLOAD_MB", "SAGEMAKER_MULTI_MODEL", "BYOC_SERVER_USER", "BYOC_MAX_IMAGE_PIXELS",
         "SAGEMAKER_MAX_PAYLOAD_IN_MB")


@pytest.fixture(autouse=True)
def clean(monkeypatch):
    for name in NAMES:
        monkeypatch.delenv(name, raising=False)


def test_defaults():
    s = settings.from_environment()
    assert (s.port, s.safe_ports, s.timeout_s, s.max_batch_size, s.multi_model) == (8080, None, 60, 8, False)
    assert s.limits == settings.Limits(6 * 1024 * 1024, 40_000_000, 100_000_000, 20.0, 64)
    assert s.workers >= 1 and s.torch_threads >= 1 and s.server_user == "byoc"


def test_the_precision_settings_default_to_auto_and_99_5_percent(monkeypatch):
    monkeypatch.delenv("BYOC_PRECISION", raising=False)
    monkeypatch.delenv("BYOC_PRECISION_MIN_AGREEMENT", raising=False)
    s = settings.from_environment()
    assert (s.precision, s.min_agreement) == ("auto", pytest.approx(0.995))
    monkeypatch.setenv("BYOC_PRECISION", "BF16")
    monkeypatch.setenv("BYOC_PRECISION_MIN_AGREEMENT", "99.9")
    s = settings.from_environment()
    assert (s.precision, s.min_agreement) == ("bf16", pytest.approx(0.999))


def test_the_cpu_graph_mode_is_on_unless_eager_is_asked_for(monkeypatch):
    monkeypatch.delenv("BYOC_CPU_GRAPH", raising=False)
    monkeypatch.delenv("SAGEMAKER_MULTI_MODEL", raising=False)
    assert settings.from_environment().cpu_graph is True
    monkeypatch.setenv("BYOC_CPU_GRAPH", "Eager")
    assert settings.from_environment().cpu_graph is False


def test_a_multi_model_endpoint_runs_eagerly_unless_graph_mode_is_asked_for(monkeypatch):
    monkeypatch.delenv("BYOC_CPU_GRAPH", raising=False)
    monkeypatch.setenv("SAGEMAKER_MULTI_MODEL", "true")
    assert settings.from_environment().cpu_graph is False
    monkeypatch.setenv("BYOC_CPU_GRAPH", "onednn")
    assert settings.from_environment().cpu_graph is True


def test_the_access_log_is_off_unless_asked_for(monkeypatch):
    monkeypatch.delenv("BYOC_ACCESS_LOG", raising=False)
    assert settings.from_environment().access_log is False
    monkeypatch.setenv("BYOC_ACCESS_LOG", "TRUE")
    assert settings.from_environment().access_log is True


def test_the_frontend_jvm_stops_its_jit_at_c1_and_compiles_early_unless_tiered_is_asked_for(monkeypatch):
    monkeypatch.delenv("BYOC_FRONTEND_JIT", raising=False)
    command = serve.java_command(Path("/c"), Path("/r"), settings.from_environment())
    assert command[:3] == ["java", "-XX:TieredStopAtLevel=1", "-XX:CompileThresholdScaling=0.05"]
    monkeypatch.setenv("BYOC_FRONTEND_JIT", "Tiered")
    command = serve.java_command(Path("/c"), Path("/r"), settings.from_environment())
    assert not [arg for arg in command if arg.startswith("-XX:")], command


def test_values_are_read(monkeypatch):
    for name, value in {"SAGEMAKER_BIND_TO_PORT": "9000", "SAGEMAKER_MODEL_SERVER_WORKERS": "2",
                        "BYOC_TORCH_THREADS": "3", "BYOC_MAX_BATCH_DELAY_MS": "0", "SAGEMAKER_MULTI_MODEL": "TRUE",
                        "SAGEMAKER_SAFE_PORT_RANGE": "10000-10999", "BYOC_MAX_IMAGE_PIXELS": "1000"}.items():
        monkeypatch.setenv(name, value)
    s = settings.from_environment()
    assert (s.port, s.workers, s.torch_threads, s.max_batch_delay_ms, s.multi_model) == (9000, 2, 3, 0, True)
    assert s.safe_ports == (10000, 10999) and s.limits.max_image_pixels == 1000
    assert s.server_user == "byoc", "multi-model endpoints drop root too"


@pytest.mark.parametrize("names", [("SAGEMAKER_MODEL_SERVER_TIMEOUT",), ("SAGEMAKER_MODEL_SERVER_TIMEOUT_SECONDS",),
                                   ("SAGEMAKER_MODEL_SERVER_TIMEOUT", "SAGEMAKER_MODEL_SERVER_TIMEOUT_SECONDS")])
def test_the_timeout_is_seconds_under_either_name(monkeypatch, names):
    for name in names:
        monkeypatch.setenv(name, "7")
    s = settings.from_environment()
    assert s.timeout_s == 7
    properties = serve.mms_properties(s, 10001)
    assert "byoc_timeout_seconds=7\n" in properties  # the frontend answers 504 then
    assert "default_response_timeout_seconds=301\n" in properties  # MMS's backstop, loads included
    assert "default_response_timeout=" not in properties  # MMS reads that one in minutes


@pytest.mark.parametrize("name, value, says", [
    ("SAGEMAKER_MODEL_SERVER_WORKERS", "two", "whole number"),
    ("BYOC_MAX_BATCH_SIZE", "0", "at least 1"),
    ("SAGEMAKER_MULTI_MODEL", "yes", "true or false"),
    ("SAGEMAKER_BIND_TO_PORT", "0", "at least 1"),
    ("SAGEMAKER_BIND_TO_PORT", "40000", "at most 32766"),
    ("SAGEMAKER_BIND_TO_PORT", "80a", "whole number"),
    ("SAGEMAKER_SAFE_PORT_RANGE", "10000", "LOW-HIGH"),
    ("SAGEMAKER_SAFE_PORT_RANGE", "11000-10000", "LOW-HIGH within 1-65535"),
    ("SAGEMAKER_SAFE_PORT_RANGE", "8080-8080", "other than SAGEMAKER_BIND_TO_PORT=8080"),
    ("SAGEMAKER_SAFE_PORT_RANGE", "40000-40010", "up to 32766"),
    ("SAGEMAKER_MODEL_SERVER_TIMEOUT", "0", "at least 1"),
    ("BYOC_MAX_ASPECT_RATIO", "nan", "at least 1"),
    ("SAGEMAKER_MAX_PAYLOAD_IN_MB", "101", "at most 100"),
    ("SAGEMAKER_MAX_PAYLOAD_IN_MB", "-1", "at least 0"),
    ("BYOC_PRECISION", "fp16", "one of auto, fp32, bf16"),
    ("BYOC_PRECISION_MIN_AGREEMENT", "101", "at most 100"),
    ("BYOC_PRECISION_MIN_AGREEMENT", "-1", "at least 0"),
    ("BYOC_CPU_GRAPH", "inductor", "one of onednn, eager"),
    ("BYOC_ACCESS_LOG", "yes", "one of false, true"),
    ("BYOC_FRONTEND_JIT", "c2", "one of c1, tiered"),
    ("GOMP_SPINCOUNT", "10 thousand", "form"),  # libgomp would keep its default spin
    ("GOMP_SPINCOUNT", "-1", "form"),
    ("GOMP_SPINCOUNT", "1e4", "form"),
])
def test_bad_values_name_the_setting(monkeypatch, name, value, says):
    monkeypatch.setenv(name, value)
    with pytest.raises(settings.SettingError, match=f"{name}.*{says}"):
        settings.from_environment()


@pytest.mark.parametrize("value", ["0", "10000", " 300000 ", "10k", "2 M", "INFINITE", "infinity"])
def test_the_spin_count_takes_what_libgomp_takes(monkeypatch, value):
    """libgomp's form (its env.c parse_spincount): a count, a k/M/G/T multiplier, or infinite."""
    monkeypatch.setenv("GOMP_SPINCOUNT", value)
    settings.from_environment()


def test_two_timeouts_that_disagree_are_refused(monkeypatch):
    monkeypatch.setenv("SAGEMAKER_MODEL_SERVER_TIMEOUT", "60")
    monkeypatch.setenv("SAGEMAKER_MODEL_SERVER_TIMEOUT_SECONDS", "30")
    with pytest.raises(settings.SettingError, match="disagree"):
        settings.from_environment()


def taken_low_port() -> socket.socket:
    """A socket holding a loopback port MMS could bind (below 32767), whose next port is free."""
    for port in range(20000, 32000, 7):
        holder = socket.socket()
        try:
            holder.bind(("127.0.0.1", port))
            with socket.socket() as probe:
                probe.bind(("127.0.0.1", port + 1))
            return holder
        except OSError:
            holder.close()
    pytest.fail("no free low ports")


def test_the_management_port_comes_from_the_safe_range_and_skips_taken_ones(monkeypatch):
    with taken_low_port() as taken:
        port = taken.getsockname()[1]
        monkeypatch.setenv("SAGEMAKER_SAFE_PORT_RANGE", f"{port}-{port + 1}")
        assert serve.management_port(settings.from_environment()) == port + 1


def test_without_a_safe_range_the_management_port_is_the_first_free_one_above_the_serving_port(monkeypatch):
    with taken_low_port() as taken:
        port = taken.getsockname()[1]
        monkeypatch.setenv("SAGEMAKER_BIND_TO_PORT", str(port - 1))
        assert serve.management_port(settings.from_environment()) == port + 1


def test_the_management_api_is_on_loopback_and_workers_get_no_pythonpath():
    properties = serve.mms_properties(settings.from_environment(), 10001)
    assert "management_address=http://127.0.0.1:10001\n" in properties
    assert "inference_address=http://0.0.0.0:8080\n" in properties
    assert "blacklist_env_vars=PYTHONPATH\n" in properties
    assert f"max_request_size={6 * 1024 * 1024}\n" in properties


@pytest.mark.parametrize("own, batch, limit_mb", [(None, None, 6), (None, "20", 20), ("50", "20", 50),
                                                  (None, "0", 100), (None, "1", 6)])
def test_a_transform_jobs_payload_limit_raises_the_body_limit(monkeypatch, own, batch, limit_mb):
    """SAGEMAKER_MAX_PAYLOAD_IN_MB (a job's MaxPayloadInMB; 0: chunked, so SageMaker's 100 MB) is
    honoured where it is larger than BYOC_MAX_PAYLOAD_MB, never lowers it."""
    for name, value in (("BYOC_MAX_PAYLOAD_MB", own), ("SAGEMAKER_MAX_PAYLOAD_IN_MB", batch)):
        if value is not None:
            monkeypatch.setenv(name, value)
    s = settings.from_environment()
    assert s.limits.max_payload_bytes == limit_mb * 1024 * 1024
    assert f"max_request_size={limit_mb * 1024 * 1024}\n" in serve.mms_properties(s, 10001)


@pytest.mark.parametrize("env, expected", [
    ({}, {"MaxConcurrentTransforms": 8, "BatchStrategy": "MultiRecord", "MaxPayloadInMB": 6}),
    ({"SAGEMAKER_MODEL_SERVER_WORKERS": "4"}, {"MaxConcurrentTransforms": 16, "BatchStrategy": "MultiRecord",
                                               "MaxPayloadInMB": 6}),  # 32 x 6 MB would pass 100 MB
    ({"BYOC_MAX_BATCH_SIZE": "1"}, {"MaxConcurrentTransforms": 1, "BatchStrategy": "MultiRecord",
                                    "MaxPayloadInMB": 6}),
    ({"BYOC_MAX_PAYLOAD_MB": "500"}, {"MaxConcurrentTransforms": 1, "BatchStrategy": "MultiRecord",
                                      "MaxPayloadInMB": 100}),
])
def test_execution_parameters_follow_the_servers_own_limits(monkeypatch, env, expected):
    monkeypatch.setenv("SAGEMAKER_MODEL_SERVER_WORKERS", "1")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    s = settings.from_environment()
    parameters = s.execution_parameters()
    assert parameters == expected
    assert parameters["MaxConcurrentTransforms"] * parameters["MaxPayloadInMB"] <= 100  # SageMaker's bound
    assert parameters["MaxPayloadInMB"] * 1024 * 1024 <= s.limits.max_payload_bytes
    line = next(l for l in serve.mms_properties(s, 10001).splitlines() if l.startswith("byoc_execution_parameters="))
    assert json.loads(line.partition("=")[2]) == expected  # what the frontend answers, as is
