"""Watching a job: the progress line's timing and figures, and TensorBoard scalars read back
with TensorBoard's own reader."""
import logging

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from byoc.training import watch
from byoc.training.engine import EpochMeter


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def run_batches(log, meter, clock, count, seconds_each, batch=32, loss=0.5):
    for _ in range(count):
        clock.now += seconds_each
        meter.loss_sum += loss * batch
        meter.seen += batch
        log(meter)


def test_a_line_every_n_seconds_with_step_rate_loss_and_eta(caplog):
    caplog.set_level(logging.INFO, logger="byoc.training")
    clock, meter = Clock(), EpochMeter()
    log = watch.ProgressLog(30, epoch=2, epochs=3, steps=100, step=0, seen=0, processes=2, board=watch.Board(),
                            clock=clock)
    run_batches(log, meter, clock, 25, seconds_each=2.0)  # 50 s: lines after 30 s (step 15) and 60 s
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("progress ")]
    assert lines == ["progress epoch 2/3 step 15/100 running_loss=0.500000 images_per_sec=32.0 eta=0:02:50"]
    run_batches(log, meter, clock, 5, seconds_each=2.0)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("progress ")]
    assert lines[-1] == "progress epoch 2/3 step 30/100 running_loss=0.500000 images_per_sec=32.0 eta=0:02:20"


def test_a_resumed_epoch_counts_from_where_it_stopped(caplog):
    caplog.set_level(logging.INFO, logger="byoc.training")
    clock, meter = Clock(), EpochMeter(loss_sum=128.0, seen=640)  # 20 steps of 32 done before the stop
    log = watch.ProgressLog(10, epoch=1, epochs=1, steps=50, step=20, seen=640, processes=1, board=watch.Board(),
                            clock=clock)
    run_batches(log, meter, clock, 10, seconds_each=1.0, loss=0.1)
    line = [r.getMessage() for r in caplog.records if r.getMessage().startswith("progress ")][-1]
    assert line.startswith("progress epoch 1/1 step 30/50 running_loss=0.166667 images_per_sec=32.0 eta=0:00:20")


def test_off_when_no_folder_and_not_asked(tmp_path):
    assert watch.Board.for_job(tmp_path / "tensorboard", requested=False, is_main=True).folder is None
    assert watch.Board.for_job(tmp_path / "tensorboard", requested=True, is_main=False).folder is None  # rank 0 only
    (tmp_path / "tensorboard").mkdir()  # TensorBoardOutputConfig's LocalPath exists: on
    assert watch.Board.for_job(tmp_path / "tensorboard", requested=False, is_main=True).folder == tmp_path / "tensorboard"


def scalars(folder) -> dict:
    events = EventAccumulator(str(folder))
    events.Reload()
    return {tag: [(e.step, round(e.value, 4)) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def test_scalars_are_written_and_a_resume_purges_what_came_after_its_checkpoint(tmp_path):
    first = watch.Board.for_job(tmp_path / "tensorboard", requested=True, is_main=True)
    first.open(0)
    for step in (10, 20, 30):
        first.scalars(step, watch.epoch_scalars({"epoch": step // 10, "train_loss": 1 / step, "lr": 0.1}))
    first.close()
    resumed = watch.Board.for_job(tmp_path / "tensorboard", requested=False, is_main=True)  # the folder exists now
    resumed.open(20)  # resumed from the checkpoint at step 20: the old 20 and 30 go
    resumed.scalars(20, {"epoch/train_loss": 0.04})
    resumed.close()
    found = scalars(tmp_path / "tensorboard")
    assert found["epoch/train_loss"] == [(10, 0.1), (20, 0.04)]
    assert found["epoch/lr"] == [(10, 0.1)]
