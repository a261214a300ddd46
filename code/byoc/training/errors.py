"""Errors that end a training job with a one-paragraph reason.

sagemaker-training writes str(ClientError) to /opt/ml/output/failure (which
SageMaker shows as the job's FailureReason) and exits 1. Any other exception
would put a traceback there, so main() turns those into TrainingError too.
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
