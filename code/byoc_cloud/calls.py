"""What every byoc-cloud command shares: AWS calls as data, (client, operation, request) triples
printed (--dry-run) or sent in order; refusals before any call; SageMaker names."""
import hashlib
import json
import time

from botocore.exceptions import ClientError

from byoc_cloud import model_check

Call = tuple[str, str, dict]


class LaunchError(ValueError):
    """A request the CLI refuses before any AWS call, with the reason."""


class Answer(str):
    """A value an earlier call's response gives (the ARN of a scaling policy an alarm triggers),
    filled in when the calls are sent; --dry-run prints what it stands for."""

    def __new__(cls, operation: str, key: str):
        answer = super().__new__(cls, f"<{key} from {operation}>")
        answer.operation, answer.key = operation, key
        return answer


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


def wait_until_ready(client: str, operation: str, request: dict, clients, wait_delay: float) -> None:
    """What a call needs before AWS accepts it."""
    if client == "application-autoscaling" and operation == "register_scalable_target":
        # Auto-scaling accepts an endpoint only once it is InService.
        name = request["ResourceId"].split("/")[1]
        print(f"waiting for endpoint {name} to be InService")
        clients["sagemaker"].get_waiter("endpoint_in_service").wait(
            EndpointName=name, WaiterConfig={"Delay": wait_delay, "MaxAttempts": int(3600 / wait_delay)})
    elif client == "lambda" and operation in LAMBDA_CHANGES:
        # Lambda changes a function only once it is Active and its last change has finished.
        for waiter in ("function_active_v2", "function_updated_v2"):
            clients["lambda"].get_waiter(waiter).wait(FunctionName=request["FunctionName"],
                                                      WaiterConfig={"Delay": 2, "MaxAttempts": 150})


LAMBDA_CHANGES = ("put_function_concurrency", "update_function_configuration", "create_function_url_config",
                  "add_permission")
ROLE_PROPAGATION_S = 60  # a new IAM role can take some seconds before Lambda may assume it


def call(clients, client: str, operation: str, request: dict) -> dict:
    deadline = time.monotonic() + ROLE_PROPAGATION_S
    while True:
        try:
            return getattr(clients[client], operation)(**request)
        except ClientError as error:
            new_role = (client, operation) == ("lambda", "create_function") and "cannot be assumed" in str(error)
            if not new_role or time.monotonic() > deadline:
                raise
            print("waiting for the new role to reach Lambda")
            time.sleep(5)


def filled(value, answers: dict[str, dict]):
    """`value` with every Answer replaced by the latest response of its operation."""
    if isinstance(value, Answer):
        return answers[value.operation][value.key]
    if isinstance(value, dict):
        return {key: filled(item, answers) for key, item in value.items()}
    if isinstance(value, list):
        return [filled(item, answers) for item in value]
    return value


def send(calls: list[Call], dry_run: bool, clients, wait_delay: float) -> None:
    check_calls(calls, clients)
    answers: dict[str, dict] = {}
    for client, operation, request in calls:
        if dry_run:
            print(json.dumps({"client": client, "operation": operation, "request": request}, indent=2,
                             default=_printable))
            continue
        wait_until_ready(client, operation, request, clients, wait_delay)
        response = answers[operation] = call(clients, client, operation, filled(request, answers))
        arn = next((v for k, v in response.items() if k.endswith("Arn")), "")
        print(f"{operation}: {arn or 'ok'}")
