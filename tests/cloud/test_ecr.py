"""ecr/: repositories, push and the scan gate, against moto's server and Debian's docker-registry.

Scan findings: moto does not scan images. Its server returns a fixed basic-scan
finding (one HIGH, no fix information) unless results are seeded through its
API (/moto-api/static/ecr/scan-finding-results). The gate tests seed documents
shaped like real ECR enhanced-scanning responses (Amazon Inspector's fields:
severity, fixAvailable, packageVulnerabilityDetails) and then run the real
`python -m ecr scan`: boto3 fetches them over HTTP, the waiter and paginator
run as against AWS, and the gate decides on what boto3 returned.
"""
import datetime as dt
import fnmatch
import json
import re
import uuid
from dataclasses import dataclass, field

import boto3
import botocore.session
import docker
import pytest
import requests

from byoc_cloud import image_protection
from byoc_cloud.calls import LaunchError
from cli_requests import ROLE, ecr_image
from support import tiny_image
from ecr import cli, repositories, scan_gate

MANIFEST = json.dumps({
    "schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
    "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": 2,
               "digest": "sha256:" + "1" * 64},
    "layers": [],
})


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def definitions(tmp_path, *names, **defaults):
    spec = json.loads(repositories.DEFINITIONS.read_text())
    spec["defaults"].update(defaults)
    spec["repositories"] = {name: {} for name in names}
    path = tmp_path / "repositories.json"
    path.write_text(json.dumps(spec))
    return path


def test_ensure_creates_then_reports_nothing_to_do(ecr, tmp_path, capsys):
    name = unique("byoc-test-repo")
    path = definitions(tmp_path, name)
    assert cli.main(["ensure", "--definitions", str(path)]) == 0
    assert capsys.readouterr().out.strip() == f"{name}: created, lifecycle policy, repository policy"
    assert cli.main(["ensure", "--definitions", str(path)]) == 0
    assert capsys.readouterr().out.strip() == f"{name}: up to date"

    repo = ecr.describe_repositories(repositoryNames=[name])["repositories"][0]
    assert repo["imageTagMutability"] == "IMMUTABLE"
    assert repo["imageScanningConfiguration"] == {"scanOnPush": True}
    assert repo["encryptionConfiguration"]["encryptionType"] == "KMS"
    rules = json.loads(ecr.get_lifecycle_policy(repositoryName=name)["lifecyclePolicyText"])["rules"]
    assert [(r["rulePriority"], r["selection"]["tagStatus"], r["selection"].get("tagPatternList"),
             r["selection"]["countNumber"]) for r in rules] == [
        (1, "tagged", ["v*"], 9999), (2, "tagged", ["*.*.*"], 9999), (3, "tagged", ["deployed-*"], 9999),
        (4, "untagged", None, 7), (5, "tagged", ["*"], 30)]
    policy = json.loads(ecr.get_repository_policy(repositoryName=name)["policyText"])
    for statement in policy["Statement"]:
        assert "*" not in json.dumps(statement["Principal"]) and not any("*" in a for a in statement["Action"])
    pull = next(s for s in policy["Statement"] if s["Sid"] == "PullByImageConsumers")
    assert "ecr:PutImage" not in pull["Action"]


def test_ensure_brings_drifted_settings_back(ecr, tmp_path, capsys):
    name = unique("byoc-test-drift")
    path = definitions(tmp_path, name)
    cli.main(["ensure", "--definitions", str(path)])
    ecr.put_image_tag_mutability(repositoryName=name, imageTagMutability="MUTABLE")
    ecr.put_image_scanning_configuration(repositoryName=name, imageScanningConfiguration={"scanOnPush": False})
    ecr.delete_lifecycle_policy(repositoryName=name)
    capsys.readouterr()
    cli.main(["ensure", "--definitions", str(path)])
    assert capsys.readouterr().out.strip() == (
        f"{name}: imageTagMutability MUTABLE -> IMMUTABLE, scanOnPush -> True, lifecycle policy")
    assert ecr.describe_repositories(repositoryNames=[name])["repositories"][0]["imageTagMutability"] == "IMMUTABLE"


def test_ensure_refuses_to_pretend_it_changed_encryption(ecr, tmp_path, capsys):
    name = unique("byoc-test-enc")
    cli.main(["ensure", "--definitions", str(definitions(tmp_path, name, encryption={"encryptionType": "AES256"}))])
    path = definitions(tmp_path, name)  # asks for KMS
    assert cli.main(["ensure", "--definitions", str(path)]) == 2
    assert "cannot change encryption after creation" in capsys.readouterr().err


def small_image(client, content: str) -> str:
    """A few-byte image with its own content, so each gets its own ID."""
    return tiny_image(client, content, "byoc-ecr-test")


