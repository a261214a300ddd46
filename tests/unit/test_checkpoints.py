from fractions import Fraction

import torch

from byoc.training import checkpoints


def state(epoch, samples):
    return {**dict.fromkeys(checkpoints.REQUIRED, {}), "epoch": epoch, "samples_done": samples,
            "weights": torch.full((3,), float(epoch))}


def test_newest_checkpoint_is_loaded_and_two_are_kept(tmp_path):
    for epoch, samples in [(1, 0), (2, 0), (2, 512), (3, 0)]:
        checkpoints.save(tmp_path, state(epoch, samples))
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "checkpoint-e0002-s000000512.pt", "checkpoint-e0003-s000000000.pt"]
    loaded = checkpoints.load_latest(tmp_path)
    assert loaded["epoch"] == 3 and torch.equal(loaded["weights"], torch.full((3,), 3.0))


def test_damaged_newest_checkpoint_falls_back_to_the_previous_one(tmp_path):
    checkpoints.save(tmp_path, state(1, 0))
    newest = checkpoints.save(tmp_path, state(2, 0))
    newest.write_bytes(newest.read_bytes()[:100])  # as if cut off
    (tmp_path / ".checkpoint-e0009-s000000000.pt.partial").write_bytes(b"half")  # an unfinished write
    assert checkpoints.load_latest(tmp_path)["epoch"] == 1


def test_no_checkpoints_means_a_fresh_start(tmp_path):
    assert checkpoints.load_latest(tmp_path / "missing") is None
    assert checkpoints.load_latest(tmp_path) is None


def test_arbitrary_objects_are_not_unpickled(tmp_path):
    # Any class outside torch's weights-only allowlist stands in for a malicious payload.
    torch.save({"epoch": 5, "samples_done": 0, "payload": Fraction(1, 3)}, tmp_path / "checkpoint-e0005-s000000000.pt")
    checkpoints.save(tmp_path, state(1, 0))
    assert checkpoints.load_latest(tmp_path)["epoch"] == 1  # the one with an object is refused


def test_a_tuning_trial_keeps_its_checkpoints_in_a_folder_of_its_own(tmp_path):
    """All trials of a tuning job share one synced folder: each resumes only its own checkpoints."""
    trial = {"_tuning_objective_metric": "validation:accuracy", "lr": "0.01"}
    first = checkpoints.job_directory(tmp_path, trial, "hpo-1-001-aaaaaaaa")
    second = checkpoints.job_directory(tmp_path, trial, "hpo-1-002-bbbbbbbb")
    assert (first, second) == (tmp_path / "hpo-1-001-aaaaaaaa", tmp_path / "hpo-1-002-bbbbbbbb")
    checkpoints.save(first, state(2, 0))
    assert checkpoints.load_latest(second) is None
    assert checkpoints.load_latest(checkpoints.job_directory(tmp_path, trial, "hpo-1-001-aaaaaaaa"))["epoch"] == 2
    checkpoints.discard(first)
    assert not first.exists() and tmp_path.exists()


def test_a_plain_job_uses_the_checkpoint_folder_itself(tmp_path):
    """A new job given an earlier job's checkpoint location resumes it, as SageMaker documents."""
    assert checkpoints.job_directory(tmp_path, {"epochs": "3"}, "fashion-1") == tmp_path
    assert checkpoints.job_directory(tmp_path, {"_tuning_objective_metric": "x"}, None) == tmp_path


def test_files_by_a_checkpoints_name_that_hold_no_resume_state_are_skipped(tmp_path, caplog):
    """A user's state_dict, a list, a directory, zero bytes: each skipped with a warning naming it."""
    checkpoints.save(tmp_path, state(1, 0))
    torch.save({"0.weight": torch.zeros(2)}, tmp_path / "checkpoint-e0005-s000000000.pt")
    torch.save([1, 2], tmp_path / "checkpoint-e0004-s000000000.pt")
    (tmp_path / "checkpoint-e0003-s000000000.pt").mkdir()
    (tmp_path / "checkpoint-e0002-s000000000.pt").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("not a checkpoint")
    assert checkpoints.load_latest(tmp_path)["epoch"] == 1
    assert "checkpoint-e0005-s000000000.pt: not a checkpoint of this job's kind (it lacks architecture" in caplog.text
    assert "checkpoint-e0004-s000000000.pt: not a checkpoint of this job's kind (it lacks a dict" in caplog.text


def test_when_no_checkpoint_can_be_used_the_job_starts_over_saying_so(tmp_path, caplog):
    (tmp_path / "checkpoint-e0002-s000000000.pt").write_bytes(b"\0" * 64)
    assert checkpoints.load_latest(tmp_path) is None
    assert "no checkpoint in" in caplog.text and "starting from the beginning" in caplog.text
