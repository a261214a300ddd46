"""byoc-cloud: SageMaker training and tuning jobs, batch transform jobs, endpoints (real-time, async,
serverless, multi-model) and the endpoint's Lambda function, from image URIs, with boto3.

Every command prints a cost estimate (prices.json) before it calls AWS, and
--dry-run prints the requests instead of sending them. boto3 finds region,
credentials and endpoints as usual (AWS_REGION, AWS_PROFILE, AWS_ENDPOINT_URL).

Each command lives in its own module, which adds its subcommand (add_commands) and
returns the calls it wants made; this module parses, runs and reports. A command may also
set `then`: what runs once its calls are sent (following a job, reading a result); it gives
the exit code.
"""
import argparse
import sys

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from byoc_cloud import arguments, endpoints, follow, lambda_functions, preflight, rolls, training_jobs, transform, tuning_jobs
from byoc_cloud.calls import LaunchError, send
from byoc_cloud.pricing import PriceTable, UnknownPrice

COMMANDS = (preflight, training_jobs, tuning_jobs, transform, endpoints, rolls, lambda_functions, follow)


class Clients(dict):
    """boto3 clients by service name, made on first use."""

    def __missing__(self, service: str):
        self[service] = boto3.client(service)
        return self[service]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="byoc-cloud", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dry-run", action="store_true", help="print the requests instead of sending them")
    p.add_argument("--wait-delay", type=arguments.positive, default=30, help=argparse.SUPPRESS)
    sub = p.add_subparsers(dest="command", required=True)
    # --dry-run also after the command name; SUPPRESS keeps the top-level value when it is absent there.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--dry-run", action="store_true", default=argparse.SUPPRESS, help="print, do not send")
    for module in COMMANDS:
        module.add_commands(sub, common)
    return p


def main(argv=None) -> int:
    try:
        args = parser().parse_args(argv)  # a flag's bad value is refused here, before any AWS call
    except SystemExit as refused:  # argparse printed why (or --help)
        return refused.code
    clients = Clients()
    try:
        calls = args.run(args, clients, PriceTable.load())
        send(calls, args.dry_run, clients, args.wait_delay)
        then = getattr(args, "then", None)
        if then and not (args.dry_run and calls):  # nothing to follow after a dry run's printed calls
            return then(args, clients)
    except (LaunchError, UnknownPrice) as error:
        print(f"error: {error.args[0]}", file=sys.stderr)
        return 2
    except (ClientError, BotoCoreError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
