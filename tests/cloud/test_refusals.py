"""Bad command lines get a precise refusal, exit 2 and no traceback, before any AWS request.

Every boto3 client the tools make is watched: botocore's before-send event fires for each request
about to go out (retries included), so a refusal that came after a read (ECR's describe_images for
the image check, describe_training_job, get_function) fails here even though the endpoint is dead
(127.0.0.1:1) and the read could never have answered.
"""
import json

import boto3
import pytest

from byoc_cloud import cli
from cli_requests import ROLE
from ecr import cli as ecr_cli

IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/byoc-{}:0.1.0"
TRAIN = ["train", "--image", IMAGE.format("training"), "--role", ROLE, "--channel", "train=s3://bkt/t",
         "--output", "s3://bkt/o", "--instance-type", "ml.m5.xlarge"]
TUNE = ["tune", *TRAIN[1:], "--channel", "valid=s3://bkt/v", "--range", "lr=0.01:0.1"]
DEPLOY = ["deploy", "--image", IMAGE.format("serving"), "--role", ROLE, "--endpoint", "e", "--skip-check",
          "--model-data", "s3://bkt/m.tar.gz"]
TRANSFORM = ["transform", "--image", IMAGE.format("serving"), "--role", ROLE, "--model-data", "s3://bkt/m.tar.gz",
             "--input", "s3://bkt/in", "--output", "s3://bkt/out"]
ROLL = ["roll", "--endpoint", "e", "--image", IMAGE.format("serving"), "--skip-check"]
LAMBDA = ["lambda", "deploy", "--endpoint", "e"]


@pytest.fixture
def requests_sent(monkeypatch):
    """Operations of every request the tools try to send, to an endpoint that cannot answer."""
    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_DEFAULT_REGION": "us-east-1", "AWS_REGION": "us-east-1",
                       "AWS_ENDPOINT_URL": "http://127.0.0.1:1", "AWS_MAX_ATTEMPTS": "1"}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.delenv("ECR_REGISTRY", raising=False)
    sent, make = [], boto3.client

    def watched(*args, **kwargs):
        client = make(*args, **kwargs)
        client.meta.events.register("before-send", lambda request, **_: sent.append(request.url))
        return client

    monkeypatch.setattr(boto3, "client", watched)
    return sent


def refused(main, argv, says, requests_sent, capsys) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert says in err, err
    assert "Traceback" not in err
    assert requests_sent == [], f"refused only after {requests_sent}"


