"""Wait for an image's scan and decide whether it may ship.

The gate fails on CRITICAL or HIGH findings that have a fix, unless an
allowlist entry covers them. Enhanced scanning (Amazon Inspector) says per
finding whether a fix exists (`fixAvailable`); basic scanning does not, so a
basic CRITICAL or HIGH finding counts as fixable: the gate errs towards
blocking. A finding not rated yet (UNTRIAGED, UNDEFINED: where new CVEs start)
is rated by its score (Inspector's, else its CVSS base score) in CVSS's bands:
7 or more is HIGH, 9 or more CRITICAL. An enhanced finding Inspector has CLOSED
is gone from the image; one it SUPPRESSED (a suppression rule of the account)
is reported and does not block. Allowlist entries name the id the scan reports
(in any case: a GHSA finding is not covered by its CVE's entry), carry a reason
and a review-by date; an entry past its date fails the gate until someone
reviews it.

Waiting. The registry's scanning configuration decides how an image is scanned,
not the repository's scanOnPush. With basic scanning the gate starts the scan
that scan on push did not (ECR allows one per image per 24 hours, the scan on
push included, so a refused start waits for that one). With enhanced scanning,
ECR reports ACTIVE as soon as continuous scanning covers an image, before
Inspector has scanned it: the gate waits until Inspector's coverage of the
image (inspector2 ListCoverage, every page) says it was scanned (SUCCESSFUL, or
once for a scan-on-push repository, with a lastScannedAt) and ECR has the
results, and only then judges the findings, or their absence. An image nothing
will scan (an INACTIVE reason, a repository no enhanced-scanning rule covers,
an image ECR cannot scan or does not have) fails the gate at once; the timeout
fails it naming what was still pending.
"""
import datetime as dt
import json
import re
import time
from dataclasses import dataclass, field
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
    status: str = "ACTIVE"  # Amazon Inspector's: ACTIVE, SUPPRESSED (by a suppression rule) or CLOSED (remediated)
    related: tuple[str, ...] = ()  # other ids of the same vulnerability (a GHSA's CVE, an advisory's CVEs)
    exploit_available: bool = False  # Amazon Inspector knows a public exploit

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
        """The finding's own id, in any case (ids are case-insensitive: cve-2023-4911 is CVE-2023-4911);
        not its related ids, which for an advisory can name several vulnerabilities."""
        return finding.vulnerability.upper() == self.vulnerability.upper() and (
            self.package is None or self.package in finding.packages)


class AllowlistError(ValueError):
    pass


VULNERABILITY_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]*")  # CVE-2023-4911, GHSA-jfh8-c2jp-5v3q, ALAS2-2024-2500


def load_allowlist(path: Path = ALLOWLIST) -> list[AllowEntry]:
    spec = json.loads(Path(path).read_text())
    raw_entries = spec.get("entries", []) if isinstance(spec, dict) else None
    if not isinstance(raw_entries, list):
        raise AllowlistError(f"{path}: expected an object whose entries are a list")
    return [allow_entry(raw, f"{path} entry {i}") for i, raw in enumerate(raw_entries)]


def allow_entry(raw, where: str) -> AllowEntry:
    """One entry, refused with the field that is wrong: an entry that cannot match would block silently."""
    if not isinstance(raw, dict):
        raise AllowlistError(f"{where}: expected an object with vulnerability, reason and reviewBy")
    vulnerability, package = raw.get("vulnerability"), raw.get("package")
    where = f"{where} ({vulnerability if isinstance(vulnerability, str) else '?'})"
    if not isinstance(vulnerability, str) or not VULNERABILITY_ID.fullmatch(vulnerability):
        raise AllowlistError(f"{where}: needs a vulnerability id as the scan reports it (CVE-2023-4911, "
                             f"GHSA-jfh8-c2jp-5v3q): letters, digits, . _ : and -, got {vulnerability!r}")
    if not isinstance(raw.get("reason"), str) or not raw["reason"].strip():
        raise AllowlistError(f"{where}: needs a vulnerability id and a reason")
    if package is not None and (not isinstance(package, str) or not package or package != package.strip()):
        raise AllowlistError(f"{where}: package must be a package name as the scan reports it, got {package!r}")
    try:
        review_by = dt.date.fromisoformat(raw["reviewBy"])
    except (KeyError, TypeError, ValueError):
        raise AllowlistError(f"{where}: needs reviewBy as YYYY-MM-DD") from None
    return AllowEntry(vulnerability, raw["reason"].strip(), review_by, package)


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
                                None if fix is None else fix in ("YES", "PARTIAL"), enhanced_score(item),
                                item.get("status", "ACTIVE"), tuple(details.get("relatedVulnerabilities", [])),
                                item.get("exploitAvailable") == "YES"))
    return findings


