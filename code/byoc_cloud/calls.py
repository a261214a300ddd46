"""What every byoc-cloud command shares: AWS calls as data, (client, operation, request) triples
printed (--dry-run) or sent in order; refusals before any call; SageMaker names."""
import hashlib
import json
import time

from byoc_cloud import model_check

Call = tuple[str, str, dict]


class LaunchError(ValueError):
    """A request the CLI refuses before any AWS call, with the reason."""


def timestamped(base: str) -> str:
    """A SageMaker name (at most 63 characters) unique to the second."""
    return f"{base[:47]}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}"


def _printable(value) -> str:
    """--dry-run prints a zip file's size and digest, not its bytes."""
    if isinstance(value, (bytes, bytearray)):
        return f"<{len(value)} bytes, sha256 {hashlib.sha256(value).hexdigest()}>"
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def check_calls(calls: list[Call], clients) -> None:
    """Every request within its API model's enums, maximums and patterns, before the first is sent."""
    for client, operation, request in calls:
        try:
            model_check.check_request(clients[client], operation, request)
        except model_check.ModelViolation as violation:
            raise LaunchError(f"{client} {operation}: {violation}") from None


def send(calls: list[Call], dry_run: bool, clients, wait_delay: float) -> None:
    check_calls(calls, clients)
    for client, operation, request in calls:
        if dry_run:
            print(json.dumps({"client": client, "operation": operation, "request": request}, indent=2,
                             default=_printable))
            continue
        if client == "application-autoscaling" and operation == "register_scalable_target":
            # Auto-scaling accepts an endpoint only once it is InService.
            name = request["ResourceId"].split("/")[1]
            print(f"waiting for endpoint {name} to be InService")
            clients["sagemaker"].get_waiter("endpoint_in_service").wait(
                EndpointName=name, WaiterConfig={"Delay": wait_delay, "MaxAttempts": int(3600 / wait_delay)})
        response = getattr(clients[client], operation)(**request)
        arn = next((v for k, v in response.items() if k.endswith("Arn")), "")
        print(f"{operation}: {arn or 'ok'}")
