"""make bench-peers: the peers' user script serves the kit's model, and the report judges the goals right."""
import importlib.util
import io
import json
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from byoc import model_package
from byoc.contract import ModelSpec, Preprocessing
from byoc.serving.inference import Classifier
from byoc.serving.payloads import Payload

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))
import bench_peers  # noqa: E402  (a script, beside bench_serve)
import bench_serve  # noqa: E402


def user_script():
    spec = importlib.util.spec_from_file_location("peer_inference", ROOT / "containers" / "peers" / "inference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def jpeg(seed: int) -> bytes:
    pixels = torch.Generator().manual_seed(seed)
    image = Image.fromarray((torch.rand(256, 256, 3, generator=pixels) * 255).to(torch.uint8).numpy())
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def test_the_user_script_answers_as_the_kit_does_with_the_same_weights(tmp_path):
    """The same weights, exported as bench_peers does, on 256 px JPEGs as the benchmark sends: the same top five.

    (On other sizes the two resizes differ: torchvision resizes, then crops; the kit resizes the crop box.)
    """
    torch.manual_seed(0)
    spec = ModelSpec("resnet50", [f"class_{i:03d}" for i in range(133)], Preprocessing(256, 224))
    model_package.save(model_package.build(spec), spec, tmp_path / "kit")
    (tmp_path / "peer").mkdir()
    torch.save(load_file(tmp_path / "kit" / "model.safetensors"), tmp_path / "peer" / "model.pth")
    script = user_script()
    peer_model = script.model_fn(str(tmp_path / "peer"))
    kit = Classifier(*model_package.load(tmp_path / "kit"), torch.device("cpu"))
    for seed in range(3):
        body = jpeg(seed)
        peer = json.loads(script.output_fn(script.predict_fn(script.input_fn(body, "image/jpeg"), peer_model),
                                           "application/json"))["predictions"]
        ours = kit.predict(Payload(images=[("Image 0", Image.open(io.BytesIO(body)))]), 5)["predictions"]
        assert [p["class"] for p in peer] == [int(p["label"].split("_")[1]) for p in ours]
        assert [p["probability"] for p in peer] == pytest.approx([p["probability"] for p in ours], abs=2e-3)


def test_the_user_script_refuses_what_it_cannot_read():
    with pytest.raises(ValueError, match="application/x-npy"):
        user_script().input_fn(b"\x93NUMPY", "application/x-npy")


@pytest.mark.parametrize("fast_path", ["bf16", "int8"])
def test_the_fast_path_is_the_one_this_cpu_gets(fast_path):
    names = [stack.name for stack in bench_peers.stacks(4, fast_path=None)]
    assert bench_peers.FAST not in names and bench_peers.FP32 in names
    fast = next(s for s in bench_peers.stacks(4, fast_path) if s.name == bench_peers.FAST)
    assert fast.environment == {"BYOC_PRECISION": fast_path}
    tuned = [stack for stack in bench_peers.stacks(4, fast_path) if stack.tuned]
    assert len(tuned) == 2 and all(stack.environment["OMP_NUM_THREADS"] == "4" for stack in tuned)


@pytest.mark.parametrize("fast_path", ["int8", None])
def test_only_the_kit_run_the_goals_judge_is_timed_in_pairs(fast_path):
    """The pairs take minutes (bench_serve.PAIRS of them): they go to the run ours() judges, no other."""
    chosen = bench_peers.stacks(2, fast_path)
    paired = [stack.name for stack in chosen if stack.paired]
    kit_rows = [row(stack.name, 1, 30.0, 24.0, kit=True) for stack in chosen if stack.kit]
    assert paired == [bench_peers.FAST if fast_path else bench_peers.FP32]
    assert paired == [bench_peers.ours(kit_rows, 1)["stack"]]


def test_top_class_reads_both_answer_formats():
    assert bench_peers.top_class({"predictions": [{"label": "class_071", "probability": 0.5}]}) == 71
    assert bench_peers.top_class({"predictions": [{"class": 71, "probability": 0.5}]}) == 71


def row(stack, round_number, c8, c1, kit=False, tuned=False, **more):
    return {"stack": stack, "round": round_number, "kit": kit, "tuned": tuned, "c8_images_per_sec": c8,
            "c1_latency_ms_p50": c1, "c1_latency_ms_p99": c1 + 10, "server": "1 worker(s) x 2 thread(s)",
            "start_to_first_invocation_s": 4.0, **more}


def rounds(fast_c8_round_2: float) -> list[dict]:
    bare = {"precision": "BYOC_PRECISION=bf16", "batch": 6, "torch_threads": 2, "raw_latency_ms_p50": 38.0,
            "raw_latency_ms_p99": 45.0, "raw_images_per_sec": 32.0}
    found = []
    for number, fast_c8 in ((1, 30.0), (2, fast_c8_round_2)):
        paired = {"paired_requests": 600, "paired_c1_ms_p50": 41.0, "paired_c1_ms_p99": 52.0,
                  "paired_bare_ms_p50": 38.0, "paired_bare_ms_p99": 45.0,
                  "paired_c1_p99_minus_bare_p99_ms": 7.0 if number == 2 else 4.0,
                  "paired_p99_difference_chance_range_ms": [1.5, 9.0]}
        found += [row(bench_peers.FP32, number, 15.0, 80.0, kit=True, c1_p99_minus_raw_p99_ms=3.0, **bare),
                  row(bench_peers.FAST, number, fast_c8, 40.0, kit=True, c1_p99_minus_raw_p99_ms=4.0, **bare, **paired),
                  row("peer, defaults", number, 14.0, 120.0), row("peer, tuned", number, 16.0, 60.0, tuned=True)]
    return found


def test_goals_judge_the_fast_path_round_by_round():
    met = {goal["goal"]: goal["met"] for goal in bench_peers.goals(rounds(30.0))}
    assert met == {"c8 images/s >= 2.0x peer, defaults": True, "c8 images/s >= 1.5x peer, tuned": True,
                   "c1 p50 at least 20 % below the best tuned peer": True,
                   "c1 p99 - bare-model p99 <= 5 ms, the bare model timed after the server's run": True,
                   "c1 p99 - bare-model p99 <= 5 ms, interleaved in the same minute": False,
                   "start to first answer <= 5 s": True}
    # One slow round is enough to miss a goal: 26 images/s is 1.86x the default peer's 14.
    missed = {goal["goal"]: goal for goal in bench_peers.goals(rounds(26.0))}
    assert not missed["c8 images/s >= 2.0x peer, defaults"]["met"]
    assert missed["c8 images/s >= 2.0x peer, defaults"]["measured"] == {1: "2.143x", 2: "1.857x"}
    assert missed["c8 images/s >= 1.5x peer, tuned"]["met"]
    # The interleaved tail is judged on the fast path's own figures: 4.0 ms in round 1, 7.0 in round 2.
    assert missed[bench_peers.PAIRED_GOAL]["measured"] == {1: "4.0 ms (by chance alone: 1.5 to 9.0)",
                                                          2: "7.0 ms (by chance alone: 1.5 to 9.0)"}


def test_the_tail_goal_is_also_judged_on_every_rounds_pairs_together():
    """Round 1's twelve slow requests are its p99 (50 ms, 30 over the bare model); among both rounds'
    1,200 pairs they are not, so the pooled difference is the typical 3 ms."""
    slow_round = {"paired_c1_ms": [23.0] * 588 + [50.0] * 12, "paired_bare_ms": [20.0] * 600}
    calm_round = {"paired_c1_ms": [23.0] * 600, "paired_bare_ms": [20.0] * 600}
    kits = [row(bench_peers.FAST, number, 30.0, 24.0, kit=True, **series)
            for number, series in ((1, slow_round), (2, calm_round))]
    assert bench_serve.p99_difference(slow_round["paired_c1_ms"], slow_round["paired_bare_ms"]) == 30.0
    (goal, pairs, measured, met), = bench_peers.paired_together(kits)
    assert (goal, pairs, met) == (f"{bench_peers.PAIRED_GOAL}, every round's pairs together", "1200 pairs", True)
    assert measured.startswith("3.0 ms (by chance alone: ")
    assert bench_peers.paired_together(kits[:1]) == []  # one round: nothing to pool


def test_the_chance_range_is_wide_for_a_few_slow_pairs_and_shut_for_none():
    steady = bench_serve.chance_range([23.0] * 600, [20.0] * 600)
    assert steady == (3.0, 3.0)
    low, high = bench_serve.chance_range([23.0] * 594 + [60.0] * 6, [20.0] * 600)
    assert low == 3.0 and high == 40.0  # resampling draws anywhere from none to a dozen of the six slow ones


def test_the_report_names_the_runs_that_were_timed_in_pairs():
    assert bench_peers.paired_runs(rounds(30.0)) == (
        "then lone requests, each followed by a call of the bare model in the same container: "
        f"600 for {bench_peers.FAST}.")
    unpaired = [{k: v for k, v in found.items() if not k.startswith("paired")} for found in rounds(30.0)]
    assert bench_peers.paired_runs(unpaired) == "no lone requests interleaved with the bare model."


def test_the_table_gives_each_run_the_fast_paths_ratio_in_its_own_round():
    lines = bench_peers.table(rounds(26.0))
    assert (f"| {bench_peers.FAST}: lone requests / bare model interleaved, 600 each | 2 | | | "
            "41.0 / 52.0; bare 38.0 / 45.0 | | |") in lines
    assert any(line.startswith("| peer, defaults | 1 |") and line.endswith("| 2.14x |") for line in lines)
    assert any(line.startswith("| peer, defaults | 2 |") and line.endswith("| 1.86x |") for line in lines)
