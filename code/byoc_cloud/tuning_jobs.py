"""CreateHyperParameterTuningJob requests over the training image, and the best trial of one.

Each trial is the training job `train` would start (training_jobs builds it: channels, static
hyperparameters, spot, stopping condition), with the tuned values added by SageMaker. The
objective and the metric definitions are byoc.training.metrics' own, so the values SageMaker
tunes on are the ones the image logs.

Checkpoints: a tuning job has one CheckpointConfig for all its trials, and SageMaker syncs
every trial with that same S3 prefix, so each trial would start with the others' checkpoints.
The prefix given here gets the tuning job's name (a new tuning job never sees an older one's),
and the training image keeps each trial in a folder of its own training job name (a trial
interrupted on spot resumes its own state, never a sibling's; byoc.training.checkpoints).
"""
import json
import sys
import time

from byoc.training import hyperparameters as table
from byoc.training.metrics import METRIC_DEFINITIONS, METRIC_NAMES
from byoc_cloud import arguments, container, follow, training_jobs, tuning_ranges
from byoc_cloud.calls import LaunchError, check_calls
from byoc_cloud.preflight import add_skip_check, preflight

STRATEGIES = {"bayesian": "Bayesian", "random": "Random", "hyperband": "Hyperband", "grid": "Grid"}
WARM_START = {"identical": "IdenticalDataAndAlgorithm", "transfer": "TransferLearning"}
OBJECTIVES = [d["Name"] for d in METRIC_DEFINITIONS if d["Name"] != "epoch"]
DEFAULT_OBJECTIVE = METRIC_NAMES["valid_acc"]  # validation:accuracy
DEFAULT_MAX_JOBS = 10
MAX_NAME = 32  # a tuning job's name; its trials are NAME-NNN-xxxxxxxx


def tuning_name(args) -> str:
    return args.job_name or f"byoc-hpo-{time.strftime('%y%m%d-%H%M%S', time.gmtime())}"


def objective(args) -> dict:
    if args.objective not in OBJECTIVES:
        raise LaunchError(f"--objective {args.objective!r}: the image logs {', '.join(OBJECTIVES)}")
    channel = {"validation": ("valid", "validation"), "test": ("test",)}.get(args.objective.split(":")[0])
    given = {pair.partition("=")[0] for pair in args.channel}
    if channel and not given & set(channel):
        raise LaunchError(f"--objective {args.objective} is measured on a {channel[0]!r} channel; add "
                          f"--channel {channel[0]}=s3://...")
    natural = "Minimize" if args.objective.endswith("loss") else "Maximize"
    if args.objective_type not in (None, natural):
        raise LaunchError(f"--objective-type {args.objective_type} for {args.objective}: it would pick the "
                          f"worst trial; {natural} it (leave the flag out)")
    return {"Type": natural, "MetricName": args.objective}


def check_a_trial(static: dict[str, str], ranges: list) -> None:
    """The image's own parse of one trial (the ranges' low ends and first values): a fixed value
    that no trial could run with is refused here, not in every trial."""
    first = {r.name: r.values[0] if isinstance(r, tuning_ranges.CategoricalRange) else r.low for r in ranges}
    training_jobs.check_hyperparameters(static, first, what="every trial of these settings")


def job_limits(args, ranges: list, strategy: str) -> int:
    if strategy == "Grid":
        size = tuning_ranges.grid_size(ranges)
        if args.max_jobs not in (None, size):
            raise LaunchError(f"grid search runs every combination, {size} here; --max-jobs must be {size} or left out")
        return size
    jobs = args.max_jobs or DEFAULT_MAX_JOBS
    if not 1 <= args.max_parallel_jobs <= jobs:
        raise LaunchError(f"--max-parallel-jobs must be from 1 to --max-jobs ({jobs})")
    return jobs


def strategy_config(args, static: dict, ranges: list, strategy: str) -> dict:
    """Hyperband: the epochs are its resource (it stops trials early itself), so they are fixed, and
    SageMaker's own early stopping must be off."""
    if strategy != "Hyperband":
        if args.hyperband_min_epochs is not None:
            raise LaunchError(f"--hyperband-min-epochs is for --strategy hyperband; this one is {args.strategy}")
        return {}
    if args.early_stopping:
        raise LaunchError("--early-stopping is for Bayesian, Random and Grid: Hyperband stops trials itself")
    if any(r.name == "epochs" for r in ranges):
        raise LaunchError("Hyperband tunes how many epochs each trial gets: give --hp epochs=N (its maximum), "
                          "not an epochs range")
    epochs = json.loads(static["epochs"]) if "epochs" in static else table.FIELDS["epochs"].default
    least = 1 if args.hyperband_min_epochs is None else args.hyperband_min_epochs
    if not 1 <= least <= epochs:
        raise LaunchError(f"--hyperband-min-epochs must be from 1 to the epochs ({epochs})")
    return {"StrategyConfig": {"HyperbandStrategyConfig": {"MinResource": least, "MaxResource": epochs}}}


