"""Everything a training job builds before its first step, built once.

build_job() reads the channels, makes the model package's spec, the model, the loaders
and the training step; make_step() is also what the pipeline benchmark and the tests use,
so they time and test the job's own step.
"""
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from sagemaker_training import environment
from torch import nn
from torchvision.transforms import v2

from byoc import contract, model_package
from byoc.contract import ModelSpec, Preprocessing
from byoc.training import channels as inputs
from byoc.training import checkpoints, data, distributed, preflight, pretrained, shards
from byoc.training.engine import BatchNormalizer, TrainStep, cosine_schedule
from byoc.training.errors import HyperparameterError, TrainingError
from byoc.training.hyperparameters import Hyperparameters
from byoc.training.watch import TENSORBOARD_DIR, Board

logger = logging.getLogger("byoc.training")


def available_cores() -> int:
    return len(os.sched_getaffinity(0))


def configure_torch(hp: Hyperparameters, group: distributed.Group) -> None:
    torch.manual_seed(hp.seed + group.rank)  # ranks draw different dropout masks
    # OMP_NUM_THREADS wins where set: the compose rehearsal runs several "hosts" on one machine's
    # cores, and spinning OpenMP threads that outnumber the cores slow every one of them down.
    torch.set_num_threads(preflight.omp_threads() or max(1, available_cores() // group.local_world_size))
    if hp.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False


def make_optimizer(hp: Hyperparameters, model: nn.Module) -> torch.optim.Optimizer:
    if hp.optimizer == "adamw":
        return torch.optim.AdamW(model.parameters(), lr=hp.lr, weight_decay=hp.weight_decay)
    return torch.optim.SGD(model.parameters(), lr=hp.lr, momentum=hp.momentum,
                           weight_decay=hp.weight_decay, nesterov=hp.momentum > 0)


def make_mix(hp: Hyperparameters, num_classes: int):
    """torchvision's batch MixUp / CutMix (one of them per batch when both are on), or None."""
    mixes = []
    if hp.mixup_alpha:
        mixes.append(v2.MixUp(alpha=hp.mixup_alpha, num_classes=num_classes))
    if hp.cutmix_alpha:
        mixes.append(v2.CutMix(alpha=hp.cutmix_alpha, num_classes=num_classes))
    if not mixes:
        return None
    return mixes[0] if len(mixes) == 1 else v2.RandomChoice(mixes)


def amp_dtype(hp: Hyperparameters, device: torch.device) -> torch.dtype | None:
    if not hp.amp or device.type != "cuda":
        return None  # CPUs train in fp32: bf16 autocast is slower than fp32 on most of them
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def make_step(hp: Hyperparameters, model: nn.Module, prep: Preprocessing, device: torch.device,
              steps_per_epoch: int, num_classes: int, trained: nn.Module | None = None) -> TrainStep:
    """The job's optimisation step around `model`: optimiser, warmup + cosine schedule, mixed
    precision, MixUp/CutMix, clipping, torch.compile. `trained` is the module the step runs
    (the DDP wrapper of `model` with several processes); the optimiser holds model's weights."""
    optimizer = make_optimizer(hp, model)
    dtype = amp_dtype(hp, device)
    trained = trained if trained is not None else model
    return TrainStep(
        model=torch.compile(trained) if hp.compile else trained,
        normalize=BatchNormalizer(prep.mean, prep.std, device, hp.channels_last),
        optimizer=optimizer,
        scheduler=cosine_schedule(optimizer, hp.epochs * steps_per_epoch,
                                  warmup_steps=round(hp.warmup_epochs * steps_per_epoch)),
        device=device, loss_fn=nn.CrossEntropyLoss(label_smoothing=hp.label_smoothing),
        mix=make_mix(hp, num_classes), clip_grad_norm=hp.clip_grad_norm, amp_dtype=dtype,
        scaler=torch.amp.GradScaler("cuda") if dtype == torch.float16 else None,
    )


@dataclass
class Job:
    """A training job, ready for its first step."""

    hp: Hyperparameters
    group: distributed.Group
    spec: ModelSpec
    model: nn.Module  # the weights (unwrapped: what checkpoints and the model package hold)
    step: TrainStep
    train_loader: torch.utils.data.DataLoader
    sampler: object  # the training loader's EpochSampler
    eval_loaders: dict  # "valid" and "test", where those channels exist: this rank's share of each
    checkpoint_dir: Path  # CheckpointConfig's LocalPath (/opt/ml/checkpoints), or a trial's folder there
    model_dir: Path
    output_data_dir: Path
    data: dict  # what each host had and what an epoch trains on (shards.data_report)
    board: Board  # TensorBoard scalars (rank 0, when wanted)
    trial: bool = False  # one trial of a tuning job: its checkpoints go once it has succeeded

    @property
    def steps_per_epoch(self) -> int:
        return self.data["steps_per_epoch"]

    @property
    def device(self) -> torch.device:
        return self.group.device


def check_job(hp: Hyperparameters, channels: dict, group: distributed.Group) -> None:
    """What the hyperparameters cannot say alone: they must fit the channels and the cluster."""
    if hp.early_stopping_patience and "valid" not in channels:
        raise HyperparameterError(
            "Hyperparameter early_stopping_patience needs a 'valid' channel to measure improvement on."
        )
    if hp.batch_size % group.world_size:
        raise HyperparameterError(
            f"Hyperparameter batch_size={hp.batch_size} is the global batch and must divide evenly over the "
            f"job's {group.world_size} training processes (hosts x GPUs per host)."
        )


def build_model(hp: Hyperparameters, spec: ModelSpec, env: environment.Environment, device) -> nn.Module:
    model = model_package.build(spec)
    if hp.pretrained_weights:
        path = pretrained.find_weights(hp.pretrained_weights, env.channel_input_dirs, env.model_dir)
        pretrained.load_into(model, hp.model, path)
    return model.to(device, memory_format=torch.channels_last if hp.channels_last else torch.preserve_format)


def build_loaders(hp: Hyperparameters, group: distributed.Group, channels: dict, splits: dict, prep: Preprocessing,
                  host: str) -> tuple:
    """The training loader and sampler, this rank's evaluation loaders, and the data report: every
    process runs the same number of steps an epoch, replicated or sharded channels alike."""
    workers = hp.workers or max(1, available_cores() // group.local_world_size)
    share, rank_batch = shards.share_of(channels["train"], group), hp.batch_size // group.world_size
    steps = shards.agree_on_steps(len(splits["train"]), share, rank_batch, group, host)
    report = shards.data_report(splits, channels, group, host, steps, hp.batch_size)
    train_loader, sampler = data.train_loader(splits["train"], prep, hp, workers, share.rank, share.size,
                                              batch_size=rank_batch, steps=steps)
    eval_loaders = {
        name: data.eval_loader(shards.evaluation_share(splits[name], shards.share_of(channels[name], group)),
                               hp.batch_size, workers)
        for name in ("valid", "test") if name in splits}
    return train_loader, sampler, eval_loaders, report


def build_job(env: environment.Environment, hp: Hyperparameters, group: distributed.Group) -> Job:
    channels = inputs.find_channels(env.channel_input_dirs, env.input_data_config)
    check_job(hp, channels, group)
    logger.info("hyperparameters: %s", hp)
    logger.info("channels: %s", {name: f"{c.path} ({c.mode}, {c.distribution})" for name, c in channels.items()})
    configure_torch(hp, group)

    prep = Preprocessing(resize_size=hp.resize_size or hp.image_size, crop_size=hp.image_size)
    splits = data.load_splits({name: c.path for name, c in channels.items()}, prep, cache_bytes=hp.cache_mb * 2**20,
                              max_bad_fraction=hp.max_bad_image_fraction, threads=available_cores(),
                              classes=shards.shared_classes(channels["train"], group))
    classes = splits["train"].classes
    logger.info("classes: %d; images: %s", len(classes), {k: len(v) for k, v in splits.items()})
    labels = [contract.display_name(c) for c in classes]
    if problem := contract.class_names_problem(labels):  # e.g. 001.Dog and 002.Dog: both answer "Dog"
        clashing = [c for c, label in zip(classes, labels) if labels.count(label) > 1 or not label]
        raise TrainingError(f"The class folders of the train channel give labels the endpoint cannot answer with: "
                            f"{problem}" + (f" (folders {', '.join(clashing[:6])})" if clashing else "")
                            + ". Rename the folders so that each gives a label of its own.")
    spec = ModelSpec(hp.model, labels, prep)

    model = build_model(hp, spec, env, group.device)
    train_loader, sampler, eval_loaders, report = build_loaders(hp, group, channels, splits, prep, env.current_host)
    trained = group.wrap(model, find_unused_parameters=hp.freeze_backbone_epochs > 0)  # DDP with >1 process
    step = make_step(hp, model, prep, group.device, len(train_loader), len(classes), trained)
    logger.info("device %s, mixed precision %s, %d steps per epoch", group.device, step.amp_dtype, len(train_loader))
    config_dir = Path(environment.input_config_dir)
    root = preflight.local_path(config_dir, preflight.CHECKPOINT_CONFIG, Path(environment.base_dir) / "checkpoints")
    # env.hyperparameters lacks SageMaker's own keys (sagemaker-training drops them): read them all
    raw = environment.read_hyperparameters() if env.job_name else {}
    checkpoint_dir = checkpoints.job_directory(root, raw, env.job_name)
    board_dir = preflight.local_path(config_dir, preflight.TENSORBOARD_CONFIG, Path(env.output_dir) / TENSORBOARD_DIR)
    # a TensorBoardOutputConfig asks for scalars whether or not SageMaker has made its folder yet
    wants_board = hp.tensorboard or (config_dir / preflight.TENSORBOARD_CONFIG).is_file()
    return Job(hp, group, spec, model, step, train_loader, sampler, eval_loaders, checkpoint_dir=checkpoint_dir,
               model_dir=Path(env.model_dir), output_data_dir=Path(env.output_data_dir), data=report,
               board=Board.for_job(board_dir, wants_board, group.is_main), trial=checkpoint_dir != root)