@pytest.mark.parametrize("argv, says", [
    # names, ARNs, URIs and instance types, by the API model of the member they fill
    ([*TRAIN, "--job-name", "bad name!"], "argument --job-name: TrainingJobName='bad name!'"),
    ([*TRAIN, "--instance-type", "ml.x99.huge"], "argument --instance-type"),
    ([*TRAIN, "--instance-type", "ML.M5.XLARGE"], "'ML.M5.XLARGE' is spelled 'ml.m5.xlarge' in SageMaker"),
    ([*TRAIN, "--instance-type", "ml.g5"], "'ml.g5': ml.g5 for training and tuning jobs comes in the sizes xlarge,"),
    ([*TRAIN, "--role", "arn:aws:iam::123456789012:user/bob"], "argument --role: RoleArn="),
    ([*TRAIN, "--output", "/local/out"], "argument --output: '/local/out': expected s3://bucket/prefix"),
    ([*TRAIN, "--checkpoint-s3-uri", "s3://Bucket/ck"], "argument --checkpoint-s3-uri"),
    ([*TRAIN, "--image", "", "--skip-check"], "argument --image: ContainerImage=''"),
    ([*TRAIN, "--image", "docker.io/library/python:3", "--skip-check"], "is not an ECR image URI"),
    ([*TRAIN, "--image", IMAGE.format("training").replace("us-east-1", "eu-west-1"), "--skip-check"],
     "is in eu-west-1, and SageMaker here is in us-east-1"),
    # numbers: finite, and counts and durations above zero
    ([*TRAIN, "--max-run-hours", "nan"], "argument --max-run-hours: 'nan' must be a finite number above 0"),
    ([*TRAIN, "--max-run-hours", "inf"], "argument --max-run-hours"),
    ([*TRAIN, "--max-run-hours", "-1"], "argument --max-run-hours"),
    ([*TRAIN, "--max-run-hours", "0.0001"], "MaxRuntimeInSeconds=0 is below the minimum 1"),
    ([*TRAIN, "--spot", "--max-wait-hours", "nan"], "argument --max-wait-hours"),
    ([*TRAIN, "--spot", "--max-wait-hours", "0"], "argument --max-wait-hours"),
    ([*TRAIN, "--max-wait-hours", "0"], "argument --max-wait-hours"),
    ([*TRAIN, "--instance-count", "0"], "argument --instance-count: '0' must be a whole number of at least 1"),
    ([*TRAIN, "--instance-count", "-3"], "argument --instance-count"),
    ([*TRAIN, "--volume-gb", "0"], "argument --volume-gb"),
    ([*TRAIN, "--poll-seconds", "0"], "argument --poll-seconds"),
    # what the training image would refuse, or flags that would be ignored
    ([*TRAIN, "--channel", "train=s3://bkt/t2"], "--channel train given more than once"),
    ([*TRAIN[:5], "--channel", "valid=s3://bkt/v", *TRAIN[7:]], "no train channel"),
    ([*TRAIN, "--channel", "eval=s3://bkt/e"], "--channel eval: the training image reads no such channel; it reads "
                                                "train, valid, validation, test, pretrained"),
    ([*TRAIN, "--channel", "Train=s3://bkt/e"], "--channel Train: the training image reads no such channel"),
    ([*TRAIN, "--channel", "valid=s3://bkt/v", "--channel", "validation=s3://bkt/w"],
     "--channel valid and validation: the training image reads one valid channel (either name); give one"),
    ([*TRAIN, "--channel", "test=s3://My_Bucket/t"], "channel 'test=s3://My_Bucket/t': expected NAME=s3://bucket/prefix, "
                                                      "the bucket 3-63 lower-case"),
    ([*TRAIN, "--channel", "test=https://bkt.s3.amazonaws.com/t"], "expected NAME=s3://bucket/prefix"),
    ([*TUNE, "--channel", "vaild=s3://bkt/v"], "--channel vaild: the training image reads no such channel"),
    ([*TRAIN, "--hp", "epochs=0"], "the training image would refuse these hyperparameters"),
    ([*TRAIN, "--hp", "bogus=1"], "the training image would refuse these hyperparameters"),
    ([*TRAIN, "--hp", "model=vgg"], "the training image would refuse these hyperparameters"),
    ([*TRAIN, "--hp", "lr=False"], "the training image would refuse these hyperparameters"),
    ([*TUNE, "--hyperband-min-epochs", "5"], "--hyperband-min-epochs is for --strategy hyperband"),
    ([*TUNE, "--warm-start-type", "transfer"], "--warm-start-type without --warm-start-from"),
    ([*TUNE, "--name-only"], "--name-only goes with --best"),
    ([*TUNE[:-2], "--range", "lr=0.01:0.1", "--objective", "validation:loss", "--objective-type", "Maximize"],
     "--objective-type Maximize for validation:loss"),
    ([*LAMBDA, "--url-invoker", "123456789012"], "--url-invoker without --function-url"),
    ([*TRAIN, "--env", "BYOC_DEVICE=cuda"], "--env BYOC_DEVICE=cuda on ml.m5.xlarge, which has no GPU"),
    ([*DEPLOY, "--serverless-memory-mb", "2048", "--env", "BYOC_DEVICE=cuda"], "BYOC_DEVICE=cuda on serverless"),
    ([*TUNE, "--max-parallel-jobs", "0"], "argument --max-parallel-jobs"),
    ([*TUNE, "--strategy", "grid", "--max-parallel-jobs", "0"], "argument --max-parallel-jobs"),
    ([*TUNE, "--max-jobs", "0"], "argument --max-jobs"),
    ([*TUNE, "--max-jobs", "-1"], "argument --max-jobs"),
    ([*TUNE, "--max-tuning-hours", "nan"], "argument --max-tuning-hours"),
    ([*TUNE, "--max-tuning-hours", "0.01"], "MaxRuntimeInSeconds=36 is below the minimum 120"),
    ([*TUNE, "--random-seed", "-1"], "argument --random-seed"),
    ([*TUNE, "--job-name", "x" * 33], "argument --job-name: HyperParameterTuningJobName is 33 characters long"),
    ([*TUNE, "--best", "bad name!"], "argument --best"),
    ([*DEPLOY, "--endpoint", "bad name!"], "argument --endpoint: EndpointName='bad name!'"),
    ([*DEPLOY[:-2], "--model-data", "/local/m.tar.gz"], "argument --model-data: Url='/local/m.tar.gz'"),
    ([*DEPLOY[:-2], "--model-data", "s3://bkt/jobs/j1/output/"], "argument --model-data: 's3://bkt/jobs/j1/output/': "
                                                                 "expected s3://bucket/.../model.tar.gz"),
    ([*DEPLOY[:-2], "--model-data", "s3://bkt/model.zip"], "expected s3://bucket/.../model.tar.gz"),
    ([*DEPLOY[:-2], "--model-data", "https://bkt.s3.amazonaws.com/output/"], "expected s3://bucket/.../model"),
    ([*DEPLOY[:-2], "--model-data", "s3://My_Bkt/model.tar.gz"], "expected s3://bucket/.../model"),
    ([*DEPLOY[:-2], "--training-job", "bad job!"], "argument --training-job"),
    ([*DEPLOY, "--role", "arn:aws:iam::123456789012:user/bob"], "argument --role"),
    ([*DEPLOY, "--instance-type", "ml.x99.huge"], "argument --instance-type: 'ml.x99.huge' is not a SageMaker "
                                                  "instance type; endpoints take ml.c4, "),
    ([*DEPLOY, "--invocations-per-instance", "-5"], "--invocations-per-instance -5: an auto-scaling target"),
    ([*DEPLOY, "--invocations-per-instance", "nan"], "argument --invocations-per-instance: 'nan' must be a finite"),
    ([*DEPLOY, "--async-output", "s3://bkt/o", "--backlog-per-instance", "0"], "--backlog-per-instance 0: an auto"),
    ([*DEPLOY, "--image", IMAGE.format("serving").replace("us-east-1", "eu-west-1")], "is in eu-west-1"),
    ([*ROLL, "--role", "arn:aws:iam::123456789012:user/bob"], "argument --role"),
    ([*ROLL, "--model-data", "/local/m.tar.gz"], "argument --model-data"),
    ([*ROLL, "--max-latency-ms", "nan"], "argument --max-latency-ms"),
    ([*ROLL, "--max-latency-ms", "inf"], "argument --max-latency-ms"),
    ([*ROLL, "--endpoint", "bad name!"], "argument --endpoint"),
    (["transform", "--image", IMAGE.format("serving"), "--role", ROLE, "--model-data", "s3://bkt/m.tar.gz",
      "--input", "s3://bkt/in", "--output", "s3://bkt/out", "--instance-type", "ml.x9.huge"], "argument --instance-type"),
    ([*LAMBDA[:-1], "bad name!"], "argument --endpoint"),
    ([*LAMBDA, "--function-name", ""], "--function-name '': 1 to 64"),
    ([*LAMBDA, "--fetch-timeout", "-100"], "argument --fetch-timeout"),
    ([*LAMBDA, "--fetch-timeout", "nan"], "argument --fetch-timeout"),
    ([*LAMBDA, "--invoke-timeout", "0"], "argument --invoke-timeout"),
    (["lambda", "update", "--function-name", "nope", "--timeout", "0"], "--timeout 0: Lambda allows 1 to 900"),
    (["lambda", "update", "--function-name", "nope", "--memory", "64"], "--memory 64: Lambda allows 128"),
    (["check", "--image", "byoc-serving:latest", "--instance-type", "ml.x99.huge"],
     "--instance-type for --mode realtime: 'ml.x99.huge' is not a SageMaker instance type"),
    (["check", "--image", "byoc-serving:latest", "--instance-type", "ML.G5.XLARGE"], "is spelled 'ml.g5.xlarge'"),
    (["check", "--image", "byoc-serving:latest", "--instance-type", "ml.c5.large", "--mode", "batch"],
     "ml.c5.large is offered for endpoints, not batch transform jobs, which take ml.c4, ml.c5, "),
    (["check", "--image", "byoc-serving:latest", "--mode", "serverless", "--instance-type", "ml.g5.xlarge"],
     "--instance-type does not apply to --mode serverless"),
    (["--wait-delay", "nan", *DEPLOY], "argument --wait-delay"),
    (["status", "bad name!"], "argument name"),
])
def test_byoc_cloud_refuses_before_any_request(argv, says, requests_sent, capsys):
    refused(cli.main, argv, says, requests_sent, capsys)