@pytest.mark.docker
def test_push_then_immutable_tag_collision(ecr, registry, tmp_path, capsys, monkeypatch):
    client = docker.from_env()
    name = unique("byoc-test-push")
    cli.main(["ensure", "--definitions", str(definitions(tmp_path, name))])
    first, second = small_image(client, "first"), small_image(client, "second")
    output = tmp_path / "images.json"
    monkeypatch.setenv("ECR_REGISTRY", registry)
    try:
        push = ["push", "--tag", "1.0.0", "--tag", "abc123", "--output", str(output)]
        assert cli.main(push + [f"{first}={name}"]) == 0
        pushed = json.loads(output.read_text())[name]
        digest = pushed["uri"].split("@")[1]
        assert pushed["uri"].startswith(ecr.describe_repositories(repositoryNames=[name])["repositories"][0]["repositoryUri"])
        # The registry really holds it, and the ECR API knows it under both tags.
        manifest = requests.get(f"http://{registry}/v2/{name}/manifests/1.0.0",
                                headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"})
        assert manifest.headers["Docker-Content-Digest"] == digest
        details = ecr.describe_images(repositoryName=name)["imageDetails"]
        assert [(d["imageDigest"], sorted(d["imageTags"])) for d in details] == [(digest, ["1.0.0", "abc123"])]

        assert cli.main(push + [f"{first}={name}"]) == 0  # the same image again: nothing to do
        assert "already holds" in capsys.readouterr().out

        assert cli.main(["push", "--tag", "1.0.0", "--output", str(output), f"{second}={name}"]) == 2
        error = capsys.readouterr().err
        assert "tag '1.0.0' already exists" in error and "never moves a tag" in error and name in error
        manifest = requests.get(f"http://{registry}/v2/{name}/manifests/1.0.0",
                                headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"})
        assert manifest.headers["Docker-Content-Digest"] == digest  # untouched
    finally:
        for image in (first, second):
            client.images.remove(image, force=True)


def enhanced_finding(cve: str, severity: str, fix: str, package: str = "libc6", score: float | None = 8.8,
                     cvss: float | None = None) -> dict:
    """One finding as ECR enhanced scanning (Amazon Inspector) reports it."""
    return {
        "awsAccountId": "123456789012", "findingArn": f"arn:aws:inspector2:us-east-1:123456789012:finding/{cve}",
        "description": f"{cve} in {package}", "firstObservedAt": 1760000000, "lastObservedAt": 1760000000,
        "packageVulnerabilityDetails": {
            "source": "DEBIAN_CVE", "vulnerabilityId": cve, "vendorSeverity": severity,
            "vulnerablePackages": [{"name": package, "version": "2.36", "arch": "X86_64", "packageManager": "OS",
                                    **({"fixedInVersion": "2.36-9+deb12u4"} if fix == "YES" else {})}],
            **({"cvss": [{"baseScore": cvss, "scoringVector": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H",
                          "source": "NVD", "version": "3.1"}]} if cvss is not None else {}),
        },
        "remediation": {"recommendation": {"text": "None Provided"}},
        **({"score": score} if score is not None else {}), "severity": severity, "status": "ACTIVE",
        "title": f"{cve} - {package}",
        "type": "PACKAGE_VULNERABILITY", "fixAvailable": fix, "exploitAvailable": "NO", "updatedAt": 1760000000,
    }


@pytest.fixture
def scanned(ecr, aws_env, tmp_path):
    """An image in a fresh repository whose scan will report the given enhanced findings."""
    def make(*findings, status="COMPLETE", prefix="byoc-test-scan"):
        name = unique(prefix)
        cli.main(["ensure", "--definitions", str(definitions(tmp_path, name))])
        ecr.put_image(repositoryName=name, imageManifest=MANIFEST, imageTag="1.0.0")
        if findings or status != "COMPLETE":
            counts = {}
            for f in findings:
                counts[f["severity"]] = counts.get(f["severity"], 0) + 1
            result = {"registryId": "123456789012", "repositoryName": name, "imageId": {"imageTag": "1.0.0"},
                      "imageScanStatus": {"status": status, "description": f"status {status}"},
                      "imageScanFindings": {"enhancedFindings": list(findings), "findingSeverityCounts": counts}}
            requests.post(f"{aws_env}/moto-api/static/ecr/scan-finding-results",
                          json={"results": [result], "region": "us-east-1"}).raise_for_status()
        return f"{name}:1.0.0"
    return make


def allowlist(tmp_path, *entries) -> str:
    path = tmp_path / "allowlist.json"
    path.write_text(json.dumps({"entries": list(entries)}))
    return str(path)


def gate(target, allow, capsys, *extra) -> tuple[int, str]:
    capsys.readouterr()
    code = cli.main(["scan", target, "--allowlist", allow, "--poll-seconds", "0.1", *extra])
    return code, capsys.readouterr().out


def test_gate_fails_on_a_fixable_critical(scanned, tmp_path, capsys):
    target = scanned(enhanced_finding("CVE-2023-4911", "CRITICAL", "YES"),
                     enhanced_finding("CVE-2024-0001", "MEDIUM", "YES", "zlib1g"))
    code, out = gate(target, allowlist(tmp_path), capsys)
    assert code == 1
    assert "BLOCKING CRITICAL CVE-2023-4911 in libc6 (fix available)" in out and "CVE-2024-0001" not in out


def test_gate_passes_unfixable_high_and_fixable_medium(scanned, tmp_path, capsys):
    target = scanned(enhanced_finding("CVE-2023-4911", "HIGH", "NO"),
                     enhanced_finding("CVE-2024-0001", "MEDIUM", "YES", "zlib1g"))
    code, out = gate(target, allowlist(tmp_path), capsys)
    assert (code, out.splitlines()[0]) == (0, f"{target}: scan gate PASSED")


def test_gate_reads_enhanced_scanning_statuses(scanned, tmp_path, capsys):
    code, out = gate(scanned(enhanced_finding("CVE-2024-0001", "LOW", "YES"), status="ACTIVE"),
                     allowlist(tmp_path), capsys)
    assert code == 0, out
    code, out = gate(scanned(status="UNSUPPORTED_IMAGE"), allowlist(tmp_path), capsys)
    assert code == 1 and "scan: scan status UNSUPPORTED_IMAGE" in out


def test_gate_fails_on_the_basic_scan_moto_reports(scanned, tmp_path, capsys):
    """moto's own fixed answer: a basic-scan HIGH without fix information counts as fixable."""
    code, out = gate(scanned(), allowlist(tmp_path), capsys)
    assert code == 1 and "BLOCKING HIGH CVE-9999-9999 in moto_fake (fix unknown (basic scan))" in out


def test_allowlist_entry_lets_a_finding_through_until_its_review_date(scanned, tmp_path, capsys):
    finding = enhanced_finding("CVE-2023-4911", "HIGH", "YES")
    tomorrow, yesterday = dt.date.today() + dt.timedelta(days=1), dt.date.today() - dt.timedelta(days=1)
    entry = {"vulnerability": "CVE-2023-4911", "package": "libc6", "reason": "not reachable: no setuid binaries"}

    code, out = gate(scanned(finding), allowlist(tmp_path, {**entry, "reviewBy": tomorrow.isoformat()}), capsys)
    assert code == 0 and f"allowed HIGH CVE-2023-4911 until {tomorrow}" in out

    code, out = gate(scanned(finding), allowlist(tmp_path, {**entry, "reviewBy": yesterday.isoformat()}), capsys)
    assert code == 1
    assert f"EXPIRED allowlist entry CVE-2023-4911: review-by {yesterday} has passed" in out
    assert "BLOCKING HIGH CVE-2023-4911" in out

    other_package = {**entry, "package": "openssl", "reviewBy": tomorrow.isoformat()}
    code, _ = gate(scanned(finding), allowlist(tmp_path, other_package), capsys)
    assert code == 1


@pytest.mark.parametrize("entry, problem", [
    ({"vulnerability": "CVE-1", "reviewBy": "2099-01-01"}, "reason"),
    ({"vulnerability": "CVE-1", "reason": "  ", "reviewBy": "2099-01-01"}, "reason"),
    ({"vulnerability": "CVE-1", "reason": "ok"}, "reviewBy"),
    ({"vulnerability": "CVE-1", "reason": "ok", "reviewBy": "next year"}, "reviewBy"),
])
def test_allowlist_entries_need_a_reason_and_a_date(tmp_path, entry, problem):
    with pytest.raises(scan_gate.AllowlistError, match=problem):
        scan_gate.load_allowlist(allowlist(tmp_path, entry))


def test_shipped_allowlist_and_definitions_load():
    scan_gate.load_allowlist()
    assert {r.name for r in repositories.load()} == {"byoc-training", "byoc-serving"}


@dataclass(frozen=True)
class Image:
    pushed_days_ago: float
    tags: tuple[str, ...] = field(default=())


def selected(selection: dict, image: Image) -> bool:
    status = selection["tagStatus"]
    if status == "untagged":
        return not image.tags
    if status == "any":
        return True
    patterns = selection.get("tagPatternList") or [f"{p}*" for p in selection.get("tagPrefixList", [])]
    # every pattern of the list must match one of the image's tags
    return bool(image.tags) and all(any(fnmatch.fnmatchcase(t, p) for t in image.tags) for p in patterns)


def expired_by(policy: dict, images: list[Image]) -> set[Image]:
    """ECR's documented evaluation (LifecyclePolicies.html, "How lifecycle policies work"): rules in
    rulePriority order; an image that matches a rule's selection cannot be expired by a rule of lower
    priority, which still counts it; count rules keep the newest N of what they select."""
    claimed, expired = set(), set()
    for rule in sorted(policy["rules"], key=lambda r: r["rulePriority"]):
        selection = rule["selection"]
        matched = [i for i in images if selected(selection, i)]
        if selection["countType"] == "imageCountMoreThan":
            candidates = sorted(matched, key=lambda i: i.pushed_days_ago)[selection["countNumber"]:]
        else:
            candidates = [i for i in matched if i.pushed_days_ago > selection["countNumber"]]
        expired |= {i for i in candidates if i not in claimed}
        claimed |= set(matched)
    return expired


def test_the_lifecycle_policy_never_expires_versions_or_deployed_images(ecr, tmp_path):
    """Two years of pushes: every commit is tagged, some releases carry a version, one is deployed."""
    name = unique("byoc-test-lifecycle")
    cli.main(["ensure", "--definitions", str(definitions(tmp_path, name))])
    policy = json.loads(ecr.get_lifecycle_policy(repositoryName=name)["lifecyclePolicyText"])
    commits = [Image(day, (f"{day:012x}",)) for day in range(0, 700, 7)]
    releases = [Image(day + 1, (f"{day:012x}", f"0.{day}.0")) for day in range(0, 700, 35)]
    v_tags = [Image(day + 2, (f"v1.{day}",)) for day in range(0, 700, 70)]
    deployed = Image(650, ("5d4eb83a1b2c", image_protection.tag_for("fashion", "sha256:" + "ab" * 32)))
    untagged = [Image(3), Image(30)]
    images = commits + releases + v_tags + [deployed] + untagged
    expired = expired_by(policy, images)
    assert not expired & {*releases, *v_tags, deployed}
    assert Image(30) in expired and Image(3) not in expired
    newest_tagged = sorted((i for i in images if i.tags), key=lambda i: i.pushed_days_ago)[:30]
    assert expired == {i for i in commits if i not in newest_tagged} | {Image(30)}  # and it does clean up


def test_deploy_tags_are_what_the_policy_protects():
    assert fnmatch.fnmatchcase(image_protection.tag_for("fashion-ep", "sha256:" + "c" * 64), image_protection.PATTERN)
    assert image_protection.PATTERN in repositories.load()[0].protected_patterns()


def test_protecting_an_image(ecr, capsys):
    uri = ecr_image(unique("byoc-test-protect"), "0.1.0")
    repository, digest = uri.split("/", 1)[1].split("@")
    [(_, _, request)] = image_protection.protect_calls(ecr, uri, "fashion")
    assert request["imageTag"] == f"deployed-fashion-{digest[7:19]}" and request["imageDigest"] == digest
    ecr.put_image(**request)
    assert image_protection.protect_calls(ecr, uri, "fashion") == []  # tagged already
    by_tag = uri.split("@")[0] + ":0.1.0"
    assert image_protection.protect_calls(ecr, by_tag, "other")[0][2]["imageDigest"] == digest
    assert image_protection.protect_calls(ecr, "byoc-serving:latest", "fashion") == []
    assert "not an ECR image" in capsys.readouterr().out
    with pytest.raises(LaunchError, match="no such image"):
        image_protection.protect_calls(ecr, uri.split("@")[0] + "@sha256:" + "0" * 64, "fashion")
    with pytest.raises(LaunchError, match="has no repository"):
        image_protection.protect_calls(ecr, f"123456789012.dkr.ecr.us-east-1.amazonaws.com/{unique('nope')}:1", "x")


def test_protect_tags_what_listed_endpoints_run(ecr, aws_env, tmp_path, capsys):
    """python -m ecr protect; byoc-cloud deploy and roll tag the same way (tests/cloud/test_launch.py)."""
    sagemaker = boto3.client("sagemaker")
    uri = ecr_image(unique("byoc-test-listed"), "0.3.0")
    endpoint = unique("listed-ep")
    sagemaker.create_model(ModelName=endpoint, ExecutionRoleArn=ROLE,
                           PrimaryContainer={"Image": uri, "ModelDataUrl": "s3://bucket/model.tar.gz"})
    sagemaker.create_endpoint_config(EndpointConfigName=endpoint, ProductionVariants=[{
        "VariantName": "AllTraffic", "ModelName": endpoint, "InstanceType": "ml.m5.xlarge", "InitialInstanceCount": 1}])
    sagemaker.create_endpoint(EndpointName=endpoint, EndpointConfigName=endpoint)
    path = definitions(tmp_path, unique("byoc-test-defs"), protectEndpoints=[endpoint])
    assert cli.main(["protect", "--definitions", str(path)]) == 0
    digest = uri.split("@")[1]
    assert f"tagged deployed-{endpoint}-{digest[7:19]}" in capsys.readouterr().out
    repository = uri.split("/", 1)[1].split("@")[0]
    tags = ecr.describe_images(repositoryName=repository, imageIds=[{"imageDigest": digest}])["imageDetails"][0]["imageTags"]
    assert sorted(tags) == ["0.3.0", f"deployed-{endpoint}-{digest[7:19]}"]
    assert cli.main(["protect", endpoint]) == 0
    assert "protected already" in capsys.readouterr().out
    assert cli.main(["protect", "no-such-endpoint"]) == 1


@pytest.mark.parametrize("finding, blocked", [
    (enhanced_finding("CVE-2026-0001", "UNTRIAGED", "YES", score=8.8), "BLOCKING UNTRIAGED (score 8.8: HIGH)"),
    (enhanced_finding("CVE-2026-0002", "UNDEFINED", "YES", score=None, cvss=9.8), "BLOCKING UNDEFINED (score 9.8: CRITICAL)"),
    (enhanced_finding("CVE-2026-0003", "UNTRIAGED", "YES", score=7.0), "BLOCKING UNTRIAGED (score 7: HIGH)"),
    (enhanced_finding("CVE-2026-0004", "UNTRIAGED", "YES", score=6.9), None),
    (enhanced_finding("CVE-2026-0005", "UNTRIAGED", "NO", score=9.1), None),  # no fix: as for a rated CRITICAL
    (enhanced_finding("CVE-2026-0006", "UNTRIAGED", "YES", score=None), None),  # no score at all: nothing to rate
])
def test_unrated_findings_are_rated_by_their_score(scanned, tmp_path, capsys, finding, blocked):
    code, out = gate(scanned(finding), allowlist(tmp_path), capsys)
    assert (code, blocked is None or blocked in out) == (1 if blocked else 0, True), out


@pytest.fixture
def enhanced(ecr, scanned, monkeypatch):
    """Enhanced scanning for repositories named byoc-test-enh*, and Amazon Inspector's coverage of an image
    as answers queued on a real inspector2 client (botocore's Stubber checks each request and answer
    against the service model): moto has no ListCoverage."""
    from botocore.stub import Stubber

    ecr.put_registry_scanning_configuration(scanType="ENHANCED", rules=[{
        "scanFrequency": "CONTINUOUS_SCAN", "repositoryFilters": [{"filter": "byoc-test-enh*", "filterType": "WILDCARD"}]}])
    inspector = boto3.client("inspector2")
    stub = Stubber(inspector)
    monkeypatch.setattr(cli, "inspector_client", lambda: inspector)

    def make(*findings, coverage: list):
        target = scanned(*findings, status="ACTIVE", prefix="byoc-test-enh")
        repository = target.split(":")[0]
        ecr.start_image_scan(repositoryName=repository, imageId={"imageTag": "1.0.0"})  # moto serves findings after one
        digest = ecr.describe_images(repositoryName=repository)["imageDetails"][0]["imageDigest"]
        resource = f"{ecr.describe_repositories(repositoryNames=[repository])['repositories'][0]['repositoryArn']}/{digest}"
        expected = {"filterCriteria": {"resourceId": [{"comparison": "EQUALS", "value": resource}],
                                       "resourceType": [{"comparison": "EQUALS", "value": "AWS_ECR_CONTAINER_IMAGE"}]}}
        request = expected
        for state in coverage:
            if state is NEXT_PAGE:  # an empty page and a nextToken, which the next request sends back
                stub.add_response("list_coverage", {"coveredResources": [], "nextToken": "page-2"}, request)
                request = {**expected, "nextToken": "page-2"}
                continue
            stub.add_response("list_coverage", {"coveredResources": [] if state is None else [
                covered(resource, *state)]}, request)
            request = expected
        stub.activate()
        return target, stub
    yield make
    stub.deactivate()
    ecr.put_registry_scanning_configuration(scanType="BASIC", rules=[])


def covered(resource: str, code: str, reason: str, scanned: bool) -> dict:
    """One CoveredResource as inspector2 ListCoverage returns it."""
    return {"resourceType": "AWS_ECR_CONTAINER_IMAGE", "resourceId": resource, "accountId": "123456789012",
            "scanType": "PACKAGE", "scanStatus": {"statusCode": code, "reason": reason},
            "resourceMetadata": {"ecrRepository": {"name": resource.split("/")[1], "scanFrequency": "CONTINUOUS_SCAN"},
                                 "ecrImage": {"tags": ["1.0.0"], "imagePulledAt": dt.datetime(2026, 1, 2)}},
            **({"lastScannedAt": dt.datetime(2026, 1, 2, 3, 4, 5)} if scanned else {})}


NOT_LISTED, PENDING, SCANNED = None, ("ACTIVE", "PENDING_INITIAL_SCAN", False), ("ACTIVE", "SUCCESSFUL", True)
NEXT_PAGE = "next page"


def test_enhanced_gate_waits_for_inspector_to_have_scanned_then_judges(enhanced, tmp_path, capsys):
    target, stub = enhanced(enhanced_finding("CVE-2023-4911", "CRITICAL", "YES"), coverage=[NOT_LISTED, PENDING, SCANNED])
    code, out = gate(target, allowlist(tmp_path), capsys)
    assert code == 1 and "BLOCKING CRITICAL CVE-2023-4911 in libc6 (fix available)" in out
    stub.assert_no_pending_responses()  # it asked until the image was scanned, and no more


def test_enhanced_gate_passes_an_image_confirmed_clean(enhanced, tmp_path, capsys):
    target, _ = enhanced(coverage=[PENDING, SCANNED])
    code, out = gate(target, allowlist(tmp_path), capsys)
    assert (code, out.splitlines()[0]) == (0, f"{target}: scan gate PASSED")


@pytest.mark.parametrize("state, pending", [
    (PENDING, "still pending: Amazon Inspector coverage ACTIVE, PENDING_INITIAL_SCAN: not scanned yet"),
    (NOT_LISTED, "still pending: Amazon Inspector does not list it in its coverage yet"),
])
def test_enhanced_gate_times_out_saying_what_is_pending(enhanced, tmp_path, capsys, state, pending):
    """ECR already says ACTIVE with no findings, which the gate used to pass: Inspector has not scanned it."""
    target, _ = enhanced(coverage=[state] * 50)
    code, out = gate(target, allowlist(tmp_path), capsys, "--poll-seconds", "0.02", "--timeout", "0.3")
    assert code == 1 and "scan: no scan result within 0.3 s; " + pending in out


def test_enhanced_gate_fails_when_inspector_will_not_scan(enhanced, tmp_path, capsys):
    target, _ = enhanced(coverage=[("INACTIVE", "UNSUPPORTED_OS", False)])
    code, out = gate(target, allowlist(tmp_path), capsys)
    assert code == 1 and "Amazon Inspector will not scan it: coverage INACTIVE, UNSUPPORTED_OS" in out


def test_enhanced_gate_fails_for_a_repository_no_rule_covers(enhanced, scanned, tmp_path, capsys):
    target = scanned(status="ACTIVE", prefix="byoc-test-scan")  # not byoc-test-enh*
    code, out = gate(target, allowlist(tmp_path), capsys)
    assert code == 1 and "none of its rules covers repository" in out


# --- ECR as it really answers -------------------------------------------------------------------
# Cases taken from the ECR and Amazon Inspector API references (DescribeImageScanFindings,
# StartImageScan, BatchGetRepositoryScanningConfiguration, EnhancedImageScanFinding, inspector2
# ScanStatus and ListCoverage) and botocore's service models; where moto cannot answer so, botocore's
# Stubber does, and it checks every request and every answer against the service model.

SCAN_ON_PUSH_ONCE = ("INACTIVE", "SCAN_FREQUENCY_SCAN_ON_PUSH", True)  # "scanned one time" (inspector2 ScanStatus)


@pytest.mark.parametrize("states, passed, says", [
    ([SCAN_ON_PUSH_ONCE], True, "PASSED"),
    ([("INACTIVE", "SCAN_FREQUENCY_SCAN_ON_PUSH", False), SCAN_ON_PUSH_ONCE], True, "PASSED"),
    ([("ACTIVE", "SCAN_IN_PROGRESS", False), SCANNED], True, "PASSED"),
    ([("INACTIVE", "INTERNAL_ERROR", False), SCANNED], True, "PASSED"),  # "resolves ... no action required"
    ([("INACTIVE", "SCAN_FREQUENCY_MANUAL", False)], False, "will not scan it: coverage INACTIVE, SCAN_FREQUENCY_MANUAL"),
    ([("INACTIVE", "SCAN_ELIGIBILITY_EXPIRED", True)], False, "will not scan it: coverage INACTIVE, SCAN_ELIGIBILITY_EXPIRED"),
])
def test_enhanced_gate_reads_every_coverage_reason(enhanced, tmp_path, capsys, states, passed, says):
    """A scan-on-push repository's image is scanned once and then INACTIVE: scanned, not refused."""
    target, stub = enhanced(coverage=states)
    code, out = gate(target, allowlist(tmp_path), capsys)
    assert (code, says in out) == (0 if passed else 1, True), out
    stub.assert_no_pending_responses()


def test_enhanced_gate_reads_every_page_of_the_coverage(enhanced, tmp_path, capsys):
    """A filtered ListCoverage may answer a page without the image and a nextToken."""
    target, stub = enhanced(enhanced_finding("CVE-2023-4911", "CRITICAL", "YES"), coverage=[NEXT_PAGE, SCANNED])
    code, out = gate(target, allowlist(tmp_path), capsys, "--timeout", "5")
    assert code == 1 and "BLOCKING CRITICAL CVE-2023-4911" in out, out
    stub.assert_no_pending_responses()


@pytest.mark.parametrize("status, code, says", [
    ("ACTIVE", 1, "BLOCKING CRITICAL CVE-2023-4911"),
    ("SUPPRESSED", 0, "suppressed CRITICAL CVE-2023-4911 in libc6: an Amazon Inspector suppression rule covers it"),
    ("CLOSED", 0, "PASSED"),
])
def test_enhanced_findings_status(scanned, tmp_path, capsys, status, code, says):
    """EnhancedImageScanFinding.status is Inspector's: ACTIVE, SUPPRESSED or CLOSED."""
    finding = {**enhanced_finding("CVE-2023-4911", "CRITICAL", "YES"), "status": status}
    result, out = gate(scanned(finding), allowlist(tmp_path), capsys)
    assert (result, says in out) == (code, True), out
    if status == "CLOSED":
        assert "CVE-2023-4911" not in out


def manifest_with_layer(fill: str) -> str:
    layer = {"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "size": 32, "digest": "sha256:" + fill * 64}
    return json.dumps({**json.loads(MANIFEST), "layers": [layer]})


def test_gate_judges_the_pushed_digest_not_where_a_mutable_tag_points_now(ecr, aws_env, tmp_path, capsys):
    """A repository made by someone else with MUTABLE tags: the tag moved to a clean image after the push."""
    name = unique("byoc-test-moved")
    ecr.create_repository(repositoryName=name, imageTagMutability="MUTABLE")
    first, second = manifest_with_layer("a"), manifest_with_layer("b")
    pushed = ecr.put_image(repositoryName=name, imageManifest=first, imageTag="1.0.0")["image"]["imageId"]["imageDigest"]
    ecr.put_image(repositoryName=name, imageManifest=first, imageTag="abc123")
    moved = ecr.put_image(repositoryName=name, imageManifest=second, imageTag="1.0.0")["image"]["imageId"]["imageDigest"]
    assert pushed != moved
    for digest, findings in [(pushed, [enhanced_finding("CVE-2023-4911", "CRITICAL", "YES")]), (moved, [])]:
        requests.post(f"{aws_env}/moto-api/static/ecr/scan-finding-results", json={"region": "us-east-1", "results": [{
            "registryId": "123456789012", "repositoryName": name, "imageId": {"imageDigest": digest},
            "imageScanStatus": {"status": "COMPLETE", "description": "The scan was completed successfully."},
            "imageScanFindings": {"enhancedFindings": findings, "findingSeverityCounts": {"CRITICAL": len(findings)}}}]}
                      ).raise_for_status()
    uri = ecr.describe_repositories(repositoryNames=[name])["repositories"][0]["repositoryUri"]
    images = tmp_path / "images.json"
    images.write_text(json.dumps({name: {"uri": f"{uri}@{pushed}", "tags": ["1.0.0", "abc123"], "local_image": "x"}}))
    capsys.readouterr()
    code = cli.main(["scan", "--images-file", str(images), "--allowlist", allowlist(tmp_path), "--poll-seconds", "0.1"])
    out = capsys.readouterr().out
    assert code == 1 and f"{name}@{pushed}: scan gate FAILED" in out and "BLOCKING CRITICAL CVE-2023-4911" in out, out


def test_allowlist_ids_match_in_any_case_and_unused_entries_are_named(scanned, tmp_path, capsys):
    finding = enhanced_finding("GHSA-jfh8-c2jp-5v3q", "HIGH", "YES", "log4j-core")
    finding["packageVulnerabilityDetails"]["relatedVulnerabilities"] = ["CVE-2021-44228"]
    review = (dt.date.today() + dt.timedelta(days=30)).isoformat()
    by_cve = {"vulnerability": "CVE-2021-44228", "reason": "JNDI lookups disabled", "reviewBy": review}
    code, out = gate(scanned(finding), allowlist(tmp_path, by_cve), capsys)
    # a GHSA finding is not covered by its CVE's entry (an advisory's related ids can name several), but says so
    assert code == 1 and "BLOCKING HIGH GHSA-jfh8-c2jp-5v3q in log4j-core (fix available; related: CVE-2021-44228)" in out
    assert "note: allowlist entry CVE-2021-44228 let nothing through" in out
    lower = {**by_cve, "vulnerability": "ghsa-JFH8-c2jp-5v3q", "package": "log4j-core"}
    code, out = gate(scanned(finding), allowlist(tmp_path, lower), capsys)
    assert code == 0 and "allowed HIGH GHSA-jfh8-c2jp-5v3q" in out and "note:" not in out, out


@pytest.mark.parametrize("entry, problem", [
    ({"vulnerability": " CVE-2023-4911", "reason": "r", "reviewBy": "2099-01-01"}, "needs a vulnerability id as the scan reports it"),
    ({"vulnerability": "CVE-2023-4911 libc6", "reason": "r", "reviewBy": "2099-01-01"}, "got 'CVE-2023-4911 libc6'"),
    ({"vulnerability": 4911, "reason": "r", "reviewBy": "2099-01-01"}, "needs a vulnerability id"),
    ({"vulnerability": "CVE-2023-4911", "reason": "r", "reviewBy": "2099-01-01", "package": ["libc6"]}, "package must be"),
    ({"vulnerability": "CVE-2023-4911", "reason": ["r"], "reviewBy": "2099-01-01"}, "reason"),
    ("CVE-2023-4911", "expected an object"),
])
def test_allowlist_entries_that_could_never_match_are_refused(tmp_path, entry, problem):
    with pytest.raises(scan_gate.AllowlistError, match=re.escape(problem)):
        scan_gate.load_allowlist(allowlist(tmp_path, entry))


def test_allowlist_must_hold_a_list_of_entries(tmp_path):
    path = tmp_path / "allowlist.json"
    path.write_text(json.dumps({"entries": {"vulnerability": "CVE-2023-4911"}}))
    with pytest.raises(scan_gate.AllowlistError, match="entries are a list"):
        scan_gate.load_allowlist(path)


@pytest.fixture
def ecr_answers(aws_env, monkeypatch):
    """The ECR client `python -m ecr` makes, answering from a queue (botocore's Stubber)."""
    from botocore.stub import Stubber

    client = boto3.client("ecr")
    stub = Stubber(client)
    make = boto3.client
    monkeypatch.setattr(boto3, "client", lambda service, *a, **k: client if service == "ecr" else make(service, *a, **k))
    with stub:
        yield stub
    stub.assert_no_pending_responses()


REPO, IMAGE_ID = "byoc-serving", {"imageTag": "1.0.0"}
WHERE = {"repositoryName": REPO, "imageId": IMAGE_ID}
DIGEST = "sha256:" + "ab" * 32
BASIC = {"registryId": "123456789012", "scanningConfiguration": {"scanType": "BASIC", "rules": [
    {"scanFrequency": "SCAN_ON_PUSH", "repositoryFilters": [{"filter": "byoc-*", "filterType": "WILDCARD"}]}]}}


def scan_answer(status: str, findings: list | None = None, next_token: str | None = None) -> dict:
    """A DescribeImageScanFindings answer for a basic scan."""
    answer = {"registryId": "123456789012", "repositoryName": REPO,
              "imageId": {"imageDigest": DIGEST, "imageTag": "1.0.0"},
              "imageScanStatus": {"status": status, "description": f"The scan is {status.lower()}."}}
    if findings is not None:
        counts = {}
        for f in findings:
            counts[f["severity"]] = counts.get(f["severity"], 0) + 1
        answer["imageScanFindings"] = {"imageScanCompletedAt": dt.datetime(2026, 12, 7, 18),
                                       "vulnerabilitySourceUpdatedAt": dt.datetime(2026, 12, 7),
                                       "findingSeverityCounts": counts, "findings": findings}
    return {**answer, **({"nextToken": next_token} if next_token else {})}


def basic_finding(cve: str, severity: str, package: str = "glibc", cvss3: str = "7.8") -> dict:
    """One ImageScanFinding as basic scanning reports it (name, uri, severity, attributes)."""
    return {"name": cve, "uri": f"https://security-tracker.debian.org/tracker/{cve}", "severity": severity,
            "description": f"{cve} in {package}",
            "attributes": [{"key": "package_version", "value": "2.36-9+deb12u1"}, {"key": "package_name", "value": package},
                           {"key": "CVSS3_VECTOR", "value": "CVSS:3.1/AV:L/AC:L/PR:L/UI:N/S:U/C:H/I:H/A:H"},
                           {"key": "CVSS3_SCORE", "value": cvss3}]}


def test_basic_gate_waits_for_the_scan_on_push_it_may_not_repeat(ecr_answers, tmp_path, capsys):
    """Right after a push ECR may not know the scan on push yet, and refuses a second scan of the image
    within 24 hours (StartImageScan: "This limit includes if an image was scanned on initial push")."""
    ecr_answers.add_response("get_registry_scanning_configuration", BASIC, {})
    ecr_answers.add_client_error("describe_image_scan_findings", "ScanNotFoundException",
                                 "Image scan does not exist for the image", 400, expected_params=WHERE)
    ecr_answers.add_client_error("start_image_scan", "LimitExceededException",
                                 "The scan quota per image has been exceeded. Wait and try again.", 400,
                                 expected_params=WHERE)
    ecr_answers.add_response("describe_image_scan_findings", scan_answer("IN_PROGRESS"), WHERE)
    findings = [basic_finding("CVE-2023-4911", "HIGH")]
    ecr_answers.add_response("describe_image_scan_findings", scan_answer("COMPLETE", findings), WHERE)
    ecr_answers.add_response("describe_image_scan_findings", scan_answer("COMPLETE", findings), WHERE)
    code, out = gate(f"{REPO}:1.0.0", allowlist(tmp_path), capsys, "--poll-seconds", "0.01")
    assert code == 1 and "BLOCKING HIGH CVE-2023-4911 in glibc (fix unknown (basic scan))" in out, out


@pytest.mark.parametrize("error, message", [
    ("UnsupportedImageTypeException", "The image is of a type that cannot be scanned."),
    ("ImageArchivedException", "The specified image is archived and cannot be scanned."),
])
def test_basic_gate_fails_at_once_when_ecr_cannot_scan_the_image(ecr_answers, tmp_path, capsys, error, message):
    ecr_answers.add_response("get_registry_scanning_configuration", BASIC, {})
    ecr_answers.add_client_error("describe_image_scan_findings", "ScanNotFoundException", "no scan", 400,
                                 expected_params=WHERE)
    ecr_answers.add_client_error("start_image_scan", error, message, 400, expected_params=WHERE)
    code, out = gate(f"{REPO}:1.0.0", allowlist(tmp_path), capsys)
    assert code == 1 and f"scan: ECR cannot scan it: {message}" in out, out


def test_basic_gate_reads_every_page_of_findings(ecr_answers, tmp_path, capsys):
    """DescribeImageScanFindings answers at most maxResults (1000) findings a page, with a nextToken."""
    ecr_answers.add_response("get_registry_scanning_configuration", BASIC, {})
    first = [basic_finding(f"CVE-2024-{n:04d}", "MEDIUM", cvss3="5.0") for n in range(1000)]
    ecr_answers.add_response("describe_image_scan_findings", scan_answer("COMPLETE", first, "page-2"), WHERE)
    ecr_answers.add_response("describe_image_scan_findings", scan_answer("COMPLETE", first, "page-2"), WHERE)
    ecr_answers.add_response("describe_image_scan_findings",
                             scan_answer("COMPLETE", [basic_finding("CVE-2023-4911", "CRITICAL")]),
                             {**WHERE, "nextToken": "page-2"})
    code, out = gate(f"{REPO}:1.0.0", allowlist(tmp_path), capsys)
    assert code == 1 and "BLOCKING CRITICAL CVE-2023-4911" in out, out


def test_enhanced_gate_names_a_repository_ecr_cannot_describe(ecr_answers, tmp_path, capsys):
    """BatchGetRepositoryScanningConfiguration answers a missing repository in `failures`."""
    ecr_answers.add_response("get_registry_scanning_configuration", {"registryId": "123456789012", "scanningConfiguration": {
        "scanType": "ENHANCED", "rules": [{"scanFrequency": "CONTINUOUS_SCAN",
                                           "repositoryFilters": [{"filter": "*", "filterType": "WILDCARD"}]}]}}, {})
    ecr_answers.add_response("batch_get_repository_scanning_configuration", {"scanningConfigurations": [], "failures": [
        {"repositoryName": REPO, "failureCode": "REPOSITORY_NOT_FOUND",
         "failureReason": "The specified repository could not be found."}]}, {"repositoryNames": [REPO]})
    code, out = gate(f"{REPO}:1.0.0", allowlist(tmp_path), capsys)
    assert code == 1 and ("scan: ECR cannot say how repository byoc-serving is scanned: REPOSITORY_NOT_FOUND, "
                          "The specified repository could not be found.") in out, out


def test_gate_names_an_image_ecr_does_not_have(ecr, aws_env, tmp_path, capsys):
    name = unique("byoc-test-none")
    ecr.create_repository(repositoryName=name)
    code, out = gate(f"{name}:9.9.9", allowlist(tmp_path), capsys)
    assert code == 1 and f"{name}:9.9.9: scan gate FAILED" in out and "scan: ECR has no such image" in out, out


INDEX = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [
    {"mediaType": "application/vnd.oci.image.manifest.v1+json", "size": 500, "digest": "sha256:" + "c" * 64,
     "platform": {"architecture": "amd64", "os": "linux"}}]})


@pytest.mark.docker
def test_push_to_a_namespaced_repository_whose_tag_holds_a_multi_platform_image(ecr, registry, tmp_path, capsys,
                                                                                monkeypatch):
    """`team/byoc-serving`; someone pushed a multi-platform image (an OCI index, no config) as 1.0.0."""
    client = docker.from_env()
    name = unique("team/byoc-test-index")
    cli.main(["ensure", "--definitions", str(definitions(tmp_path, name))])
    ecr.put_image(repositoryName=name, imageManifest=INDEX, imageTag="1.0.0",
                  imageManifestMediaType="application/vnd.oci.image.index.v1+json")
    image, output = small_image(client, "indexed"), tmp_path / "images.json"
    monkeypatch.setenv("ECR_REGISTRY", registry)
    try:
        capsys.readouterr()
        assert cli.main(["push", "--tag", "1.0.0", "--output", str(output), f"{image}={name}"]) == 2
        err = capsys.readouterr().err
        assert f"tag '1.0.0' already exists in ECR repository {name} for another image" in err and "Traceback" not in err
        assert cli.main(["push", "--tag", "2.0.0", "--output", str(output), f"{image}={name}"]) == 0
        uri = json.loads(output.read_text())[name]["uri"]
        assert uri.split("@")[0].endswith(f"/{name}")
        capsys.readouterr()
        assert cli.main(["uri", name, "--images-file", str(output)]) == 0 and capsys.readouterr().out.strip() == uri
    finally:
        client.images.remove(image, force=True)


def test_a_tag_ecr_cannot_read_stops_the_push(aws_env):
    """BatchGetImage answers a KMS failure (ImageFailureCode KmsError) for the tag: what it holds is unknown."""
    from botocore.stub import Stubber

    from ecr import registry

    client = boto3.client("ecr")
    with Stubber(client) as stub:
        stub.add_response("batch_get_image", {"images": [], "failures": [
            {"imageId": {"imageTag": "1.0.0"}, "failureCode": "KmsError",
             "failureReason": "The KMS key is disabled."}]},
            {"repositoryName": "byoc-serving", "imageIds": [{"imageTag": "1.0.0"}],
             "acceptedMediaTypes": list(registry.MANIFEST_TYPES + registry.INDEX_TYPES)})
        with pytest.raises(registry.PushError, match="cannot tell what tag '1.0.0' holds in ECR repository "
                                                     r"byoc-serving \(KmsError: The KMS key is disabled.\)"):
            registry.existing_image(client, "byoc-serving", "1.0.0")
        stub.add_response("batch_get_image", {"images": [], "failures": [
            {"imageId": {"imageTag": "1.0.0"}, "failureCode": "ImageNotFound", "failureReason": "Requested image not found"}]})
        assert registry.existing_image(client, "byoc-serving", "1.0.0") is None


def test_the_same_image_is_recognised_by_any_of_its_digests():
    """The classic image store's image ID is the config digest; the containerd store's is the manifest's."""
    from types import SimpleNamespace

    from ecr.registry import holds

    manifest, config = "sha256:" + "a" * 64, "sha256:" + "b" * 64
    assert holds((manifest, config), SimpleNamespace(id=config, attrs={}))
    assert holds((manifest, None), SimpleNamespace(id=manifest, attrs={}))
    assert holds((manifest, None), SimpleNamespace(id="sha256:" + "e" * 64, attrs={"RepoDigests": [f"r/x@{manifest}"]}))
    assert not holds((manifest, config), SimpleNamespace(id="sha256:" + "e" * 64, attrs={"RepoDigests": []}))


def test_ensure_takes_over_a_repository_made_by_someone_else(ecr, tmp_path, capsys):
    """Mutable through an exclusion of every tag, no scan on push, another KMS key, in a namespace."""
    name = unique("team/byoc-test-theirs")
    ecr.create_repository(repositoryName=name, imageTagMutability="IMMUTABLE_WITH_EXCLUSION",
                          imageTagMutabilityExclusionFilters=[{"filter": "*", "filterType": "WILDCARD"}],
                          imageScanningConfiguration={"scanOnPush": False},
                          encryptionConfiguration={"encryptionType": "KMS", "kmsKey": KEY.format("theirs")})
    path = definitions(tmp_path, name)
    capsys.readouterr()
    assert cli.main(["ensure", "--definitions", str(path)]) == 0
    assert capsys.readouterr().out.strip() == (
        f"{name}: imageTagMutability IMMUTABLE_WITH_EXCLUSION (excluding *) -> IMMUTABLE, scanOnPush -> True, "
        "lifecycle policy, repository policy")
    assert cli.main(["ensure", "--definitions", str(path)]) == 0
    assert capsys.readouterr().out.strip() == f"{name}: up to date"

    assert cli.main(["ensure", "--definitions", str(definitions(tmp_path, name, encryption={
        "encryptionType": "KMS", "kmsKey": KEY.format("ours")}))]) == 2
    assert (f"is encrypted with KMS (key {KEY.format('theirs')}), the definition asks for KMS (key {KEY.format('ours')})"
            in capsys.readouterr().err)
    by_id = definitions(tmp_path, name, encryption={"encryptionType": "KMS", "kmsKey": "theirs"})
    assert cli.main(["ensure", "--definitions", str(by_id)]) == 0


KEY = "arn:aws:kms:us-east-1:123456789012:key/{}"


def test_ensure_keeps_the_tag_exclusions_a_definition_names(ecr, tmp_path, capsys):
    name = unique("byoc-test-excl")
    path = definitions(tmp_path, name, imageTagMutability="IMMUTABLE_WITH_EXCLUSION",
                       imageTagMutabilityExclusionFilters=["latest", "dev-*"])
    assert cli.main(["ensure", "--definitions", str(path)]) == 0
    repo = ecr.describe_repositories(repositoryNames=[name])["repositories"][0]
    assert (repo["imageTagMutability"], sorted(f["filter"] for f in repo["imageTagMutabilityExclusionFilters"])) == (
        "IMMUTABLE_WITH_EXCLUSION", ["dev-*", "latest"])
    ecr.put_image_tag_mutability(repositoryName=name, imageTagMutability="IMMUTABLE_WITH_EXCLUSION",
                                 imageTagMutabilityExclusionFilters=[{"filter": "*", "filterType": "WILDCARD"}])
    capsys.readouterr()
    assert cli.main(["ensure", "--definitions", str(path)]) == 0
    assert capsys.readouterr().out.strip() == (f"{name}: imageTagMutability IMMUTABLE_WITH_EXCLUSION (excluding *) -> "
                                               "IMMUTABLE_WITH_EXCLUSION (excluding dev-*, latest)")
    assert cli.main(["ensure", "--definitions", str(path)]) == 0
    assert capsys.readouterr().out.strip() == f"{name}: up to date"


def test_protect_accepts_a_tag_a_deploy_added_meanwhile(ecr):
    """A deploy tagged the image between protect's read and its put_image."""
    uri = ecr_image(unique("byoc-test-race"), "0.1.0")
    [(_, _, request)] = image_protection.protect_calls(ecr, uri, "fashion")
    assert cli.add_tag(ecr, request) is True
    assert cli.add_tag(ecr, request) is False  # the same manifest and tag again


def test_ensure_warns_when_the_registry_scans_a_repository_never(ecr, tmp_path, capsys):
    """With enhanced scanning only repositories a rule covers are scanned; scanOnPush does not count."""
    name = unique("byoc-test-uncovered")
    ecr.put_registry_scanning_configuration(scanType="ENHANCED", rules=[{
        "scanFrequency": "CONTINUOUS_SCAN", "repositoryFilters": [{"filter": "prod-*", "filterType": "WILDCARD"}]}])
    try:
        assert cli.main(["ensure", "--definitions", str(definitions(tmp_path, name))]) == 0
        assert (f"warning: the registry uses enhanced scanning, but none of its rules covers repository {name}"
                in capsys.readouterr().err)
    finally:
        ecr.put_registry_scanning_configuration(scanType="BASIC", rules=[])
    assert cli.main(["ensure", "--definitions", str(definitions(tmp_path, name))]) == 0
    assert "warning" not in capsys.readouterr().err


ECR_SCAN_STATUSES = botocore.session.get_session().get_service_model("ecr").shape_for("ScanStatus").enum


@pytest.mark.parametrize("status", [s for s in ECR_SCAN_STATUSES if s not in scan_gate.DONE + scan_gate.PENDING])
def test_every_other_scan_status_fails_the_gate_at_once(scanned, tmp_path, capsys, status):
    """Every ScanStatus of botocore's model that is neither done nor pending (FAILED, UNSUPPORTED_IMAGE,
    SCAN_ELIGIBILITY_EXPIRED, FINDINGS_UNAVAILABLE, LIMIT_EXCEEDED, IMAGE_ARCHIVED, ...): no findings to judge."""
    code, out = gate(scanned(status=status), allowlist(tmp_path), capsys, "--timeout", "5")
    assert code == 1 and f"scan: scan status {status}: status {status}" in out, out


def test_a_basic_finding_ecr_did_not_rate_is_rated_by_its_cvss3_score(ecr_answers, tmp_path, capsys):
    ecr_answers.add_response("get_registry_scanning_configuration", BASIC, {})
    unrated = basic_finding("CVE-2026-0007", "UNDEFINED", "openssl", cvss3="9.8")
    for _ in range(2):
        ecr_answers.add_response("describe_image_scan_findings", scan_answer("COMPLETE", [unrated]), WHERE)
    code, out = gate(f"{REPO}:1.0.0", allowlist(tmp_path), capsys)
    assert code == 1 and "BLOCKING UNDEFINED (score 9.8: CRITICAL) CVE-2026-0007 in openssl" in out, out


def test_an_exploitable_finding_without_a_fix_is_named_but_does_not_block(scanned, tmp_path, capsys):
    finding = {**enhanced_finding("CVE-2024-6387", "CRITICAL", "NO", "openssh-server"), "exploitAvailable": "YES"}
    code, out = gate(scanned(finding), allowlist(tmp_path), capsys)
    assert code == 0 and ("unfixed CRITICAL CVE-2024-6387 in openssh-server: an exploit is known and no fix exists "
                          "yet (not blocking: nothing to upgrade to)") in out, out


@pytest.mark.docker
def test_a_tag_named_twice_is_pushed_once(ecr, registry, tmp_path, capsys, monkeypatch):
    client = docker.from_env()
    name = unique("byoc-test-twice")
    cli.main(["ensure", "--definitions", str(definitions(tmp_path, name))])
    image = small_image(client, "twice")
    monkeypatch.setenv("ECR_REGISTRY", registry)
    try:
        assert cli.main(["push", "--tag", "1.0.0", "--tag", "1.0.0", "--output", str(tmp_path / "o.json"),
                         f"{image}={name}"]) == 0
        assert [d["imageTags"] for d in ecr.describe_images(repositoryName=name)["imageDetails"]] == [["1.0.0"]]
    finally:
        client.images.remove(image, force=True)
