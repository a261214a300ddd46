"""The CPU's graph mode (byoc.cpu_graph): the traced, frozen, oneDNN-fused model answers as the eager
one does, in fp32 and bf16, for every architecture the kit builds; large batches reach it in chunks,
so it keeps a bounded number of shapes; a model that cannot be traced runs eagerly."""
import logging

import pytest
import torch
from torch import nn

from byoc import cpu_graph, precision
from byoc.contract import ModelSpec, Preprocessing
from byoc.models import ARCHITECTURES, build_model
from byoc.serving import benchmark, memory
from byoc.serving.inference import Classifier

FUSED = "prim::oneDNNFusionGroup"  # a node of TorchScript's graph that oneDNN Graph runs as one kernel
CROPS = {"small_cnn": 28, "resnet_small": 32, "wrn28_10": 32, "resnet50": 64}


def _model(architecture: str) -> nn.Module:
    torch.manual_seed(0)
    model = build_model(architecture, 10).eval()
    for module in model.modules():  # batch-norm statistics other than the identity, so folding them shows
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.normal_(0, 0.1)
            module.running_var.uniform_(0.5, 2.0)
    return model


@pytest.mark.parametrize("architecture", ARCHITECTURES)
@pytest.mark.parametrize("dtype, tolerance", [(torch.float32, 1e-3), (torch.bfloat16, 0.15)])
def test_graph_mode_answers_as_eager_does(architecture, dtype, tolerance):
    model = _model(architecture)
    batch = torch.randn(3, 3, CROPS[architecture], CROPS[architecture])
    eager = precision.run(precision.prepare(model, dtype), batch)
    graph = precision.prepare(model, dtype, graph=True)
    for _ in range(3):  # traced, then profiled, then fused: each call must answer the same
        fused = precision.run(graph, batch)
        assert isinstance(graph.module, torch.jit.ScriptModule) and graph.graph
        assert fused.dtype == torch.float32
        assert (fused - eager).abs().max().item() < tolerance * max(1.0, eager.abs().max().item())
        assert torch.equal(fused.argmax(1), eager.argmax(1))
    if dtype == torch.float32 or precision.cpu_has_bf16():  # oneDNN Graph really fused it
        assert FUSED in str(torch.jit.last_executed_optimized_graph())


def test_a_batch_larger_than_a_chunk_reaches_the_graph_in_chunks():
    model = _model("small_cnn")
    graph = precision.prepare(model, torch.float32, graph=True)
    batch = torch.randn(2 * cpu_graph.CHUNK + 3, 3, 28, 28)
    precision.run(graph, batch[:1])
    shapes = []

    def recording(chunk):
        shapes.append(chunk.shape[0])
        return graph.module(chunk)

    whole = precision.run(precision.prepare(model, torch.float32), batch)
    assert torch.allclose(cpu_graph.run(recording, batch), whole, atol=1e-4)
    assert shapes == [cpu_graph.CHUNK, cpu_graph.CHUNK, 3]
    assert torch.allclose(precision.run(graph, batch), whole, atol=1e-4)
    shapes.clear()
    assert torch.allclose(cpu_graph.run(recording, batch[:5]), whole[:5], atol=1e-4)
    assert shapes == [5]  # a batch within one chunk is one call, its logits not copied


