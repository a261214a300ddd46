"""What SageMaker gives the container besides its image: the settings in its environment (--env,
checked against the names and values the image reads, byoc.contract) and network isolation.

Network isolation is on by default wherever the container needs no network: a training job reads
its channels from files SageMaker downloads and writes /opt/ml/model, which SageMaker uploads
(peers of a several-host job still reach each other); an endpoint or transform job loads its model
from /opt/ml/model (a multi-model endpoint from /opt/ml/models), which SageMaker fills, and
answers on its own port. A container that cannot open connections cannot leak data or fetch
code. Serverless endpoints do not support it, so there it is off.
"""
import argparse
from difflib import get_close_matches

from byoc import contract
from byoc_cloud.calls import LaunchError

SETTINGS = {"serving": contract.SERVING_SETTINGS, "training": contract.TRAINING_SETTINGS}
MIB = 1024 * 1024


def _unknown(name: str, image: str) -> str:
    known = [n for n, s in SETTINGS[image].items() if not s.set_by]
    close = get_close_matches(name.upper(), known, n=1)  # names are case-sensitive; typos often are not
    hint = f" Did you mean {close[0]}?" if close else ""
    return (f"--env {name}: the {image} image reads no such setting.{hint} It reads {', '.join(known)} "
            "(README: the contracts; byoc.contract lists them).")


def _payload_within(value: str, mode: str) -> None:
    limit = contract.MAX_REQUEST_BYTES[mode]
    if int(value) * MIB > limit:
        raise LaunchError(f"--env {contract.MAX_PAYLOAD_SETTING}={value}: SageMaker sends {mode} requests of at "
                          f"most {limit:,} bytes, so a larger limit in the container would never be used.")


def environment(pairs: list[str], image: str, mode: str | None = None) -> dict[str, str]:
    """--env NAME=VALUE pairs as a container Environment, each checked as the image would check it.
    `mode` (a hosting mode) also bounds the payload limit by what SageMaker sends in that mode."""
    env: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise LaunchError(f"--env {pair!r}: expected NAME=VALUE")
        if name in env:
            raise LaunchError(f"--env {name} is given twice")
        setting = SETTINGS[image].get(name)
        if setting is None:
            raise LaunchError(_unknown(name, image))
        if setting.set_by:
            raise LaunchError(f"--env {name}: set by {setting.set_by}; a value of yours would clash with it")
        problem = setting.problem(value)
        if problem:
            raise LaunchError(f"--env {name}={value!r}: {problem} ({setting.meaning})")
        env[name] = value.strip()
    if mode and contract.MAX_PAYLOAD_SETTING in env:
        _payload_within(env[contract.MAX_PAYLOAD_SETTING], mode)
    return env


def network_isolation(args, supported: bool = True, why: str = "") -> bool:
    """--network-isolation / --no-network-isolation, default on where the target supports it."""
    if args.network_isolation and not supported:
        raise LaunchError(f"--network-isolation: {why}")
    return supported if args.network_isolation is None else args.network_isolation


def add_arguments(command, image: str) -> None:
    names = ", ".join(n for n, s in SETTINGS[image].items() if not s.set_by)
    command.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                         help=f"a setting in the container's environment (repeatable): {names}")
    command.add_argument("--network-isolation", action=argparse.BooleanOptionalAction, default=None,
                         help="no network in the container (default: on; serverless endpoints: off, "
                              "which they require)")
