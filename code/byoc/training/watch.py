"""What someone watching a running job sees between epoch lines: a progress line every
`progress_seconds` (rank 0 only) and TensorBoard scalars.

Both read figures the training loop has on the host already (the meter's sums, which the step's
loss.item() filled): no extra device synchronisation, one clock read per batch.

TensorBoard: SageMaker's TensorBoardOutputConfig syncs its LocalPath, /opt/ml/output/tensorboard
by default (input/config/tensorboardoutputconfig.json names another), to S3 while the job runs.
Scalars go there when the job has that config, the folder exists or the `tensorboard` hyperparameter
asks for them; every scalar's step is the job's training step, so a resumed job purges what the
stopped one wrote after its checkpoint.
"""
import datetime
import logging
import time
from pathlib import Path

from byoc.training import metrics

logger = logging.getLogger("byoc.training")
TENSORBOARD_DIR = "tensorboard"  # under /opt/ml/output: TensorBoardOutputConfig's default LocalPath


class Board:
    """TensorBoard scalars through torch.utils.tensorboard, or nothing (off, or not rank 0)."""

    def __init__(self, folder: Path | None = None):
        self.folder, self.writer = folder, None

    @classmethod
    def for_job(cls, folder: Path, requested: bool, is_main: bool) -> "Board":
        """folder: TensorBoardOutputConfig's LocalPath (/opt/ml/output/tensorboard by default)."""
        return cls(folder if is_main and (requested or folder.is_dir()) else None)

    def open(self, step: int) -> None:
        """Start writing; `step` > 0 (a resumed job): events from later steps are dropped."""
        if self.folder is None or self.writer is not None:
            return
        from torch.utils.tensorboard import SummaryWriter  # imports tensorboard: only when wanted

        self.folder.mkdir(parents=True, exist_ok=True)
        self.writer = SummaryWriter(str(self.folder), purge_step=step or None, flush_secs=30)
        logger.info("TensorBoard scalars to %s", self.folder)

    def scalars(self, step: int, values: dict) -> None:
        if self.writer is not None:
            for tag, value in values.items():
                self.writer.add_scalar(tag, value, step)

    def flush(self) -> None:
        if self.writer is not None:
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def epoch_scalars(record: dict) -> dict:
    return {f"epoch/{name}": record[name] for name in metrics.EPOCH_FIELDS if name in record}


class ProgressLog:
    """Called after every training batch of one epoch; logs metrics.progress_line every `every`
    seconds, and puts the same figures on the board. `step` batches and `seen` images of this
    epoch were done before (a resumed epoch); `processes` train at this one's pace."""

    def __init__(self, every: float, epoch: int, epochs: int, steps: int, step: int, seen: int, processes: int,
                 board: Board, clock=time.monotonic):
        self.every, self.epoch, self.epochs, self.steps = every, epoch, epochs, steps
        self.step, self.first_step, self.first_seen = step, step, seen
        self.processes, self.board, self.clock = processes, board, clock
        self.started = clock()
        self.next = self.started + every

    def __call__(self, meter) -> None:
        self.step += 1
        now = self.clock()
        if now < self.next:
            return
        self.next = now + self.every
        elapsed = max(now - self.started, 1e-9)
        per_step = elapsed / max(self.step - self.first_step, 1)
        figures = {"epoch": self.epoch, "epochs": self.epochs, "step": self.step, "steps": self.steps,
                   "running_loss": meter.loss,
                   "images_per_sec": (meter.seen - self.first_seen) * self.processes / elapsed,
                   "eta": datetime.timedelta(seconds=round(max(self.steps - self.step, 0) * per_step))}
        logger.info(metrics.progress_line(figures))
        self.board.scalars((self.epoch - 1) * self.steps + self.step,
                           {"progress/running_loss": figures["running_loss"],
                            "progress/images_per_sec": figures["images_per_sec"]})
