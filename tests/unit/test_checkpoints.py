from fractions import Fraction

import torch

from byoc.training import checkpoints


def state(epoch, samples):
    return {"epoch": epoch, "samples_done": samples, "weights": torch.full((3,), float(epoch))}


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
