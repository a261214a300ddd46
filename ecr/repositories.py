"""Repository definitions (repositories.json) and their idempotent create-or-update."""
import json
from dataclasses import dataclass, field
from pathlib import Path

DEFINITIONS = Path(__file__).with_name("repositories.json")

PULL_ACTIONS = ["ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"]
PUSH_ACTIONS = PULL_ACTIONS + [
    "ecr:CompleteLayerUpload", "ecr:InitiateLayerUpload", "ecr:PutImage", "ecr:UploadLayerPart",
    "ecr:DescribeImages", "ecr:DescribeImageScanFindings", "ecr:StartImageScan",
]


@dataclass
class Repository:
    name: str
    image_tag_mutability: str
    scan_on_push: bool
    encryption: dict
    expire_untagged_after_days: int
    keep_tagged_images: int
    pull_principals: list[str] = field(default_factory=list)
    push_principals: list[str] = field(default_factory=list)
    tags: dict[str, str] = field(default_factory=dict)

    def lifecycle_policy(self) -> dict:
        return {"rules": [
            {"rulePriority": 1, "description": f"expire untagged images after {self.expire_untagged_after_days} days",
             "selection": {"tagStatus": "untagged", "countType": "sinceImagePushed", "countUnit": "days",
                           "countNumber": self.expire_untagged_after_days},
             "action": {"type": "expire"}},
            {"rulePriority": 2, "description": f"keep the last {self.keep_tagged_images} tagged images",
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
            keep_tagged_images=int(lifecycle["keepTaggedImages"]), pull_principals=merged.get("pullPrincipals", []),
            push_principals=merged.get("pushPrincipals", []), tags=merged.get("tags", {}),
        ))
    return repositories


def _same_json(text: str | None, wanted: dict) -> bool:
    return text is not None and json.loads(text) == wanted


def ensure(ecr, repo: Repository) -> list[str]:
    """Create the repository or bring its settings in line. Returns what changed (empty: nothing)."""
    changes = []
    try:
        current = ecr.describe_repositories(repositoryNames=[repo.name])["repositories"][0]
    except ecr.exceptions.RepositoryNotFoundException:
        current = ecr.create_repository(
            repositoryName=repo.name, imageTagMutability=repo.image_tag_mutability,
            imageScanningConfiguration={"scanOnPush": repo.scan_on_push},
            encryptionConfiguration=repo.encryption,
            tags=[{"Key": k, "Value": v} for k, v in repo.tags.items()],
        )["repository"]
        changes.append("created")
    else:
        if current["imageTagMutability"] != repo.image_tag_mutability:
            ecr.put_image_tag_mutability(repositoryName=repo.name, imageTagMutability=repo.image_tag_mutability)
            changes.append(f"imageTagMutability -> {repo.image_tag_mutability}")
        if current["imageScanningConfiguration"].get("scanOnPush") != repo.scan_on_push:
            ecr.put_image_scanning_configuration(repositoryName=repo.name,
                                                 imageScanningConfiguration={"scanOnPush": repo.scan_on_push})
            changes.append(f"scanOnPush -> {repo.scan_on_push}")
        encryption = current.get("encryptionConfiguration", {})
        if encryption.get("encryptionType") != repo.encryption["encryptionType"]:
            # ECR fixes encryption at creation; changing it means a new repository.
            raise RuntimeError(
                f"repository {repo.name} is encrypted with {encryption.get('encryptionType')}, the definition asks "
                f"for {repo.encryption['encryptionType']}: ECR cannot change encryption after creation; "
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