def trial_definition(args, name: str) -> dict:
    """One trial: `train`'s request, less what a tuning job names itself."""
    job = training_jobs.training_request(args)
    spec = job["AlgorithmSpecification"]
    definition = {
        "AlgorithmSpecification": {key: spec[key] for key in ("TrainingImage", "TrainingInputMode", "MetricDefinitions")},
        "StaticHyperParameters": job["HyperParameters"],
        **{key: job[key] for key in ("RoleArn", "InputDataConfig", "OutputDataConfig", "ResourceConfig",
                                     "StoppingCondition", "EnableManagedSpotTraining", "EnableNetworkIsolation",
                                     "Environment") if key in job},
    }
    if "CheckpointConfig" in job:  # one prefix per tuning job; the image adds one folder per trial
        definition["CheckpointConfig"] = {"S3Uri": f"{args.checkpoint_s3_uri.rstrip('/')}/{name}/",
                                          "LocalPath": job["CheckpointConfig"]["LocalPath"]}
    return definition


def tuning_request(args, ranges: list) -> dict:
    name = tuning_name(args)
    strategy = STRATEGIES[args.strategy.lower()]
    definition = trial_definition(args, name)
    static = definition["StaticHyperParameters"]
    check_a_trial(static, ranges)
    limits = {"MaxNumberOfTrainingJobs": job_limits(args, ranges, strategy),
              "MaxParallelTrainingJobs": args.max_parallel_jobs}
    if args.max_tuning_hours:
        limits["MaxRuntimeInSeconds"] = int(args.max_tuning_hours * 3600)
    config = {"Strategy": strategy, "HyperParameterTuningJobObjective": objective(args), "ResourceLimits": limits,
              "ParameterRanges": tuning_ranges.parameter_ranges(ranges, static),
              "TrainingJobEarlyStoppingType": "Auto" if args.early_stopping else "Off",
              **strategy_config(args, static, ranges, strategy)}
    if args.random_seed is not None:
        config["RandomSeed"] = args.random_seed
    request = {"HyperParameterTuningJobName": name, "HyperParameterTuningJobConfig": config,
               "TrainingJobDefinition": definition, "Tags": [{"Key": "project", "Value": "byoc"}]}
    if args.warm_start_type is not None and not args.warm_start_from:
        raise LaunchError("--warm-start-type without --warm-start-from: name the tuning job(s) to start from")
    if args.warm_start_from:
        request["WarmStartConfig"] = {
            "ParentHyperParameterTuningJobs": [{"HyperParameterTuningJobName": p} for p in args.warm_start_from],
            "WarmStartType": WARM_START[args.warm_start_type or "identical"]}
    return request


REQUIRED = ("image", "role", "channel", "output")


def launch(args, clients, prices) -> list:
    if args.best:
        return []  # a read: `then` prints the best trial
    if args.name_only:
        raise LaunchError("--name-only goes with --best NAME (it prints the best trial's name)")
    if missing := [f"--{name}" for name in REQUIRED if not getattr(args, name)]:
        raise LaunchError(f"tune needs {', '.join(missing)} (or --best NAME to read a finished tuning job)")
    if args.job_name and len(args.job_name) > MAX_NAME:
        raise LaunchError(f"--job-name {args.job_name!r} is {len(args.job_name)} characters; a tuning job's name "
                          f"has at most {MAX_NAME}")
    ranges = [tuning_ranges.from_flag(flag) for flag in args.range]
    for path in args.ranges_file:
        ranges += tuning_ranges.from_file(path)
    request = tuning_request(args, ranges)
    args.job_name = request["HyperParameterTuningJobName"]  # the name --wait follows
    calls = [("sagemaker", "create_hyper_parameter_tuning_job", request)]
    check_calls(calls, clients)  # refused as the API model says before the check reads ECR
    preflight(args, clients, "training", args.instance_type)
    limits = request["HyperParameterTuningJobConfig"]["ResourceLimits"]
    print(prices.tuning_estimate(args.instance_type, args.instance_count,
                                 request["TrainingJobDefinition"]["StoppingCondition"]["MaxRuntimeInSeconds"],
                                 args.spot, limits["MaxNumberOfTrainingJobs"], limits["MaxParallelTrainingJobs"]))
    return calls


