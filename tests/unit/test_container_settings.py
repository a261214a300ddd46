"""The settings each image reads live in one list (byoc.contract); the serving image reads them by
those names and refuses what the list says it refuses, the README table names them, and
byoc-cloud's --env is checked against the same list."""
import ast
import re
from pathlib import Path

import pytest

from byoc import contract
from byoc.serving import settings
from byoc_cloud import container
from byoc_cloud.calls import LaunchError

ROOT = Path(__file__).resolve().parents[2]
ENV_NAME = re.compile(r"(SAGEMAKER|BYOC)_[A-Z0-9_]+")
CONSTANT = {getattr(contract, name): name for name in dir(contract) if name.endswith("_SETTING")}
USER_SET = [s for s in contract.SERVING_SETTINGS.values() if not s.set_by]


def test_the_server_reads_settings_by_the_contracts_names_only():
    source = (ROOT / "code/byoc/serving/settings.py").read_text()
    literals = [node.value for node in ast.walk(ast.parse(source))
                if isinstance(node, ast.Constant) and isinstance(node.value, str) and ENV_NAME.fullmatch(node.value)]
    assert literals == [], "name these settings in byoc.contract and read them from there"


def test_every_setting_a_user_may_give_is_read_by_the_serving_image():
    code = "".join(p.read_text() for p in [*(ROOT / "code/byoc/serving").glob("*.py"), ROOT / "code/byoc/cuda.py"])
    unread = [s.name for s in USER_SET if f"contract.{CONSTANT[s.name]}" not in code]
    assert unread == []


@pytest.mark.parametrize("setting", [s for s in USER_SET if s.minimum is not None], ids=lambda s: s.name)
def test_the_server_refuses_what_the_contract_refuses(monkeypatch, setting):
    for value in ("many", str(setting.minimum - 1)):
        assert setting.problem(value)
        monkeypatch.setenv(setting.name, value)
        with pytest.raises(settings.SettingError, match=setting.name):
            settings.from_environment()
    monkeypatch.setenv(setting.name, str(setting.minimum))
    settings.from_environment()  # the smallest value the contract allows, the server takes too


def test_the_readme_table_names_the_serving_settings():
    readme = (ROOT / "README.md").read_text()
    table = readme.split("| setting | default | |", 1)[1].split("\n\n", 1)[0]
    named = set(re.findall(r"`((?:SAGEMAKER|BYOC)_[A-Z0-9_]+|GOMP_SPINCOUNT)`", table))
    assert named <= set(contract.SERVING_SETTINGS)
    assert {s.name for s in USER_SET} <= named


@pytest.mark.parametrize("pairs, image, mode, says", [
    (["BYOC_MAX_BATCH_SZIE=4"], "serving", None, "Did you mean BYOC_MAX_BATCH_SIZE?"),
    (["byoc_device=cpu"], "serving", None, "Did you mean BYOC_DEVICE?"),  # names are case-sensitive
    (["BYOC_MAX_BATCH_SIZE=4"], "training", None, "the training image reads no such setting"),
    (["OMP_NUM_THREADS=0"], "training", None, "must be at least 1"),
    (["NCCL_DEBUG=LOUD"], "training", None, "must be one of version, warn, info, trace"),
    (["BYOC_SERVER_USER=nobody"], "serving", None, "must be one of byoc, root"),
    (["BYOC_MAX_BATCH_DELAY_MS=-1"], "serving", None, "must be at least 0"),
    (["BYOC_MAX_BATCH_DELAY_MS=2.5"], "serving", None, "must be a whole number"),
    (["=1"], "serving", None, "expected NAME=VALUE"),
    (["SAGEMAKER_BATCH=true"], "serving", None, "set by SageMaker, in batch transform jobs"),
    (["BYOC_MAX_PAYLOAD_MB=1000"], "serving", "async", "at most 1,000,000,000 bytes"),
])
def test_bad_settings_are_refused(pairs, image, mode, says):
    with pytest.raises(LaunchError, match=re.escape(says)):
        container.environment(pairs, image, mode)


def test_good_settings_pass_as_given():
    assert container.environment(["BYOC_DEVICE=CPU", "BYOC_MAX_PAYLOAD_MB=900"], "serving", "async") == {
        "BYOC_DEVICE": "CPU", "BYOC_MAX_PAYLOAD_MB": "900"}  # the image reads the device in any case
    assert container.environment(["NCCL_DEBUG=INFO", "OMP_NUM_THREADS=4", "BYOC_DEVICE=cuda"], "training") == {
        "NCCL_DEBUG": "INFO", "OMP_NUM_THREADS": "4", "BYOC_DEVICE": "cuda"}
    assert container.environment(["BYOC_MAX_PAYLOAD_MB=6"], "serving", "realtime")  # 6 MiB: the real-time limit