# Instance types as users type them, and types that SageMaker offers for another mode only (botocore's
# TrainingInstanceType, ProductionVariantInstanceType and TransformInstanceType enums): each refused by
# the flag, with the spelling to use or the families the mode takes.
@pytest.mark.parametrize("argv, says", [
    ([*TRAIN, "--instance-type", "ml.t2.medium"],
     "argument --instance-type: ml.t2.medium is offered for endpoints, not training and tuning jobs, which take ml.c4"),
    ([*TUNE, "--instance-type", "ml.inf2.xlarge"], "ml.inf2.xlarge is offered for endpoints, not training and tuning"),
    ([*TRANSFORM, "--instance-type", "ml.p5.48xlarge"], "ml.p5.48xlarge is offered for training and tuning jobs, "
                                                        "not batch transform jobs, which take ml.c4, ml.c5, ml.c6i"),
    ([*TRANSFORM, "--instance-type", "ml.c7g.xlarge"], "ml.c7g.xlarge is offered for endpoints, not batch transform"),
    ([*DEPLOY, "--async-output", "s3://bkt/o", "--instance-type", "ml.p3dn.24xlarge"],
     "ml.p3dn.24xlarge is offered for training and tuning jobs, not endpoints"),
    ([*TRAIN, "--instance-type", "g5.xlarge"], "argument --instance-type: 'g5.xlarge' is spelled 'ml.g5.xlarge'"),
    ([*DEPLOY, "--instance-type", " ml.m5.xlarge"], "' ml.m5.xlarge' is spelled 'ml.m5.xlarge'"),
    ([*TRANSFORM, "--instance-type", "ML.G4DN.XLARGE"], "'ML.G4DN.XLARGE' is spelled 'ml.g4dn.xlarge'"),
    ([*DEPLOY, "--instance-type", "local"], "'local' is the SageMaker Python SDK's local mode"),
    ([*TRAIN, "--instance-type", "local_gpu"], "'local_gpu' is the SageMaker Python SDK's local mode"),
    ([*TRAIN, "--instance-type", ""], "argument --instance-type: an empty instance type: training and tuning jobs take"),
    ([*DEPLOY, "--instance-type", "ml.g5.huge"], "'ml.g5.huge': ml.g5 for endpoints comes in the sizes xlarge, "),
    (["check", "--image", "byoc-serving:latest", "--mode", "training", "--instance-type", "ml.r7gd.xlarge"],
     "--instance-type for --mode training: ml.r7gd.xlarge is offered for endpoints"),
])
def test_instance_types_as_users_type_them(argv, says, requests_sent, capsys):
    refused(cli.main, argv, says, requests_sent, capsys)


