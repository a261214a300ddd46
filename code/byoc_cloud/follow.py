"""Following SageMaker jobs from the terminal: `train --wait`, `tune --wait`, `status NAME`,
`logs NAME [--follow]`.

A training job logs to CloudWatch Logs, group /aws/sagemaker/TrainingJobs, one stream per
host named JOB/algo-N-<epoch>; its description carries the status, the secondary status
transitions (Starting, Downloading, Training, Interrupted, Uploading, ...) and, once it fails,
SageMaker's FailureReason. Following polls both until the job ends and exits 0 only when it
Completed. Ctrl-C stops the following, never the job: nothing here calls a Stop* API.

A job runs for hours; following it rides out what botocore's standard retry mode would try
again (throttles, 5xx answers, dropped connections) for up to PATIENCE_S. It gives up on an
error that will not pass (access denied, expired credentials) at once, and then, as after
Ctrl-C, says that the job keeps running and exits LOST: its outcome is not known.
"""
import datetime as dt
import sys
import time

from botocore.exceptions import BotoCoreError, ClientError
from botocore.retries.standard import RetryContext, ThrottledRetryableChecker, TransientRetryableChecker

from byoc_cloud import arguments

LOG_GROUP = "/aws/sagemaker/TrainingJobs"
TERMINAL = ("Completed", "Failed", "Stopped")
NOT_FOUND = ("ValidationException", "ResourceNotFound", "ResourceNotFoundException")
PATIENCE_S = 600  # how long looks may fail, one after another, before following gives up
LOST = 3  # the exit code when following gave up: the job's outcome is not known


class LogTail:
    """The log lines of one training job that have not been printed yet, from all its hosts."""

    def __init__(self, logs, job: str):
        self.logs, self.prefix, self.tokens = logs, f"{job}/", {}

    def streams(self) -> list[str]:
        names = []
        try:
            for page in self.logs.get_paginator("describe_log_streams").paginate(
                    logGroupName=LOG_GROUP, logStreamNamePrefix=self.prefix):
                names += [s["logStreamName"] for s in page["logStreams"]]
        except self.logs.exceptions.ResourceNotFoundException:
            return []  # no training job has logged in this account and region yet
        return sorted(names)

    def _read(self, stream: str) -> list[dict]:
        events, token = [], self.tokens.get(stream)
        while True:
            request = {"logGroupName": LOG_GROUP, "logStreamName": stream, "startFromHead": True}
            page = self.logs.get_log_events(**request, **({"nextToken": token} if token else {}))
            events += page["events"]
            if page["nextForwardToken"] == token:  # the same token back: nothing newer for now
                break
            token = page["nextForwardToken"]
        self.tokens[stream] = token
        return events

    def timed_lines(self) -> list[tuple[float, str]]:
        """(epoch seconds, line) of each new event, oldest first; lines name their host when there are several."""
        streams = self.streams()
        found = sorted((e["timestamp"], stream, e["message"]) for stream in streams for e in self._read(stream))
        if len(streams) < 2:
            return [(ms / 1000, message) for ms, _, message in found]
        return [(ms / 1000, f"[{stream.split('/', 1)[1].rsplit('-', 1)[0]}] {message}")
                for ms, stream, message in found]

    def lines(self) -> list[str]:
        return [line for _, line in self.timed_lines()]


