"""Repository definitions (repositories.json) and their idempotent create-or-update.

The lifecycle policy never expires what may be deployed. ECR's rules can only expire, are
applied in rulePriority order, and an image that matches a rule's tag selection can never be
expired by a rule of lower priority; a tagPatternList matches an image only when every pattern
in it matches one of the image's tags (AND), so each protected pattern gets a rule of its own
(OR). The policy, in order:

1. one rule per protected pattern (version tags `v*` and `*.*.*`, and `deployed-*`, which
   byoc-cloud deploy and roll and `python -m ecr protect` put on what endpoints run): it
   matches those images first and expires none (only beyond 9999 of them), so no later rule can;
2. untagged images expire N days after their push;
3. the remaining tagged images (commit-only tags) expire beyond the newest M tagged images:
   that rule counts protected images among the newest M but can never expire them.
"""
import json
from dataclasses import dataclass, field
from pathlib import Path

from byoc_cloud import image_protection, model_check

DEFINITIONS = Path(__file__).with_name("repositories.json")

PULL_ACTIONS = ["ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"]
PUSH_ACTIONS = PULL_ACTIONS + [
    "ecr:CompleteLayerUpload", "ecr:InitiateLayerUpload", "ecr:PutImage", "ecr:UploadLayerPart",
    "ecr:DescribeImages", "ecr:DescribeImageScanFindings", "ecr:StartImageScan",
]


PROTECTED_COUNT = 9999  # a protected rule "expires" only beyond this many images of its pattern


@dataclass
class Repository:
    name: str
    image_tag_mutability: str
    scan_on_push: bool
    encryption: dict
    expire_untagged_after_days: int
    keep_tagged_images: int
    protected_tag_patterns: list[str] = field(default_factory=list)
    pull_principals: list[str] = field(default_factory=list)
    push_principals: list[str] = field(default_factory=list)
    tags: dict[str, str] = field(default_factory=dict)
    protect_endpoints: list[str] = field(default_factory=list)
    tag_mutability_exclusions: list[str] = field(default_factory=list)  # WILDCARD filters (the *_WITH_EXCLUSION modes)

    def mutability_request(self) -> dict:
        filters = [{"filter": f, "filterType": "WILDCARD"} for f in self.tag_mutability_exclusions]
        return {"imageTagMutability": self.image_tag_mutability,
                **({"imageTagMutabilityExclusionFilters": filters} if filters else {})}

    def create_request(self) -> dict:
        return {"repositoryName": self.name, **self.mutability_request(),
                "imageScanningConfiguration": {"scanOnPush": self.scan_on_push},
                "encryptionConfiguration": self.encryption,
                "tags": [{"Key": k, "Value": v} for k, v in self.tags.items()]}

    def protected_patterns(self) -> list[str]:
        """The definition's patterns, and always the one deployments are tagged with."""
        return list(dict.fromkeys([*self.protected_tag_patterns, image_protection.PATTERN]))

    def lifecycle_policy(self) -> dict:
        rules = [{"rulePriority": priority, "description": f"keep every image tagged {pattern}",
                  "selection": {"tagStatus": "tagged", "tagPatternList": [pattern], "countType": "imageCountMoreThan",
                                "countNumber": PROTECTED_COUNT},
                  "action": {"type": "expire"}}
                 for priority, pattern in enumerate(self.protected_patterns(), start=1)]
        last = len(rules)
        return {"rules": rules + [
            {"rulePriority": last + 1,
             "description": f"expire untagged images {self.expire_untagged_after_days} days after their push",
             "selection": {"tagStatus": "untagged", "countType": "sinceImagePushed", "countUnit": "days",
                           "countNumber": self.expire_untagged_after_days},
             "action": {"type": "expire"}},
            {"rulePriority": last + 2,
             "description": f"expire other tagged images beyond the newest {self.keep_tagged_images}",
             "selection": {"tagStatus": "tagged", "tagPatternList": ["*"], "countType": "imageCountMoreThan",
                           "countNumber": self.keep_tagged_images},
             "action": {"type": "expire"}},
        ]}

    def repository_policy(self, account: str) -> dict:
        """Pull for the image consumers, push for the publisher; no wildcard principals or actions."""
        root = [f"arn:aws:iam::{account}:root"]
        return {"Version": "2012-10-17", "Statement": [
            {"Sid": "PullByImageConsumers", "Effect": "Allow",
             "Principal": {"AWS": sorted(self.pull_principals or root)}, "Action": sorted(PULL_ACTIONS)},
            {"Sid": "PushByPublisher", "Effect": "Allow",
             "Principal": {"AWS": sorted(self.push_principals or root)}, "Action": sorted(PUSH_ACTIONS)},
        ]}


