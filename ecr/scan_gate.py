"""Wait for an image's scan and decide whether it may ship.

The gate fails on CRITICAL or HIGH findings that have a fix, unless an
allowlist entry covers them. Enhanced scanning (Amazon Inspector) says per
finding whether a fix exists (`fixAvailable`); basic scanning does not, so a
basic CRITICAL or HIGH finding counts as fixable: the gate errs towards
blocking. A finding not rated yet (UNTRIAGED, UNDEFINED: where new CVEs start)
is rated by its score (Inspector's, else its CVSS base score) in CVSS's bands:
7 or more is HIGH, 9 or more CRITICAL. Allowlist entries carry a reason and a
review-by date; an entry past its date fails the gate until someone reviews it.

Waiting. With enhanced scanning, ECR reports ACTIVE as soon as continuous
scanning covers an image, before Inspector has scanned it: the gate waits until
Inspector's coverage of the image (inspector2 ListCoverage) says it was scanned
(ACTIVE, SUCCESSFUL, a lastScannedAt) and ECR has the results, and only then
judges the findings, or their absence. An image Inspector will not scan (an
INACTIVE reason), or a repository no enhanced-scanning rule covers, fails the
gate; so does the timeout, naming what was still pending.
"""
import datetime as dt
import json
import time
from dataclasses import dataclass
from pathlib import Path

from byoc_cloud import model_check

ALLOWLIST = Path(__file__).with_name("scan-allowlist.json")
BLOCKING_SEVERITIES = ("CRITICAL", "HIGH")
UNRATED = ("UNTRIAGED", "UNDEFINED")
SCORE_BANDS = ((9.0, "CRITICAL"), (7.0, "HIGH"), (4.0, "MEDIUM"), (0.1, "LOW"))  # CVSS v3


@dataclass(frozen=True)
class Finding:
    vulnerability: str
    severity: str
    packages: tuple[str, ...]
    fix_available: bool | None  # None: the scan does not say (basic scanning)
    score: float | None = None  # Inspector's score, else the highest CVSS base score

    @property
    def fixable(self) -> bool:
        return self.fix_available is not False

    @property
    def rating(self) -> str:
        """The severity, or for an unrated finding the band its score falls in."""
        if self.severity in UNRATED and self.score is not None:
            return next((band for floor, band in SCORE_BANDS if self.score >= floor), self.severity)
        return self.severity


@dataclass(frozen=True)
class AllowEntry:
    vulnerability: str
    reason: str
    review_by: dt.date
    package: str | None = None

    def covers(self, finding: Finding) -> bool:
        return finding.vulnerability == self.vulnerability and (
            self.package is None or self.package in finding.packages)


class AllowlistError(ValueError):
    pass


def load_allowlist(path: Path = ALLOWLIST) -> list[AllowEntry]:
    entries = []
    for i, raw in enumerate(json.loads(Path(path).read_text()).get("entries", [])):
        where = f"{path} entry {i} ({raw.get('vulnerability', '?')})"
        if not raw.get("vulnerability") or not str(raw.get("reason", "")).strip():
            raise AllowlistError(f"{where}: needs a vulnerability id and a reason")
        try:
            review_by = dt.date.fromisoformat(raw["reviewBy"])
        except (KeyError, TypeError, ValueError):
            raise AllowlistError(f"{where}: needs reviewBy as YYYY-MM-DD") from None
        entries.append(AllowEntry(raw["vulnerability"], raw["reason"].strip(), review_by, raw.get("package")))
    return entries


def _number(value) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def enhanced_score(item: dict) -> float | None:
    """Inspector's score (ECR calls it `score`), else its CVSS details, else the highest CVSS base score."""
    details = item.get("packageVulnerabilityDetails", {})
    for value in (item.get("score"), item.get("inspectorScore"), item.get("scoreDetails", {}).get("cvss", {}).get("score")):
        if _number(value) is not None:
            return _number(value)
    scores = [s for s in (_number(c.get("baseScore")) for c in details.get("cvss", [])) if s is not None]
    return max(scores, default=None)