def _when(value) -> str:
    return value.astimezone(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S") if isinstance(value, dt.datetime) else ""


class Transitions:
    """Each secondary-status transition once (again when its message changes)."""

    def __init__(self, name: str):
        self.name, self.seen = name, set()

    def timed_lines(self, job: dict) -> list[tuple[float, str]]:
        """(epoch seconds, line) of each transition not shown yet; one without a StartTime sorts first."""
        new = []
        for t in job.get("SecondaryStatusTransitions", []):
            key = (t["Status"], t.get("StatusMessage", ""))
            if key not in self.seen:
                self.seen.add(key)
                start = t.get("StartTime")
                new.append((start.timestamp() if isinstance(start, dt.datetime) else float("-inf"),
                            f"{_when(start)} {self.name}: {t['Status']} - {t.get('StatusMessage', '')}"))
        return new


def passes(error: Exception) -> bool:
    """Whether botocore's standard retry mode would try again after `error`."""
    if isinstance(error, ClientError):
        context = RetryContext(attempt_number=1, parsed_response=error.response)
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return (ThrottledRetryableChecker().is_retryable(context) or TransientRetryableChecker().is_retryable(context)
                or status in (500, 502, 503, 504))
    return TransientRetryableChecker().is_retryable(RetryContext(attempt_number=1, caught_exception=error))


class LostSight(Exception):
    """Following cannot go on: AWS refused a look, or has not answered one for PATIENCE_S."""


class Looks:
    """Runs each look at a job; one that fails for a reason that passes answers None, and the
    follower looks again at its next poll."""

    def __init__(self, name: str):
        self.name, self.failing_since = name, None

    def __call__(self, look):
        try:
            answer = look()
        except (ClientError, BotoCoreError) as error:
            if not passes(error):
                raise LostSight(str(error)) from error
            now = time.monotonic()
            if self.failing_since is None:
                self.failing_since = now
                print(f"warning: no answer from AWS while following {self.name} ({error}); looking again "
                      f"for up to {PATIENCE_S:g} s", file=sys.stderr, flush=True)
            elif now - self.failing_since > PATIENCE_S:
                raise LostSight(f"no answer from AWS for {PATIENCE_S:g} s: {error}") from error
            return None
        if self.failing_since is not None:
            self.failing_since = None
            print(f"following {self.name} again", file=sys.stderr, flush=True)
        return answer


def describe_training(sagemaker, name: str) -> dict | None:
    try:
        return sagemaker.describe_training_job(TrainingJobName=name)
    except ClientError as error:
        if error.response["Error"]["Code"] in NOT_FOUND:
            return None
        raise


def describe_tuning(sagemaker, name: str) -> dict | None:
    try:
        return sagemaker.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName=name)
    except ClientError as error:
        if error.response["Error"]["Code"] in NOT_FOUND:
            return None
        raise


def interruptible(name: str, follow) -> int:
    """follow() until it returns; Ctrl-C, or AWS failing the follower, leaves the job running and
    says how to look again."""
    again = f"Look again with `byoc-cloud status {name}` or `byoc-cloud logs {name} --follow`."
    try:
        return follow()
    except KeyboardInterrupt:
        print(f"\nstopped following {name}; the job itself keeps running on SageMaker (Ctrl-C never stops "
              f"it). {again}", file=sys.stderr, flush=True)
        return 130
    except LostSight as error:
        print(f"error: stopped following {name}: {error}. The job itself keeps running on SageMaker and its "
              f"outcome is not known here. {again}", file=sys.stderr, flush=True)
        return LOST


def watch_training(clients, name: str, poll: float, transitions: Transitions | None = None) -> dict:
    """Print the job's transitions and log lines as they come; return its final description."""
    tail, look = LogTail(clients["logs"], name), Looks(name)
    while True:
        job = look(lambda: clients["sagemaker"].describe_training_job(TrainingJobName=name))
        lines = look(tail.timed_lines) if job is not None else None
        if lines is None:  # the next look again (LogTail keeps its place in each stream)
            time.sleep(poll)
            continue
        # One look can find both a transition and the log lines written before it: print them in
        # the order they happened (sorted() is stable: at equal times the transition comes first).
        seen = (transitions.timed_lines(job) if transitions else []) + lines
        for _, line in sorted(seen, key=lambda timed: timed[0]):
            print(line, flush=True)
        if job["TrainingJobStatus"] in TERMINAL:
            while (last := look(tail.lines)) is None:  # what the last look did not see yet
                time.sleep(poll)
            for line in last:
                print(line, flush=True)
            return job
        time.sleep(poll)


def training_outcome(job: dict) -> int:
    name, status = job["TrainingJobName"], job["TrainingJobStatus"]
    if status == "Completed":
        billable = job.get("BillableTimeInSeconds")
        print(f"training job {name} Completed: model {job['ModelArtifacts']['S3ModelArtifacts']}"
              + (f" ({billable} billable seconds)" if billable else ""), flush=True)
        return 0
    reason = job.get("FailureReason") or "SageMaker gave no reason"
    print(f"error: training job {name} {status}: {reason}", file=sys.stderr, flush=True)
    return 1


def follow_training_job(args, clients) -> int:
    """train --wait: from the moment the job is created until it ends."""
    name = args.job_name
    return interruptible(name, lambda: training_outcome(
        watch_training(clients, name, args.poll_seconds, Transitions(name))))