def load(path: Path = DEFINITIONS) -> list[Repository]:
    spec = json.loads(Path(path).read_text())
    repositories = []
    for name, overrides in spec["repositories"].items():
        merged = {**spec.get("defaults", {}), **overrides}
        lifecycle = merged["lifecycle"]
        repositories.append(Repository(
            name=name, image_tag_mutability=merged["imageTagMutability"], scan_on_push=merged["scanOnPush"],
            encryption=merged["encryption"], expire_untagged_after_days=int(lifecycle["expireUntaggedAfterDays"]),
            keep_tagged_images=int(lifecycle["keepTaggedImages"]),
            protected_tag_patterns=list(lifecycle.get("protectedTagPatterns", [])),
            pull_principals=merged.get("pullPrincipals", []), push_principals=merged.get("pushPrincipals", []),
            tags=merged.get("tags", {}), protect_endpoints=merged.get("protectEndpoints", []),
            tag_mutability_exclusions=list(merged.get("imageTagMutabilityExclusionFilters", [])),
        ))
    return repositories


class DefinitionError(ValueError):
    pass


def validate(ecr, repo: Repository) -> None:
    """Refuse, before any request, a definition ECR would refuse: its create_repository request
    against the service model, and exclusion filters exactly with the *_WITH_EXCLUSION modes."""
    try:
        model_check.check_request(ecr, "create_repository", repo.create_request())
    except model_check.ModelViolation as violation:
        raise DefinitionError(f"repository {repo.name}: {violation}") from None
    if repo.image_tag_mutability.endswith("_WITH_EXCLUSION") != bool(repo.tag_mutability_exclusions):
        raise DefinitionError(f"repository {repo.name}: imageTagMutabilityExclusionFilters must be given with "
                              "IMMUTABLE_WITH_EXCLUSION or MUTABLE_WITH_EXCLUSION, and only with them")


def _exclusions(repository: dict) -> list[str]:
    return sorted(f["filter"] for f in repository.get("imageTagMutabilityExclusionFilters") or [])


def _mutability(repository: dict) -> str:
    exclusions = _exclusions(repository)
    return repository["imageTagMutability"] + (f" (excluding {', '.join(exclusions)})" if exclusions else "")


def _same_key(current: str | None, wanted: str | None) -> bool:
    """ECR answers the key's ARN; a definition may name its ARN or its ID. No key, or an alias
    (which ECR resolves to an ARN), accepts whichever key the repository has."""
    if not wanted or wanted.startswith("alias/"):
        return True
    return current == wanted or bool(current and current.endswith(f":key/{wanted}"))


def _encryption(configuration: dict) -> str:
    key = configuration.get("kmsKey")
    return f"{configuration.get('encryptionType')}{f' (key {key})' if key else ''}"


def _same_json(text: str | None, wanted: dict) -> bool:
    return text is not None and json.loads(text) == wanted


def ensure(ecr, repo: Repository) -> list[str]:
    """Create the repository or bring its settings in line. Returns what changed (empty: nothing)."""
    changes = []
    try:
        current = ecr.describe_repositories(repositoryNames=[repo.name])["repositories"][0]
    except ecr.exceptions.RepositoryNotFoundException:
        current = ecr.create_repository(**repo.create_request())["repository"]
        changes.append("created")
    else:
        wanted = {**repo.mutability_request(), "imageTagMutabilityExclusionFilters": [
            {"filter": f} for f in repo.tag_mutability_exclusions]}
        if _mutability(current) != _mutability(wanted):
            ecr.put_image_tag_mutability(repositoryName=repo.name, **repo.mutability_request())
            changes.append(f"imageTagMutability {_mutability(current)} -> {_mutability(wanted)}")
        if current["imageScanningConfiguration"].get("scanOnPush") != repo.scan_on_push:
            ecr.put_image_scanning_configuration(repositoryName=repo.name,
                                                 imageScanningConfiguration={"scanOnPush": repo.scan_on_push})
            changes.append(f"scanOnPush -> {repo.scan_on_push}")
        encryption = current.get("encryptionConfiguration", {})
        # ECR fixes encryption at creation; changing it means a new repository.
        if encryption.get("encryptionType") != repo.encryption["encryptionType"] or not _same_key(
                encryption.get("kmsKey"), repo.encryption.get("kmsKey")):
            raise RuntimeError(
                f"repository {repo.name} is encrypted with {_encryption(encryption)}, the definition asks for "
                f"{_encryption(repo.encryption)}: ECR cannot change encryption after creation; "
                "delete and recreate the repository, or change the definition")

    account = current["registryId"]
    try:
        lifecycle = ecr.get_lifecycle_policy(repositoryName=repo.name)["lifecyclePolicyText"]
    except ecr.exceptions.LifecyclePolicyNotFoundException:
        lifecycle = None
    if not _same_json(lifecycle, repo.lifecycle_policy()):
        ecr.put_lifecycle_policy(repositoryName=repo.name, lifecyclePolicyText=json.dumps(repo.lifecycle_policy()))
        changes.append("lifecycle policy")

    try:
        policy = ecr.get_repository_policy(repositoryName=repo.name)["policyText"]
    except ecr.exceptions.RepositoryPolicyNotFoundException:
        policy = None
    if not _same_json(policy, repo.repository_policy(account)):
        ecr.set_repository_policy(repositoryName=repo.name, policyText=json.dumps(repo.repository_policy(account)))
        changes.append("repository policy")
    return changes
