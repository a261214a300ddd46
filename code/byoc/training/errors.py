"""How a training job ends when it does not succeed.

sagemaker-training writes str(ClientError) to /opt/ml/output/failure (which
SageMaker shows as the job's FailureReason) and exits 1. Any other exception
would put a traceback there, so main() turns those into TrainingError too
(unexpected()). A stop signal is neither success nor failure: Stopped.
"""
from sagemaker_training.errors import ClientError


class TrainingError(ClientError):
    """A reason to stop training, worded for the person who started the job."""

    def __init__(self, message: str):
        super().__init__(" ".join(message.split()))  # one paragraph: FailureReason is a single line


class HyperparameterError(TrainingError):
    pass


class DataError(TrainingError):
    pass


class ConfigError(TrainingError):
    """A config file under /opt/ml/input/config, or a setting in the environment, that cannot be used."""


def unexpected(error: BaseException) -> TrainingError:
    """The one paragraph for an error we did not foresee (the log keeps the traceback)."""
    detail = " ".join(str(error).split())[:600]
    return TrainingError(f"Training failed with an unexpected {type(error).__name__}: {detail}. "
                         "The job's log has the full traceback.")


class Stopped(Exception):
    """A stop signal (spot interruption, StopTrainingJob, docker stop) ended the job early; it is
    to be resumed from its checkpoint."""

    def __init__(self, signum: int, checkpoint=None):
        super().__init__(f"stopped by signal {signum}" + (f"; checkpoint {checkpoint}" if checkpoint else ""))
        self.signum = signum