def findings_from(response: dict) -> list[Finding]:
    """Findings from one describe_image_scan_findings response (basic and enhanced alike)."""
    scan = response.get("imageScanFindings", {})
    findings = []
    for item in scan.get("findings", []):
        attributes = {a["key"]: a.get("value") for a in item.get("attributes", [])}
        package = attributes.get("package_name")
        score = _number(attributes.get("CVSS3_SCORE")) or _number(attributes.get("CVSS2_SCORE"))
        findings.append(Finding(item["name"], item.get("severity", "UNDEFINED"),
                                (package,) if package else (), None, score))
    for item in scan.get("enhancedFindings", []):
        details = item.get("packageVulnerabilityDetails", {})
        packages = tuple(p["name"] for p in details.get("vulnerablePackages", []) if p.get("name"))
        fix = item.get("fixAvailable")
        findings.append(Finding(details.get("vulnerabilityId") or item.get("title", "?"),
                                item.get("severity", "UNTRIAGED"), packages,
                                None if fix is None else fix in ("YES", "PARTIAL"), enhanced_score(item)))
    return findings


@dataclass
class Verdict:
    blocking: list[Finding]
    allowed: list[tuple[Finding, AllowEntry]]
    expired: list[AllowEntry]
    problem: str | None = None  # the scan itself did not complete

    @property
    def passed(self) -> bool:
        return not (self.blocking or self.expired or self.problem)

    def report(self, image: str) -> str:
        lines = [f"{image}: scan gate {'PASSED' if self.passed else 'FAILED'}"]
        if self.problem:
            lines.append(f"  scan: {self.problem}")
        for f in self.blocking:
            fix = {True: "fix available", None: "fix unknown (basic scan)"}[f.fix_available]
            rating = f.severity if f.rating == f.severity else f"{f.severity} (score {f.score:g}: {f.rating})"
            lines.append(f"  BLOCKING {rating} {f.vulnerability} in {', '.join(f.packages) or '?'} ({fix})")
        for e in self.expired:
            lines.append(f"  EXPIRED allowlist entry {e.vulnerability}: review-by {e.review_by} has passed "
                         f"(reason was: {e.reason})")
        for f, e in self.allowed:
            lines.append(f"  allowed {f.severity} {f.vulnerability} until {e.review_by}: {e.reason}")
        return "\n".join(lines)


def evaluate(findings: list[Finding], allowlist: list[AllowEntry], today: dt.date | None = None) -> Verdict:
    today = today or dt.date.today()
    expired = [e for e in allowlist if e.review_by < today]
    valid = [e for e in allowlist if e.review_by >= today]
    blocking, allowed = [], []
    for finding in findings:
        if finding.rating not in BLOCKING_SEVERITIES or not finding.fixable:
            continue
        entry = next((e for e in valid if e.covers(finding)), None)
        if entry:
            allowed.append((finding, entry))
        else:
            blocking.append(finding)
    return Verdict(blocking, allowed, expired)


DONE = ("COMPLETE", "ACTIVE")  # basic scanning ends COMPLETE; enhanced (continuous) scanning reports ACTIVE
PENDING = ("IN_PROGRESS", "PENDING")


def scanning(ecr, repository: str) -> str:
    """ENHANCED (Inspector scans the repository), BASIC, or UNCOVERED (enhanced scanning, but no rule
    names the repository: nothing scans it)."""
    if ecr.get_registry_scanning_configuration()["scanningConfiguration"].get("scanType") != "ENHANCED":
        return "BASIC"
    [config] = ecr.batch_get_repository_scanning_configuration(repositoryNames=[repository])["scanningConfigurations"]
    return "ENHANCED" if config.get("appliedScanFilters") else "UNCOVERED"


