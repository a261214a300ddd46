"""SageMaker Python SDK v2 local mode's batch transform (Transformer, instance_type="local") with the
serving image over the shared trained model: every output checked against the model run here.

One driver run makes one transform job per case; each case then checks its own outputs. A case is
an input layout as `byoc-cloud transform` sends it: a folder of real PNG and JPEG files, one image
per request (SplitType None, ContentType application/x-image); JSON Lines of {"image": "<base64>"}
one line per request (SplitType Line, SingleRecord), answered one line each (AssembleWith Line);
the same JSON Lines as MultiRecord requests of many lines, answered line by line; and a job that
sets no BatchStrategy or MaxPayloadInMB, so that local mode takes them from the container's
GET /execution-parameters (MultiRecord), as SageMaker does."""
import base64
import io
import json
import tarfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from PIL import Image

import support
from sdk_harness import SERVING_IMAGE, run_script, sample_images, wait_until_stopped

pytestmark = pytest.mark.docker


@dataclass(frozen=True)
class Case:
    name: str
    split_type: str | None
    strategy: str | None  # None: the container's GET /execution-parameters decides
    content_type: str
    assemble_with: str | None = None

    def job(self, root: Path) -> dict:
        return {"name": f"byoc-transform-{self.name}", "input": str(root / "in" / self.name),
                "output": str(root / "out" / self.name), "content_type": self.content_type,
                "split_type": self.split_type, "strategy": self.strategy, "assemble_with": self.assemble_with}


IMAGES = Case("images", None, "SingleRecord", "application/x-image")
JSON_LINES = Case("json-lines", "Line", "SingleRecord", "application/json", "Line")
JSON_LINES_BATCHED = Case("json-lines-batched", "Line", "MultiRecord", "application/json", "Line")
JSON_LINES_UNSET = Case("json-lines-unset", "Line", None, "application/jsonlines", "Line")
CASES = (IMAGES, JSON_LINES, JSON_LINES_BATCHED, JSON_LINES_UNSET)
LINE_CASES = (JSON_LINES, JSON_LINES_BATCHED, JSON_LINES_UNSET)


def image_inputs(small_data: Path, folder: Path) -> dict[str, bytes]:
    """Real test images, half of them re-encoded as JPEG: file name -> bytes. (One folder: local
    mode reads the files directly in it, where SageMaker reads every key under the prefix.)"""
    files = {}
    for i, png in enumerate(sample_images(small_data, per_class=1)):
        body, suffix = png.read_bytes(), ".png"
        if i % 2:
            out = io.BytesIO()
            Image.open(png).convert("RGB").save(out, format="JPEG", quality=90)
            body, suffix = out.getvalue(), ".jpg"
        files[f"{png.parent.name}-{png.stem}{suffix}"] = body
    folder.mkdir(parents=True)
    for name, body in files.items():
        (folder / name).write_bytes(body)
    return files


def json_lines(images: dict[str, bytes], folder: Path) -> list[bytes]:
    lines = [json.dumps({"image": base64.b64encode(body).decode()}).encode() for body in images.values()]
    folder.mkdir(parents=True)
    (folder / "images.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    return lines


@pytest.fixture(scope="module")
def transformed(trained, small_data, sdk_docker, tmp_path_factory):
    """The trained model as model.tar.gz, the inputs of every case, and one SDK v2 run over them."""
    from sdk_harness import OutboundRecorder, free_port, remove_sdk_containers, sdk_environment

    root = tmp_path_factory.mktemp("sdk-transform")
    (root / "model").mkdir()
    with tarfile.open(root / "model" / "model.tar.gz", "w:gz") as tar:  # as SageMaker packs /opt/ml/model
        for path in (trained.opt_ml / "model").iterdir():
            tar.add(path, arcname=path.name)
    images = image_inputs(small_data, root / "in" / IMAGES.name)
    lines = json_lines(images, root / "in" / JSON_LINES.name)
    for case in LINE_CASES[1:]:
        json_lines(images, root / "in" / case.name)
    outbound = OutboundRecorder(free_port()).start()
    try:
        run = run_script("v2", "drive_sdk_v2_transform.py", sdk_docker, root,
                         sdk_environment(root / "home", outbound.port), [
                             "--model-data", str(root / "model" / "model.tar.gz"), "--container-root", str(root),
                             "--port", str(free_port(taken={outbound.port})),
                             "--jobs", json.dumps([case.job(root) for case in CASES])])
        yield {"run": run, "root": root, "images": images, "lines": lines, "model": trained.opt_ml / "model",
               "outbound": list(outbound.attempts), "running": wait_until_stopped(sdk_docker, root)}
    finally:
        outbound.stop()
        remove_sdk_containers(sdk_docker, root)


def test_local_transform_jobs_ran_with_the_serving_image(transformed):
    run = transformed["run"]
    assert run.result["sdk_version"].startswith("2.")
    assert {name: job["status"] for name, job in run.result["jobs"].items()} == {
        case.job(transformed["root"])["name"]: "Completed" for case in CASES}
    assert [c["image"] for c in run.containers] == [SERVING_IMAGE] * len(CASES)  # a container per job
    unset = run.result["jobs"][JSON_LINES_UNSET.job(transformed["root"])["name"]]
    assert unset["batch_strategy"] == "MultiRecord"  # from the container's /execution-parameters
    assert transformed["running"] == [] and transformed["outbound"] == []


def test_an_image_folder_is_scored_file_by_file(transformed):
    out, model = transformed["root"] / "out" / IMAGES.name, transformed["model"]
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{name}.out" for name in transformed["images"])
    for name, body in transformed["images"].items():
        answer = json.loads((out / f"{name}.out").read_bytes())
        expected = support.expected_answer(model, body, "application/x-image")
        support.assert_same_predictions(answer["predictions"], expected["predictions"])


@pytest.mark.parametrize("case", LINE_CASES, ids=lambda c: c.name)
def test_json_lines_are_answered_line_by_line(transformed, case):
    output = (transformed["root"] / "out" / case.name / "images.jsonl.out").read_bytes()
    answers = [json.loads(line) for line in output.splitlines() if line.strip()]
    assert len(answers) == len(transformed["lines"])
    for answer, line in zip(answers, transformed["lines"]):
        expected = support.expected_answer(transformed["model"], line, "application/json")
        support.assert_same_predictions(answer["predictions"], expected["predictions"])
