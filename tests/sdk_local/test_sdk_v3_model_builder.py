"""SageMaker Python SDK v3's ModelBuilder with our serving image, as a user writes it
(drive_sdk_v3_model_builder.py, README "Rehearse with the SageMaker SDK's local mode"):
Mode.LOCAL_CONTAINER deploys a trained model package and predicts; Mode.SAGEMAKER_ENDPOINT's
CreateModel request is the one our image needs. No AWS: no credentials, no network."""
import io
import json
import shutil
import socket
import time

import botocore.session
import pytest
from botocore.validate import validate_parameters

import support
from sdk_harness import COMPOSE_FILES_LABEL, check_predictions, run_script, sample_images

pytestmark = pytest.mark.docker

ROLE = "arn:aws:iam::111111111111:role/service-role/SageMakerRole"
# LocalMultiModelServer._start_serving publishes the container on host port 8080, always
# (sagemaker/serve/model_server/multi_model_server/server.py:53), and invokes it there (:69).
SDK_HOST_PORT = 8080


def host_port_taken(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("0.0.0.0", port))
        except OSError:
            return True
    return False


def gone(client, image: str, within_s: float) -> bool:
    """No container run as `image` left, within a few seconds of the last one being killed."""
    deadline = time.monotonic() + within_s
    while support.created_from(client, image):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.5)
    return True


def as_jpeg(png, folder):
    from PIL import Image

    folder.mkdir()
    path = folder / f"{png.parent.name}-{png.stem}.jpg"
    buffer = io.BytesIO()
    Image.open(png).convert("RGB").save(buffer, "JPEG", quality=95)
    path.write_bytes(buffer.getvalue())
    return path


@pytest.fixture(scope="session")
def sdk_host_port():
    """Checked before the image is pushed and the model trained (minutes), so a busy port fails at once."""
    if host_port_taken(SDK_HOST_PORT):
        pytest.fail(f"ModelBuilder's local container takes host port {SDK_HOST_PORT} (the SDK's choice, not "
                    "ours) and something else holds it here: `ss -ltnp 'sport = 8080'` says what")
    return SDK_HOST_PORT


def test_v3_model_builder_local_container_deploys_and_predicts(sdk_host_port, trained, small_data, sdk_docker,
                                                               sdk_root, sdk_env, pullable_serving_image, outbound):
    # The user's model_path: the SDK mounts its code/ at /opt/ml/model, so the package goes there.
    model_dir = trained.opt_ml / "model"
    model_path = sdk_root / "model-builder"
    shutil.copytree(model_dir, model_path / "code")
    images = sample_images(small_data)
    jpeg = as_jpeg(images[0], sdk_root / "jpeg")

    run = run_script("v3", "drive_sdk_v3_model_builder.py", sdk_docker, sdk_root, sdk_env, [
        "local", "--image", pullable_serving_image, "--endpoint-name", "byoc-model-builder",
        "--model-path", str(model_path), "--container-root", str(sdk_root), "--predict", *map(str, images), str(jpeg)],
        timeout=300)  # an image deploy() cannot ping keeps it waiting 20 minutes (local_container_mode.py:204)

    assert run.result["sdk_version"].startswith("3.")
    assert run.result["endpoint_status"] == "InService"
    # deploy() returned, so its ping passed: our image answered the PNG sample that SchemaBuilder
    # sends as file-path/raw-bytes.
    png_predictions = {path: answer for path, answer in run.result["predictions"].items() if path != str(jpeg)}
    accuracy = check_predictions(png_predictions, images, model_dir)
    assert accuracy >= 0.5, f"served top-1 accuracy {accuracy:.2f} on {len(images)} test images"
    support.assert_same_predictions(run.result["predictions"][str(jpeg)]["predictions"], support.expected_answer(
        model_dir, jpeg.read_bytes(), "image/jpeg")["predictions"])

    # The driver's destroy_server() killed the container the SDK ran with auto_remove; the engine
    # removes it a moment later. deploy() had also asked the local session for an endpoint: a second
    # container of the image, by docker compose on the same port 8080 (local_resources.py,
    # LocalEndpoint.create). The SDK may leave that one behind (created, never started), so it is
    # removed here, as the harness removes everything the SDKs start.
    support.remove_all(c for c in support.created_from(sdk_docker, pullable_serving_image)
                       if COMPOSE_FILES_LABEL in c.labels)
    assert gone(sdk_docker, pullable_serving_image, within_s=30), \
        support.describe(support.created_from(sdk_docker, pullable_serving_image))
    assert not host_port_taken(sdk_host_port)
    assert outbound.attempts == []


def test_v3_model_builder_sagemaker_endpoint_sends_the_create_model_our_image_needs(sdk_root, sdk_env, sdk_docker,
                                                                                      outbound):
    image = "111111111111.dkr.ecr.us-east-1.amazonaws.com/byoc-serving:1.4.0"
    model_data = "s3://my-bucket/byoc/jobs/byoc-2026-01-01/output/model.tar.gz"
    env = {"SAGEMAKER_MODEL_SERVER_WORKERS": "2", "BYOC_MAX_IMAGES": "16"}
    run = run_script("v3", "drive_sdk_v3_model_builder.py", sdk_docker, sdk_root, sdk_env, [
        "endpoint", "--image", image, "--endpoint-name", "byoc-model-builder", "--model-data", model_data,
        "--instance-type", "ml.m5.large", "--env", json.dumps(env)], timeout=300)

    assert run.result["build_error"] is None
    [request] = run.result["create_model"]
    operation = botocore.session.get_session().get_service_model("sagemaker").operation_model("CreateModel")
    validate_parameters(request, operation.input_shape)  # raises on anything SageMaker would refuse
    # The packed model.tar.gz as it is (SageMaker unpacks it into /opt/ml/model), the image as
    # given, and only the user's environment: no script-mode variables pointing at code.
    assert request == {"ModelName": "byoc-model-builder", "ExecutionRoleArn": ROLE,
                       "PrimaryContainer": {"Image": image, "ModelDataUrl": model_data, "Environment": env}}
    # Before it, build() checks the role with IAM (SimulatePrincipalPolicy, GetRole): refused here,
    # it goes on with a warning, as for a user without IAM read access. Nothing uploads to S3.
    assert set(run.result["refused_calls"]) == {"iam.SimulatePrincipalPolicy", "iam.GetRole"}
    assert outbound.attempts == []