def test_a_ranges_file_that_cannot_be_read_is_refused(tmp_path, requests_sent, capsys):
    files = {"missing.json": None, "bad.yaml": b"lr: [", "latin1.json": b'{"lr": "\xe9"}'}
    for name, content in files.items():
        if content is not None:
            (tmp_path / name).write_bytes(content)
    for name in [*files, "."]:
        refused(cli.main, [*TUNE, "--ranges-file", str(tmp_path / name)], "--ranges-file" if name != "bad.yaml"
                else "not valid YAML", requests_sent, capsys)


@pytest.mark.parametrize("entry, says", [
    ({"min": None, "max": 0.1}, "the low end must be a number, not None"),
    ({"min": 0.001, "max": "null"}, "the high end must be a number, not 'null'"),
    ({"min": "", "max": 0.1}, "the low end must be a number, not ''"),
])
def test_a_range_end_that_names_no_number_is_refused(entry, says, tmp_path, requests_sent, capsys):
    """The image reads None as "the default": as a range's end it must not quietly become lr's 0.05."""
    ranges = tmp_path / "ranges.json"
    ranges.write_text(json.dumps({"lr": entry}))
    refused(cli.main, [*TUNE[:-2], "--ranges-file", str(ranges)], says, requests_sent, capsys)
    flag = f"lr={'' if entry['min'] is None else entry['min']}:{'' if entry['max'] is None else entry['max']}"
    refused(cli.main, [*TUNE[:-2], "--range", flag], "must be a number", requests_sent, capsys)


@pytest.mark.parametrize("argv, says", [
    (["push", "noequals", "--tag", "1.0", "--allow-dirty"], "expected LOCAL_IMAGE=REPOSITORY, got 'noequals'"),
    (["push", "img=Bad_Repo", "--allow-dirty"], "RepositoryName='Bad_Repo' does not match"),
    (["push", "img=byoc-serving", "--tag", "bad tag!"], "argument --tag: 'bad tag!' is not an image tag"),
    (["push", "img=byoc-serving", "--tag", ".hidden"], "argument --tag"),
    (["push", "img=byoc-serving", "--tag", "v" * 129], "argument --tag"),  # docker's 128, within ECR's 300
    (["scan", "repo:"], "expected REPOSITORY:TAG or REPOSITORY@sha256:DIGEST, got 'repo:'"),
    (["scan", "repo@sha256:abc"], "expected REPOSITORY@sha256:<64 hex digits>, got 'repo@sha256:abc'"),
    (["scan", "nocolon"], "expected REPOSITORY:TAG"),
    (["scan", "byoc-serving:1", "--poll-seconds", "nan"], "argument --poll-seconds"),
    (["uri", "Bad_Repo"], "argument repository"),
    (["protect", "bad name!"], "argument ENDPOINT"),
])
def test_the_ecr_tool_refuses_before_any_request(argv, says, requests_sent, capsys):
    refused(ecr_cli.main, argv, says, requests_sent, capsys)


