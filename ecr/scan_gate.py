"""Wait for an image's scan and decide whether it may ship.

The gate fails on CRITICAL or HIGH findings that have a fix, unless an
allowlist entry covers them. Enhanced scanning (Amazon Inspector) says per
finding whether a fix exists (`fixAvailable`); basic scanning does not, so a
basic CRITICAL or HIGH finding counts as fixable: the gate errs towards
blocking. Allowlist entries carry a reason and a review-by date; an entry past
its date fails the gate until someone reviews it.
"""
import datetime as dt
import json
import time
from dataclasses import dataclass
from pathlib import Path

ALLOWLIST = Path(__file__).with_name("scan-allowlist.json")
BLOCKING_SEVERITIES = ("CRITICAL", "HIGH")


@dataclass(frozen=True)
class Finding:
    vulnerability: str
    severity: str
    packages: tuple[str, ...]
    fix_available: bool | None  # None: the scan does not say (basic scanning)

    @property
    def fixable(self) -> bool:
        return self.fix_available is not False


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


def findings_from(response: dict) -> list[Finding]:
    """Findings from one describe_image_scan_findings response (basic and enhanced alike)."""
    scan = response.get("imageScanFindings", {})
    findings = []
    for item in scan.get("findings", []):
        attributes = {a["key"]: a.get("value") for a in item.get("attributes", [])}
        package = attributes.get("package_name")
        findings.append(Finding(item["name"], item.get("severity", "UNDEFINED"),
                                (package,) if package else (), None))
    for item in scan.get("enhancedFindings", []):
        details = item.get("packageVulnerabilityDetails", {})
        packages = tuple(p["name"] for p in details.get("vulnerablePackages", []) if p.get("name"))
        fix = item.get("fixAvailable")
        findings.append(Finding(details.get("vulnerabilityId") or item.get("title", "?"),
                                item.get("severity", "UNTRIAGED"), packages,
                                None if fix is None else fix in ("YES", "PARTIAL")))
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
            lines.append(f"  BLOCKING {f.severity} {f.vulnerability} in {', '.join(f.packages) or '?'} ({fix})")
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
        if finding.severity not in BLOCKING_SEVERITIES or not finding.fixable:
            continue
        entry = next((e for e in valid if e.covers(finding)), None)
        if entry:
            allowed.append((finding, entry))
        else:
            blocking.append(finding)
    return Verdict(blocking, allowed, expired)


DONE = ("COMPLETE", "ACTIVE")  # basic scanning ends COMPLETE; enhanced (continuous) scanning reports ACTIVE
PENDING = ("IN_PROGRESS", "PENDING")


def scan_results(ecr, repository: str, tag: str, delay: float = 5, max_attempts: int = 120) -> tuple[list, str | None]:
    """All findings of repository:tag once its scan is done, and a problem if it did not get there.

    Scan on push starts the scan; if none exists (scan on push off, or a stand-in that
    does not scan), one is started here. boto3's image_scan_complete waiter knows basic
    scanning's statuses only, hence the loop.
    """
    image_id = {"imageTag": tag}
    for _ in range(max_attempts):
        try:
            first = ecr.describe_image_scan_findings(repositoryName=repository, imageId=image_id)
        except ecr.exceptions.ScanNotFoundException:
            ecr.start_image_scan(repositoryName=repository, imageId=image_id)
            continue
        status = first.get("imageScanStatus", {})
        if status.get("status") in DONE:
            break
        if status.get("status") not in PENDING:
            return [], f"scan status {status.get('status')}: {status.get('description', '')}"
        time.sleep(delay)
    else:
        return [], f"no scan result after {max_attempts} attempts {delay:g} s apart"
    findings = []
    for page in ecr.get_paginator("describe_image_scan_findings").paginate(
            repositoryName=repository, imageId=image_id):
        findings += findings_from(page)
    return findings, None