def coverage(inspector, resource_id: str) -> tuple[str, str]:
    """('scanned' | 'pending' | 'failed', what Inspector says) for one ECR image."""
    request = {"filterCriteria": {"resourceId": [{"comparison": "EQUALS", "value": resource_id}],
                                  "resourceType": [{"comparison": "EQUALS", "value": "AWS_ECR_CONTAINER_IMAGE"}]}}
    model_check.check_request(inspector, "list_coverage", request)
    resources = inspector.list_coverage(**request)["coveredResources"]
    if not resources:
        return "pending", "Amazon Inspector does not list it in its coverage yet"
    status = resources[0].get("scanStatus", {})
    code, reason = status.get("statusCode"), status.get("reason")
    if code == "ACTIVE" and reason == "SUCCESSFUL" and resources[0].get("lastScannedAt"):
        return "scanned", f"scanned by Amazon Inspector at {resources[0]['lastScannedAt']}"
    if code == "ACTIVE":
        return "pending", f"Amazon Inspector coverage ACTIVE, {reason}: not scanned yet"
    return "failed", f"Amazon Inspector will not scan it: coverage {code}, {reason}"


def ecr_results(ecr, repository: str, image_id: dict, start_scan: bool) -> tuple[str, str]:
    """('ready' | 'pending' | 'failed', what ECR says) about the image's scan results."""
    try:
        first = ecr.describe_image_scan_findings(repositoryName=repository, imageId=image_id)
    except ecr.exceptions.ScanNotFoundException:
        if not start_scan:
            return "pending", "ECR has no results for it yet"
        ecr.start_image_scan(repositoryName=repository, imageId=image_id)  # basic: scan on push was off
        return "pending", "a basic scan was started"
    status = first.get("imageScanStatus", {})
    if status.get("status") in DONE:
        return "ready", ""
    if status.get("status") in PENDING:
        return "pending", f"ECR scan status {status.get('status')}"
    return "failed", f"scan status {status.get('status')}: {status.get('description', '')}"


def image_state(ecr, inspector, mode: str, repository: str, image_id: dict) -> tuple[str, str]:
    if mode == "ENHANCED":
        digest = ecr.describe_images(repositoryName=repository, imageIds=[image_id])["imageDetails"][0]["imageDigest"]
        arn = ecr.describe_repositories(repositoryNames=[repository])["repositories"][0]["repositoryArn"]
        state, detail = coverage(inspector, f"{arn}/{digest}")
        if state != "scanned":
            return state, detail
    return ecr_results(ecr, repository, image_id, start_scan=mode == "BASIC")


def scan_results(ecr, repository: str, tag: str, delay: float = 5, timeout: float = 1800,
                 inspector=None) -> tuple[list, str | None]:
    """All findings of repository:tag once its scan is done, and a problem if it did not get there.

    inspector: a callable giving an inspector2 client, used with enhanced scanning only. Scan on push
    starts a basic scan; if none exists (scan on push off, or a stand-in that does not scan), one is
    started here. boto3's image_scan_complete waiter knows basic scanning's statuses only, hence the loop.
    """
    mode = scanning(ecr, repository)
    if mode == "UNCOVERED":
        return [], (f"the registry uses enhanced scanning, but none of its rules covers repository {repository}: "
                    "its images are never scanned (add a repository filter for it)")
    client = inspector() if mode == "ENHANCED" else None
    image_id, deadline = {"imageTag": tag}, time.monotonic() + timeout
    while True:
        state, detail = image_state(ecr, client, mode, repository, image_id)
        if state == "failed":
            return [], detail
        if state == "ready":
            break
        if time.monotonic() + delay > deadline:
            return [], f"no scan result within {timeout:g} s; still pending: {detail}"
        time.sleep(delay)
    findings = []
    for page in ecr.get_paginator("describe_image_scan_findings").paginate(
            repositoryName=repository, imageId=image_id):
        findings += findings_from(page)
    return findings, None
