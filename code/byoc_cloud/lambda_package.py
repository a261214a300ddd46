"""The endpoint Lambda's deployment package: endpoint_lambda.py, the two modules it reads requests and
fetches URLs with, and byoc/contract.py: all that the function imports besides Lambda's Python
runtime (standard library, boto3).

The zip is the same bytes for the same sources (fixed timestamps and modes), so a deployed
function's CodeSha256 says whether its code is current. Standard library only: `make
lambda-zip` runs this file with the system's python3.

    python3 code/byoc_cloud/lambda_package.py build/endpoint-lambda.zip
"""
import base64
import hashlib
import io
import sys
import zipfile
from pathlib import Path

CODE = Path(__file__).resolve().parents[1]  # code/ in the repository, site-packages when installed
FILES = {"endpoint_lambda.py": CODE / "byoc_cloud" / "endpoint_lambda.py",
         "byoc_cloud/__init__.py": CODE / "byoc_cloud" / "__init__.py",
         "byoc_cloud/lambda_events.py": CODE / "byoc_cloud" / "lambda_events.py",
         "byoc_cloud/lambda_urls.py": CODE / "byoc_cloud" / "lambda_urls.py",
         "byoc/__init__.py": CODE / "byoc" / "__init__.py",
         "byoc/contract.py": CODE / "byoc" / "contract.py"}
HANDLER = "endpoint_lambda.handler"
RUNTIME = "python3.12"


def build() -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as package:
        for name, path in FILES.items():
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            package.writestr(info, path.read_bytes())
    return out.getvalue()


def code_sha256(package: bytes) -> str:
    """Lambda's CodeSha256 of a package: base64 of its SHA-256."""
    return base64.b64encode(hashlib.sha256(package).digest()).decode()


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: lambda_package.py OUT.zip", file=sys.stderr)
        return 2
    Path(argv[0]).write_bytes(build())
    print(f"{argv[0]}: handler {HANDLER} ({RUNTIME} runtime)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