class _RefusesTracing(nn.Module):
    """A layer that works eagerly but refuses to be traced, as some custom layers do."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 1)

    def forward(self, x):
        if torch.jit.is_tracing():
            raise RuntimeError("this layer cannot be traced")
        return self.conv(x).mean((2, 3))


def test_a_model_that_cannot_be_traced_runs_eagerly_and_says_so(caplog):
    model = _RefusesTracing().eval()
    graph = precision.prepare(model, torch.float32, graph=True)
    batch = torch.randn(2, 3, 8, 8)
    with caplog.at_level(logging.WARNING, logger="byoc.cpu_graph"):
        answer = precision.run(graph, batch)
    assert not graph.graph and graph.module is model
    assert "graph mode unavailable for this model (RuntimeError: this layer cannot be traced)" in caplog.text
    assert torch.allclose(answer, precision.run(precision.prepare(model, torch.float32), batch))


def _package(tmp_path):
    from byoc import model_package
    spec = ModelSpec("small_cnn", [f"c{i}" for i in range(10)], Preprocessing(32, 28))
    model_package.save(_model("small_cnn"), spec, str(tmp_path))
    return str(tmp_path)


def test_the_classifier_warms_its_graph_up_at_load(tmp_path):
    served = Classifier.load(_package(tmp_path), torch.device("cpu"), "fp32", graph=True)
    assert served.model.graph and isinstance(served.model.module, torch.jit.ScriptModule)
    assert served.mode == "graph mode (oneDNN)"
    assert FUSED in str(torch.jit.last_executed_optimized_graph())  # the warm-up's last call ran fused
    reference = Classifier.load(_package(tmp_path), torch.device("cpu"))
    assert not reference.model.graph  # host-side callers get eager fp32 unless they ask
    batch = torch.randn(5, 3, 28, 28)
    assert torch.allclose(served.probabilities(batch), reference.probabilities(batch), atol=1e-5)


def test_graph_mode_needs_room_for_its_packed_weights():
    weights = 100 * memory.MIB
    needed = memory.graph_need(weights)
    assert needed > (cpu_graph.CHUNK + 1) * weights  # one packed copy per batch size, and a margin
    assert memory.graph_fits(weights, free=needed) is None
    assert memory.graph_fits(weights, free=needed - 1) == (
        f"graph mode would need about {needed // memory.MIB} MiB more, and the container has "
        f"{(needed - 1) // memory.MIB} MiB free")


def test_a_container_without_room_for_graph_mode_serves_eagerly_and_says_why(tmp_path, monkeypatch):
    monkeypatch.setattr(memory, "available", lambda: 200 * memory.MIB)  # a small container's free memory
    tight = Classifier.load(_package(tmp_path), torch.device("cpu"), "fp32", graph=True)
    weights = sum(p.numel() * 4 for p in _model("small_cnn").parameters())
    assert not tight.model.graph and tight.mode == f"eager: {memory.graph_fits(weights, 200 * memory.MIB)}"
    monkeypatch.setattr(memory, "available", lambda: 8 * 1024 * memory.MIB)
    assert Classifier.load(str(tmp_path), torch.device("cpu"), "fp32", graph=True).model.graph


def test_make_bench_cpu_graph_reports_each_dtype_and_batch_with_the_graphs_agreement():
    report = benchmark.compare_graph(batch=3, threads=1, calls=1, architectures=["small_cnn"])
    rows = {(row["dtype"], row["batch"]): row for row in report["rows"]}
    assert sorted(rows) == [("bfloat16", 1), ("bfloat16", 3), ("float32", 1), ("float32", 3)]
    for (dtype, _), row in rows.items():
        assert row["architecture"] == "small_cnn" and row["top1_agrees"] is True
        assert row["eager_ms"] > 0 and row["graph_ms"] > 0
        assert row["speedup"] > 0
        assert row["max_logit_difference"] < (1e-3 if dtype == "float32" else 0.1)


def test_make_bench_cpu_graph_measures_graph_memory_in_fresh_processes():
    report = benchmark.graph_memory("small_cnn", threads=1)
    assert report["copies_reserved"] == memory.GRAPH_WEIGHT_COPIES and report["batch_sizes"] == "1-8"
    assert [row["dtype"] for row in report["rows"]] == ["float32", "bfloat16"]
    for row in report["rows"]:
        assert row["eager_rss_mb"] > 100  # a process with torch imported, not the parent's figure
        assert row["graph_rss_mb"] > row["eager_rss_mb"]  # eight traced shapes, each with packed weights
        # the report rounds RSS to 1 MB and the weights to 0.1 MB: the copies lie within those roundings
        extra, weights = row["graph_rss_mb"] - row["eager_rss_mb"], row["weights_mb"]
        assert (extra - 1) / (weights + 0.05) - 0.05 <= row["graph_extra_copies"] <= (extra + 1) / (weights - 0.05) + 0.05