@dataclass
class Verdict:
    blocking: list[Finding]
    allowed: list[tuple[Finding, AllowEntry]]
    expired: list[AllowEntry]
    suppressed: list[Finding] = field(default_factory=list)  # would block, but Amazon Inspector suppresses them
    exploitable: list[Finding] = field(default_factory=list)  # no fix to ship yet, but an exploit is known
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
            related = f"; related: {', '.join(f.related)}" if f.related else ""
            lines.append(f"  BLOCKING {rated(f)} {f.vulnerability} in {', '.join(f.packages) or '?'} ({fix}{related})")
        for e in self.expired:
            lines.append(f"  EXPIRED allowlist entry {e.vulnerability}: review-by {e.review_by} has passed "
                         f"(reason was: {e.reason})")
        for f, e in self.allowed:
            lines.append(f"  allowed {f.severity} {f.vulnerability} until {e.review_by}: {e.reason}")
        for f in self.exploitable:
            lines.append(f"  unfixed {rated(f)} {f.vulnerability} in {', '.join(f.packages) or '?'}: an exploit is "
                         "known and no fix exists yet (not blocking: nothing to upgrade to)")
        for f in self.suppressed:
            lines.append(f"  suppressed {rated(f)} {f.vulnerability} in {', '.join(f.packages) or '?'}: "
                         "an Amazon Inspector suppression rule covers it")
        return "\n".join(lines)


def rated(finding: Finding) -> str:
    if finding.rating == finding.severity:
        return finding.severity
    return f"{finding.severity} (score {finding.score:g}: {finding.rating})"


def evaluate(findings: list[Finding], allowlist: list[AllowEntry], today: dt.date | None = None) -> Verdict:
    """CLOSED findings are gone from the image; SUPPRESSED ones were accepted in Amazon Inspector by
    whoever runs it for the account, and are reported without blocking; so are findings without a
    fix that have a known exploit (exploitAvailable), for someone to weigh."""
    today = today or dt.date.today()
    expired = [e for e in allowlist if e.review_by < today]
    valid = [e for e in allowlist if e.review_by >= today]
    verdict = Verdict([], [], expired)
    for finding in findings:
        if finding.status == "CLOSED" or finding.rating not in BLOCKING_SEVERITIES:
            continue
        if not finding.fixable:
            if finding.exploit_available and finding.status == "ACTIVE":
                verdict.exploitable.append(finding)
            continue
        entry = next((e for e in valid if e.covers(finding)), None)
        if entry:
            verdict.allowed.append((finding, entry))
        elif finding.status == "SUPPRESSED":
            verdict.suppressed.append(finding)
        else:
            verdict.blocking.append(finding)
    return verdict


def unused(allowlist: list[AllowEntry], verdicts: list[Verdict]) -> list[AllowEntry]:
    """Entries that let nothing through in any of these images (a package no longer there, an id
    the scan spells otherwise: a finding reported as GHSA-... is not covered by its CVE's entry)."""
    used = {id(e) for v in verdicts for _, e in v.allowed}
    expired = {id(e) for v in verdicts for e in v.expired}
    return [e for e in allowlist if id(e) not in used | expired]


DONE = ("COMPLETE", "ACTIVE")  # basic scanning ends COMPLETE; enhanced (continuous) scanning reports ACTIVE
PENDING = ("IN_PROGRESS", "PENDING")
# Amazon Inspector's coverage reasons (inspector2 ScanStatus): scanned once it has a lastScannedAt (a scan-on-push
# repository's image is scanned once, then INACTIVE with SCAN_FREQUENCY_SCAN_ON_PUSH); INTERNAL_ERROR resolves
# itself ("no action required"). Any other INACTIVE reason means no scan is coming.
SCANNED_REASONS = ("SUCCESSFUL", "SCAN_FREQUENCY_SCAN_ON_PUSH")
TRANSIENT_REASONS = ("INTERNAL_ERROR",)