def test_the_ecr_tool_names_a_file_it_cannot_use(tmp_path, requests_sent, capsys):
    (tmp_path / "list.json").write_text("[]")
    (tmp_path / "broken.json").write_text("{")
    (tmp_path / "pushed.json").write_text(json.dumps({"byoc-serving": {"uri": IMAGE.format("serving")}}))
    for argv, says in [
        (["uri", "byoc-serving", "--images-file", str(tmp_path / "none.json")], "none.json: cannot read the pushed"),
        (["uri", "byoc-training", "--images-file", str(tmp_path / "pushed.json")],
         "has no pushed image of 'byoc-training' (it has: byoc-serving)"),
        (["scan", "--images-file", str(tmp_path / "list.json")], "list.json: cannot read the pushed images"),
        (["scan", "--images-file", str(tmp_path / "broken.json")], "broken.json: cannot read the pushed images"),
        (["scan", "byoc-serving:1", "--allowlist", str(tmp_path / "none.json")], "cannot read the allowlist"),
        (["ensure", "--definitions", str(tmp_path / "broken.json")], "cannot read the definitions"),
        (["protect", "--definitions", str(tmp_path / "none.json")], "cannot read the definitions"),
        (["push", "img=byoc-serving", "--allow-dirty", "--output", str(tmp_path / "list.json")],
         "cannot read the pushed images"),
    ]:
        refused(ecr_cli.main, argv, says, requests_sent, capsys)
    assert ecr_cli.main(["uri", "byoc-serving", "--images-file", str(tmp_path / "pushed.json")]) == 0
    assert capsys.readouterr().out.strip() == IMAGE.format("serving")


def test_push_refuses_a_version_that_is_no_image_tag_before_the_login(tmp_path, requests_sent, capsys, monkeypatch):
    """A PEP 440 local version (0.1.0+cu128) cannot be a tag: refused before ECR's token is asked for."""
    import subprocess

    from ecr import registry

    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\nversion = "0.1.0+cu128"\n')
    git = ["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "pyproject.toml"], check=True)
    subprocess.run([*git, "commit", "-qm", "v"], check=True)
    monkeypatch.setattr(registry, "ROOT", tmp_path)
    refused(ecr_cli.main, ["push", "img=byoc-serving"], "the version '0.1.0+cu128' in pyproject.toml is not an image tag",
            requests_sent, capsys)


@pytest.mark.docker
def test_push_refuses_a_missing_local_image_before_the_login(requests_sent, capsys):
    refused(ecr_cli.main, ["push", "--tag", "1.0.0", "byoc-no-such-image:ecr=byoc-serving"],
            "there is no local image 'byoc-no-such-image:ecr' to push", requests_sent, capsys)


@pytest.mark.parametrize("defaults, says", [
    ({"imageTagMutability": "immutable"}, "imageTagMutability='immutable' is not one of MUTABLE, IMMUTABLE"),
    ({"encryption": {"encryptionType": "KMS2"}}, "encryptionType='KMS2' is not one of AES256, KMS, KMS_DSSE"),
    ({"imageTagMutabilityExclusionFilters": ["latest"]}, "must be given with IMMUTABLE_WITH_EXCLUSION"),
    ({"imageTagMutability": "IMMUTABLE_WITH_EXCLUSION"}, "must be given with IMMUTABLE_WITH_EXCLUSION"),
    ({"imageTagMutability": "IMMUTABLE_WITH_EXCLUSION", "imageTagMutabilityExclusionFilters": ["lat est"]},
     "filter='lat est' does not match"),
])
def test_ensure_refuses_a_definition_ecr_would_refuse_before_any_request(tmp_path, requests_sent, capsys, defaults, says):
    from ecr import repositories

    spec = json.loads(repositories.DEFINITIONS.read_text())
    spec["defaults"].update(defaults)
    path = tmp_path / "repositories.json"
    path.write_text(json.dumps(spec))
    refused(ecr_cli.main, ["ensure", "--definitions", str(path)], says, requests_sent, capsys)
