"""What every byoc-cloud command shares: AWS calls as data, (client, operation, request) triples
printed (--dry-run) or sent in order; refusals before any call; SageMaker names."""
import json
import time

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
    answers: dict[str, dict] = {}
    for client, operation, request in calls:
        if dry_run:
            print(json.dumps({"client": client, "operation": operation, "request": request}, indent=2))
            continue
        if client == "application-autoscaling" and operation == "register_scalable_target":
            # Auto-scaling accepts an endpoint only once it is InService.
            name = request["ResourceId"].split("/")[1]
            print(f"waiting for endpoint {name} to be InService")
            clients["sagemaker"].get_waiter("endpoint_in_service").wait(
                EndpointName=name, WaiterConfig={"Delay": wait_delay, "MaxAttempts": int(3600 / wait_delay)})
        response = answers[operation] = getattr(clients[client], operation)(**filled(request, answers))
        arn = next((v for k, v in response.items() if k.endswith("Arn")), "")
        print(f"{operation}: {arn or 'ok'}")