def scanning(ecr, repository: str) -> tuple[str | None, str | None]:
    """('ENHANCED' | 'BASIC', None), or (None, why nothing will scan the repository).

    ECR's registry scanning configuration decides, not the repository's scanOnPush: with enhanced
    scanning only repositories a rule covers are scanned; with basic scanning a repository no
    scan-on-push rule covers is scanned manually (the gate starts that scan).
    """
    if ecr.get_registry_scanning_configuration()["scanningConfiguration"].get("scanType") != "ENHANCED":
        return "BASIC", None
    response = ecr.batch_get_repository_scanning_configuration(repositoryNames=[repository])
    if response.get("failures"):
        failure = response["failures"][0]
        return None, f"ECR cannot say how repository {repository} is scanned: {failure.get('failureCode')}, " \
                     f"{failure.get('failureReason', '')}".rstrip(", ")
    [config] = response["scanningConfigurations"]
    if not config.get("appliedScanFilters") or config.get("scanFrequency") == "MANUAL":
        return None, (f"the registry uses enhanced scanning, but none of its rules covers repository {repository}: "
                      "its images are never scanned (add a repository filter for it)")
    return "ENHANCED", None


def coverage(inspector, resource_id: str) -> tuple[str, str]:
    """('scanned' | 'pending' | 'failed', what Inspector says) for one ECR image."""
    request = {"filterCriteria": {"resourceId": [{"comparison": "EQUALS", "value": resource_id}],
                                  "resourceType": [{"comparison": "EQUALS", "value": "AWS_ECR_CONTAINER_IMAGE"}]}}
    model_check.check_request(inspector, "list_coverage", request)
    # a filtered list may answer a page without the resource and a nextToken: read every page
    pages = inspector.get_paginator("list_coverage").paginate(**request)
    resource = next((r for page in pages for r in page["coveredResources"]), None)
    if resource is None:
        return "pending", "Amazon Inspector does not list it in its coverage yet"
    status = resource.get("scanStatus", {})
    code, reason = status.get("statusCode"), status.get("reason")
    if reason in SCANNED_REASONS and resource.get("lastScannedAt"):
        return "scanned", f"scanned by Amazon Inspector at {resource['lastScannedAt']}"
    if code == "ACTIVE" or reason in SCANNED_REASONS + TRANSIENT_REASONS:
        return "pending", f"Amazon Inspector coverage {code}, {reason}: not scanned yet"
    return "failed", f"Amazon Inspector will not scan it: coverage {code}, {reason}"


def said(error) -> str:
    """What AWS said in a ClientError: its message, else its code."""
    return error.response["Error"].get("Message") or error.response["Error"]["Code"]


def start_basic_scan(ecr, repository: str, image_id: dict) -> tuple[str, str]:
    """Start the basic scan that scan on push did not (or not yet) start."""
    try:
        ecr.start_image_scan(repositoryName=repository, imageId=image_id)
    except ecr.exceptions.LimitExceededException:
        # one basic scan per image per 24 hours, the scan on push included: that one is on its way
        return "pending", "ECR has no results yet and allows no second scan within 24 hours"
    except (ecr.exceptions.UnsupportedImageTypeException, ecr.exceptions.ImageArchivedException) as error:
        return "failed", f"ECR cannot scan it: {said(error)}"
    return "pending", "a basic scan was started"


def ecr_results(ecr, repository: str, image_id: dict, start_scan: bool) -> tuple[str, str]:
    """('ready' | 'pending' | 'failed', what ECR says) about the image's scan results."""
    try:
        first = ecr.describe_image_scan_findings(repositoryName=repository, imageId=image_id)
    except ecr.exceptions.ScanNotFoundException:
        if not start_scan:
            return "pending", "ECR has no results for it yet"
        return start_basic_scan(ecr, repository, image_id)
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


def scan_results(ecr, repository: str, image_id: dict, delay: float = 5, timeout: float = 1800,
                 inspector=None) -> tuple[list, str | None]:
    """All findings of the image (imageTag or imageDigest) once its scan is done, and a problem if it
    did not get there.

    inspector: a callable giving an inspector2 client, used with enhanced scanning only. Scan on push
    starts a basic scan; if none exists (scan on push off, or a stand-in that does not scan), one is
    started here. boto3's image_scan_complete waiter knows basic scanning's statuses only, hence the loop.
    """
    try:
        return _scan_results(ecr, repository, image_id, delay, timeout, inspector)
    except (ecr.exceptions.RepositoryNotFoundException, ecr.exceptions.ImageNotFoundException) as error:
        return [], f"ECR has no such image: {said(error)}"


def _scan_results(ecr, repository, image_id, delay, timeout, inspector) -> tuple[list, str | None]:
    mode, unscanned = scanning(ecr, repository)
    if unscanned:
        return [], unscanned
    client = inspector() if mode == "ENHANCED" else None
    deadline = time.monotonic() + timeout
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