def tuning_summary(tuning: dict) -> str:
    counts = tuning.get("TrainingJobStatusCounters", {})
    limits = tuning["HyperParameterTuningJobConfig"]["ResourceLimits"]
    line = (f"{tuning['HyperParameterTuningJobName']}: {tuning['HyperParameterTuningJobStatus']}; trials "
            f"{counts.get('Completed', 0)} completed, {counts.get('InProgress', 0)} in progress, "
            f"{counts.get('RetryableError', 0) + counts.get('NonRetryableError', 0)} failed, "
            f"{counts.get('Stopped', 0)} stopped (at most {limits.get('MaxNumberOfTrainingJobs', '?')})")
    best = tuning.get("OverallBestTrainingJob") or tuning.get("BestTrainingJob")
    if best and best.get("FinalHyperParameterTuningJobObjectiveMetric"):
        metric = best["FinalHyperParameterTuningJobObjectiveMetric"]
        line += f"; best {best['TrainingJobName']} {metric['MetricName']}={metric['Value']:g}"
    return line


def watch_tuning(sagemaker, name: str, poll: float) -> dict:
    last, look = None, Looks(name)
    while True:
        tuning = look(lambda: sagemaker.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName=name))
        if tuning is None:
            time.sleep(poll)
            continue
        if (summary := tuning_summary(tuning)) != last:
            print(f"{_when(dt.datetime.now(dt.timezone.utc))} {summary}", flush=True)
            last = summary
        if tuning["HyperParameterTuningJobStatus"] in TERMINAL:
            return tuning
        time.sleep(poll)


def tuning_outcome(tuning: dict) -> int:
    name, status = tuning["HyperParameterTuningJobName"], tuning["HyperParameterTuningJobStatus"]
    if status == "Completed":
        print(f"tuning job {name} Completed: `byoc-cloud tune --best {name}` shows the best trial", flush=True)
        return 0
    reason = tuning.get("FailureReason") or "SageMaker gave no reason"
    print(f"error: tuning job {name} {status}: {reason}", file=sys.stderr, flush=True)
    return 1


def follow_tuning_job(args, clients) -> int:
    """tune --wait: the trial counts and the best trial so far, until the tuning job ends."""
    name = args.job_name
    return interruptible(name, lambda: tuning_outcome(watch_tuning(clients["sagemaker"], name,
                                                                   args.poll_seconds)))


def print_training(job: dict) -> None:
    resources = job.get("ResourceConfig", {})
    print(f"{job['TrainingJobName']}: {job['TrainingJobStatus']} ({job.get('SecondaryStatus', '?')}); "
          f"{resources.get('InstanceCount', '?')} x {resources.get('InstanceType', '?')}"
          + (", spot" if job.get("EnableManagedSpotTraining") else ""))
    for t in job.get("SecondaryStatusTransitions", []):
        print(f"  {_when(t.get('StartTime'))}  {t['Status']:<12} {t.get('StatusMessage', '')}")
    if job.get("FailureReason"):
        print(f"  failure: {job['FailureReason']}")
    if job["TrainingJobStatus"] == "Completed":
        print(f"  model: {job['ModelArtifacts']['S3ModelArtifacts']}")


def show_status(args, clients) -> int:
    sagemaker = clients["sagemaker"]
    if job := describe_training(sagemaker, args.name):
        print_training(job)
        return 0
    if tuning := describe_tuning(sagemaker, args.name):
        print(tuning_summary(tuning))
        if tuning.get("FailureReason"):
            print(f"  failure: {tuning['FailureReason']}")
        return 0
    print(f"error: no training job or tuning job named {args.name} (region {sagemaker.meta.region_name})",
          file=sys.stderr)
    return 1


def show_logs(args, clients) -> int:
    name = args.name
    if not args.follow:
        lines = LogTail(clients["logs"], name).lines()
        for line in lines:
            print(line)
        if not lines:
            print(f"no log lines for {name} yet (log group {LOG_GROUP}, streams {name}/...)", file=sys.stderr)
        return 0
    if describe_training(clients["sagemaker"], name) is None:
        print(f"error: no training job named {name} to follow", file=sys.stderr)
        return 1
    return interruptible(name, lambda: training_outcome(watch_training(clients, name, args.poll_seconds)))


def add_commands(sub, common) -> None:
    command = sub.add_parser("status", parents=[common], help="a training or tuning job's status")
    command.add_argument("name", type=arguments.JOB_NAME, help="the training job's or tuning job's name")
    command.set_defaults(run=lambda args, clients, prices: [], then=show_status)

    command = sub.add_parser("logs", parents=[common], help="a training job's log lines (CloudWatch Logs)")
    command.add_argument("name", type=arguments.JOB_NAME, help="the training job's name (a tuning trial's too)")
    command.add_argument("--follow", action="store_true", help="keep printing until the job ends")
    command.add_argument("--poll-seconds", type=arguments.positive, default=10)
    command.set_defaults(run=lambda args, clients, prices: [], then=show_logs)
