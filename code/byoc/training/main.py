"""The training job: SageMaker's contract in, a model package and metrics out.

sagemaker-training's `train` imports this module (SAGEMAKER_TRAINING_MODULE)
and calls main(); it writes /opt/ml/output/success, or /opt/ml/output/failure
with the message of a TrainingError, and sets the exit code. On SIGTERM the
job checkpoints to /opt/ml/checkpoints, writes the model and metrics so far and
exits 143: a spot job's next start resumes, a stopped job's model is uploaded.

With several hosts or GPUs (resourceconfig.json, nvidia-smi), main() launches one
training process per GPU (per host on CPUs) that run() as ranks of one DDP job; see
distributed.py. Rank 0 alone writes the model, checkpoints and metrics.
"""
import json
import logging
import os
import sys
import time
import traceback
from pathlib import Path

import torch
from sagemaker_training import environment

from byoc import cuda
from byoc.training import channels, checkpoints, distributed, hyperparameters, outputs, setup
from byoc.training.engine import StopSignal
from byoc.training.errors import Stopped, TrainingError, unexpected
from byoc.training.fit import fit
from byoc.training.hyperparameters import Hyperparameters
from byoc.training.progress import resume

logger = logging.getLogger("byoc.training")


def run(env: environment.Environment, stop: StopSignal, hp: Hyperparameters, group: distributed.Group) -> dict:
    """The job's steps: set up, resume, fit, evaluate, write."""
    job = setup.build_job(env, hp, group)
    progress = resume(job)
    fit(job, progress, stop)
    results = outputs.results(job, progress, stop)
    if group.is_main:  # the model and metrics are written once, by rank 0
        outputs.write_outputs(job, results)
    if "stopped" in results:  # during the test pass: the model is there, the job did not finish
        raise Stopped(results["stopped"]["signal"])
    if group.is_main and job.trial:  # a finished trial: its checkpoints are of no further use
        checkpoints.discard(job.checkpoint_dir)
    return results


def clear_previous_outcome(output_dir: str) -> None:
    """A rerun over the same local /opt/ml tree must not inherit the last run's verdict."""
    for name in ("success", "failure"):
        Path(output_dir, name).unlink(missing_ok=True)


def written_hyperparameters() -> dict:
    """hyperparameters.json as SageMaker wrote it, every value a string (preflight has read it)."""
    path = Path(environment.hyperparameters_file_dir)
    return json.loads(path.read_text()) if path.is_file() else {}


def choose_device() -> str:
    """"cuda" or "cpu", as byoc.cuda decides for this host; never the CPU silently when the
    container has GPUs. Forward compatibility needs the libraries on LD_LIBRARY_PATH from the
    process's start, so the job then starts itself again with them."""
    choice = cuda.prepare("training")
    logger.info("device: %s", choice.reason)
    if cuda.needs_restart(choice):
        logger.info("starting again with %s first on LD_LIBRARY_PATH", choice.library_path)
        logging.shutdown()
        os.execve(sys.executable, [sys.executable, *sys.argv], cuda.environment(choice, os.environ))
    cuda.check_torch(choice, "training")
    return choice.device


def configure_logging(prefix: str = "") -> None:
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s %(levelname)s {prefix}%(name)s: %(message)s",
                        force=True)


def main() -> None:
    configure_logging()
    start = time.time()
    stop = StopSignal()
    try:
        env = environment.Environment()
        clear_previous_outcome(env.output_dir)
        # once, so bad values fail every host before any waits
        hp = hyperparameters.parse(env.hyperparameters, written_hyperparameters())
        found = channels.find_channels(env.channel_input_dirs, env.input_data_config)  # as do missing, Pipe ones
        channels.log_unread(env.channel_input_dirs, found)
        device = choose_device()
        cluster = distributed.Cluster.from_environment(env, gpus=env.num_gpus if device == "cuda" else 0)
        if cluster.world_size == 1:
            run(env, stop, hp, distributed.SingleProcess(torch.device(device)))
        else:
            distributed.launch(cluster, hp, device, distributed_worker)
    except Stopped as stopped:
        # Neither success nor failure: the job is to be resumed. Exit here, because
        # sagemaker-training would otherwise end the process with status 0.
        logger.warning("training %s; the next start resumes from it", stopped)
        logging.shutdown()
        os._exit(128 + stopped.signum)
    except TrainingError:
        raise
    except cuda.CudaUnusable as error:
        raise TrainingError(str(error)) from None
    except Exception as error:  # the log keeps the traceback; the failure file gets one paragraph
        logger.error("training failed:\n%s", traceback.format_exc())
        raise unexpected(error) from error
    logger.info("training finished in %.1f s", time.time() - start)


def distributed_worker(hp: Hyperparameters, device_type: str) -> None:
    """One rank of a multi-process job (started by distributed.launch in a fresh process)."""
    configure_logging(f"[rank {os.environ['RANK']}] ")
    stop = StopSignal()
    group = None
    try:
        env = environment.Environment()
        group = distributed.ProcessGroup(hp.distributed_timeout, device_type)
        run(env, distributed.SharedStop(stop, group), hp, group)
        group.close()
    except Stopped as stopped:
        logger.warning("training %s", stopped)
        raise SystemExit(128 + stopped.signum) from None
    except TrainingError as error:
        distributed.record_failure(str(error))
        raise SystemExit(1) from None
    except Exception as error:
        logger.error("training failed:\n%s", traceback.format_exc())
        reason = distributed.peer_failure(error, hp.distributed_timeout) if group else None
        distributed.record_failure(reason or str(unexpected(error)))
        raise SystemExit(1) from None
