import pytest

from byoc.serving import settings


def test_defaults(monkeypatch):
    for name in ("SAGEMAKER_BIND_TO_PORT", "SAGEMAKER_MODEL_SERVER_WORKERS", "BYOC_MAX_BATCH_SIZE",
                 "BYOC_MAX_PAYLOAD_MB", "SAGEMAKER_MULTI_MODEL"):
        monkeypatch.delenv(name, raising=False)
    s = settings.from_environment()
    assert (s.port, s.max_batch_size, s.max_payload_bytes, s.multi_model) == (8080, 8, 6 * 1024 * 1024, False)
    assert s.workers >= 1 and s.torch_threads >= 1


def test_values_are_read(monkeypatch):
    monkeypatch.setenv("SAGEMAKER_BIND_TO_PORT", "9000")
    monkeypatch.setenv("SAGEMAKER_MODEL_SERVER_WORKERS", "2")
    monkeypatch.setenv("BYOC_TORCH_THREADS", "3")
    monkeypatch.setenv("BYOC_MAX_BATCH_DELAY_MS", "0")
    monkeypatch.setenv("SAGEMAKER_MULTI_MODEL", "TRUE")
    s = settings.from_environment()
    assert (s.port, s.workers, s.torch_threads, s.max_batch_delay_ms, s.multi_model) == (9000, 2, 3, 0, True)


@pytest.mark.parametrize("name, value, says", [("SAGEMAKER_MODEL_SERVER_WORKERS", "two", "whole number"),
                                               ("BYOC_MAX_BATCH_SIZE", "0", "at least 1"),
                                               ("SAGEMAKER_MULTI_MODEL", "yes", "true or false")])
def test_bad_values_name_the_setting(monkeypatch, name, value, says):
    monkeypatch.setenv(name, value)
    with pytest.raises(settings.SettingError, match=f"{name}.*{says}"):
        settings.from_environment()