def _decoded(hyperparameters: dict) -> dict:
    out = {}
    for name, text in sorted(hyperparameters.items()):
        try:
            out[name] = json.loads(text)
        except (TypeError, json.JSONDecodeError):
            out[name] = text
    return out


def show_best(args, clients) -> int:
    """tune --best NAME: the trial with the best objective value, its hyperparameters and model."""
    sagemaker = clients["sagemaker"]
    tuning = sagemaker.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName=args.best)
    best = tuning.get("OverallBestTrainingJob") or tuning.get("BestTrainingJob")
    if not best:
        print(f"error: tuning job {args.best} ({tuning['HyperParameterTuningJobStatus']}) has no trial with an "
              "objective value yet", file=sys.stderr)
        return 1
    name = best["TrainingJobName"]
    if args.name_only:  # for `byoc-cloud deploy --training-job "$(byoc-cloud tune --best NAME --name-only)"`
        print(name)
        return 0
    job = sagemaker.describe_training_job(TrainingJobName=name)
    metric = best.get("FinalHyperParameterTuningJobObjectiveMetric", {})
    print(f"best trial of {args.best} ({tuning['HyperParameterTuningJobStatus']}): {name} ({job['TrainingJobStatus']})")
    print(f"  objective: {metric.get('MetricName', '?')} = {metric.get('Value', float('nan')):g}")
    print(f"  tuned: {json.dumps(_decoded(best.get('TunedHyperParameters', {})))}")
    print(f"  hyperparameters: {json.dumps(_decoded(job.get('HyperParameters', {})))}")
    print(f"  model: {job['ModelArtifacts']['S3ModelArtifacts']}")
    print(f"deploy it: byoc-cloud deploy --training-job {name} --image \"$(python -m ecr uri byoc-serving)\" "
          "--role \"$ROLE_ARN\" --endpoint NAME")
    return 0


def then(args, clients) -> int:
    if args.best:
        return show_best(args, clients)
    return follow.follow_tuning_job(args, clients) if args.wait else 0


def add_commands(sub, common) -> None:
    tune = sub.add_parser("tune", parents=[common], help="start a hyperparameter tuning job, or show its best trial")
    training_jobs.add_job_arguments(tune, required=False)
    container.add_arguments(tune, "training")
    tune.add_argument("--range", action="append", default=[], metavar="NAME=LOW:HIGH[:SCALING] | NAME=A,B,...",
                      help="a tuned hyperparameter (repeatable); scaling: auto, linear, log, reverse-log")
    tune.add_argument("--ranges-file", action="append", default=[], metavar="FILE",
                      help='JSON or YAML: {"lr": {"min": 0.001, "max": 0.1, "scaling": "log"}, "hflip": [true, false]}')
    tune.add_argument("--objective", default=DEFAULT_OBJECTIVE, help=f"one of {', '.join(OBJECTIVES)}")
    tune.add_argument("--objective-type", choices=("Maximize", "Minimize"), help="default: Minimize for losses")
    tune.add_argument("--strategy", default="bayesian", type=str.lower, choices=sorted(STRATEGIES))
    tune.add_argument("--max-jobs", type=arguments.count, help=f"trials in all (default {DEFAULT_MAX_JOBS}; grid: every combination)")
    tune.add_argument("--max-parallel-jobs", type=arguments.count, default=2)
    tune.add_argument("--max-tuning-hours", type=arguments.positive, help="a limit on the whole tuning job")
    tune.add_argument("--early-stopping", action="store_true", help="SageMaker stops trials unlikely to beat the best")
    tune.add_argument("--hyperband-min-epochs", type=arguments.count, help="hyperband: the fewest epochs a trial gets (default 1)")
    tune.add_argument("--random-seed", type=arguments.count_or_zero)
    tune.add_argument("--warm-start-from", action="append", default=[], type=arguments.TUNING_JOB_NAME, metavar="TUNING_JOB",
                      help="a previous tuning job to start from (repeatable, at most 5)")
    tune.add_argument("--warm-start-type", choices=sorted(WARM_START),
                      help="identical (the default): same data and image; transfer: new data or image")
    tune.add_argument("--job-name", type=arguments.TUNING_JOB_NAME, help=f"the tuning job's name (at most {MAX_NAME} characters)")
    tune.add_argument("--wait", action="store_true", help="follow the tuning job until it ends")
    tune.add_argument("--poll-seconds", type=arguments.positive, default=30)
    tune.add_argument("--best", type=arguments.TUNING_JOB_NAME, metavar="TUNING_JOB", help="show this tuning job's best trial instead of starting one")
    tune.add_argument("--name-only", action="store_true", help="--best: print the best trial's name only")
    add_skip_check(tune)
    tune.set_defaults(run=launch, then=then)
