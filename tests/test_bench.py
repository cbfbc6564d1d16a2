"""numpy-resnet bench: the report's structure at a tiny size (width 4, batch 4, one step).

Nothing here asserts a speed: these machines are shared and noisy. The tests check that every
measurement is made, that the tables and JSON carry it, and that measuring leaves the model
as it found it.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import mmap
import statistics
import time
from importlib.util import find_spec

import numba
import numpy as np
import pytest

from numpy_resnet import use_engine
from numpy_resnet.bench import ratios
from numpy_resnet.bench.process import first_step_probe, peak_rss_of
from numpy_resnet.bench.timing import (
    CATEGORIES,
    build_model,
    layer_inputs,
    measure_layers,
    measure_network,
    random_batch,
    step_shares,
)
from numpy_resnet.cli import main
from numpy_resnet.engine.dispatch import records
from numpy_resnet.nn import Conv2d, ReLU, Sequential

HAS_TORCH = find_spec("torch") is not None
TINY = ["--width", "4", "--batch-size", "4", "--steps", "1", "--warmup", "0", "--threads", "1",
        "--skip-compile", "--rounds", "2"]


@pytest.fixture(scope="module")
def bench_run(tmp_path_factory):
    """One `numpy-resnet bench` at the tiny size (with --vs-torch when torch is installed)."""
    path = tmp_path_factory.mktemp("bench") / "bench.json"
    argv = ["bench", *TINY, "--json", str(path)] + (["--vs-torch"] if HAS_TORCH else [])
    out, err = io.StringIO(), io.StringIO()
    numba_threads = numba.get_num_threads()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    assert code == 0, err.getvalue()
    assert numba.get_num_threads() == numba_threads         # --threads 1 is given back
    return out.getvalue(), json.loads(path.read_text())


def test_bench_prints_every_section(bench_run):
    text, _ = bench_run
    for heading in ["engine: fast", "ceiling:", "each distinct layer alone", "training step (forward, loss",
                    "inference (eval mode", "share of the training step", "peak memory",
                    "w: forward and backward by Winograd", "conv3x3 16->16 w "]:
        assert heading in text


def test_every_conv_of_resnet18_is_in_the_layer_table_once_per_distinct_shape(bench_run):
    _, report = bench_run
    convs = [row for row in report["layers"] if row["type"] == "conv"]
    n_convs = sum(isinstance(m, Conv2d) for m in build_model(4).modules())
    assert n_convs == 20                        # stem, 16 in the blocks, 3 downsample 1x1s
    assert sum(row["count"] for row in convs) == n_convs
    assert len(convs) == 11                     # stem; per stage 3x3 (strided), 3x3, 1x1 shortcut
    for row in convs:
        assert row["forward_ms"] > 0 and row["backward_ms"] > 0
        assert row["forward_gflops"] > 0 and row["backward_gflops"] > 0
        assert row["forward_pct_ceiling"] > 0
    # width 4: stages of 4, 8, 16, 32 channels; Winograd from 16 channels, the 1x1s are strided
    routes = {row["layer"]: row["forward_route"] for row in convs}
    assert routes["conv3x3 16->16"] == routes["conv3x3 32->32"] == "winograd"
    assert routes["conv3x3 4->4"] == routes["conv3x3 16->32 s2"] == "im2col"
    assert routes["conv1x1 8->16 s2"] == "im2col"
    assert {"batchnorm", "relu", "pool", "linear"} <= {row["type"] for row in report["layers"]}


def test_layer_type_shares_of_the_step_sum_to_one(bench_run):
    _, report = bench_run
    shares = report["shares"]
    assert list(shares) == list(CATEGORIES)
    assert math.isclose(sum(s["share"] for s in shares.values()), 1.0, rel_tol=1e-9)
    assert all(s["share"] >= 0 for kind, s in shares.items() if kind != "other")


def test_json_holds_config_machine_ceiling_step_and_memory(bench_run):
    _, report = bench_run
    assert report["config"]["width"] == 4 and report["config"]["batch_size"] == 4
    assert report["engine"] == report["config"]["engine"] == "fast"
    assert report["config"]["threads"] >= 1
    assert report["machine"]["cpu_count"] >= 1 and report["machine"]["numpy"] == np.__version__
    assert report["ceiling"]["gflops"] > 0
    assert report["train"]["images_per_s"] > 0 and report["inference"]["images_per_s"] > 0
    assert report["memory"]["peak_mib"] >= report["memory"]["before_mib"] > 0
    assert "compile" not in report              # --skip-compile


@pytest.mark.skipif(not HAS_TORCH, reason="torch is not installed")
def test_vs_torch_prints_ratio_rows_and_stores_torch_numbers(bench_run):
    text, report = bench_run
    assert "train step:  numpy-resnet" in text and "ratio" in text
    assert "inference:   numpy-resnet" in text and "peak memory: numpy-resnet" in text
    assert report["torch"]["train"]["images_per_s"] > 0
    assert report["torch"]["threads"] == report["config"]["threads"]


@pytest.mark.skipif(not HAS_TORCH, reason="torch is not installed")
def test_pytorch_runs_with_its_own_malloc_unless_asked_to_share_ours(bench_run):
    text, report = bench_run
    assert report["torch"]["same_malloc"] is False and "PyTorch's malloc: as installed" in text
    from numpy_resnet.bench.process import run_probe
    code = ("import ctypes, json; from numpy_resnet.bench.torch_side import _setup; "
            "from numpy_resnet.kernels import memory; _setup(4, 2, 1, {}); "
            "print(json.dumps(memory._result))")
    assert run_probe(code.format(True)) is True             # the thresholds were set
    assert run_probe(code.format(False)) is None            # never asked for


@pytest.mark.skipif(not HAS_TORCH, reason="torch is not installed")
def test_the_quoted_ratios_are_the_median_of_rounds_of_ours_and_torchs_in_turn(bench_run):
    text, report = bench_run
    rounds = report["rounds"]
    assert rounds["rounds"] == 2 and "median of 2 rounds in turn" in text
    for kind in ("train", "inference"):
        r = rounds[kind]
        assert len(r["ours_ms"]) == len(r["torch_ms"]) == len(r["ratios"]) == 2
        for ours_ms, torch_ms, ratio in zip(r["ours_ms"], r["torch_ms"], r["ratios"], strict=True):
            assert ours_ms > 0 and math.isclose(ratio, torch_ms / ours_ms)   # images/s: ours / torch
        assert math.isclose(report["ratios"][kind], statistics.median(r["ratios"]))


def test_without_rounds_the_ratio_is_of_the_two_separate_measurements():
    report = {"train": {"images_per_s": 30.0}, "inference": {"images_per_s": 90.0},
              "memory": {"step_mib": 100.0},
              "torch": {"train": {"images_per_s": 40.0}, "inference": {"images_per_s": 60.0},
                        "memory": {"step_mib": 50.0}}}
    assert ratios(report) == {"train": 0.75, "inference": 1.5, "memory": 2.0}
    report["rounds"] = {"rounds": 3, "train": {"ratios": [0.9, 1.2, 1.0]},
                        "inference": {"ratios": [2.0, 1.1, 1.3]}}
    assert ratios(report) == {"train": 1.0, "inference": 1.3, "memory": 2.0}


@pytest.mark.skipif(not HAS_TORCH, reason="torch is not installed")
def test_vs_torch_times_the_same_layers_and_pairs_them_with_ours(bench_run):
    text, report = bench_run
    ours = {(row["layer"], tuple(row["input"])) for row in report["layers"] if row["type"] != "pool"}
    theirs = {(row["layer"], tuple(row["input"])) for row in report["torch"]["layers"]}
    assert ours == theirs                       # every conv, batchnorm, relu and linear row
    assert all(row["forward_ms"] > 0 and row["backward_ms"] > 0 for row in report["torch"]["layers"])
    assert "torch ms" in text and "speed" in text


@pytest.mark.skipif(not HAS_TORCH, reason="torch is not installed")
def test_torch_twin_has_our_state_dict_keys_and_shapes(bench_run):
    text, report = bench_run
    assert report["torch"]["architecture"] == report["architecture"]
    assert report["architecture"]["parameters"] == sum(p.data.size for p in build_model(4).parameters())
    assert "same network: yes" in text


def test_eval_only_times_forward_passes_and_no_training_step():
    model = build_model(4).eval()
    x, _ = random_batch(4, np.random.default_rng(0))
    rows = measure_layers(model, x, steps=1, warmup=0, train=False)
    assert rows and all(row["backward_ms"] is None for row in rows)
    result = measure_network(model, 4, steps=1, warmup=0, train=False)
    assert "train" not in result and result["inference"]["images_per_s"] > 0
    assert math.isclose(sum(s["share"] for s in result["shares"].values()), 1.0)


def test_measuring_leaves_every_layer_with_its_class_methods_and_no_hooks():
    model = build_model(4)
    x, _ = random_batch(2, np.random.default_rng(0))
    assert len(layer_inputs(model, x)) > 0
    measure_network(model, 2, steps=1, warmup=0, train=True)
    for m in model.modules():
        assert "forward" not in m.__dict__ and "backward" not in m.__dict__
        assert not m.has_hooks()
    assert model.training


class SlowReLU(ReLU):
    """A ReLU that sleeps 20 ms in forward and 30 ms in backward: known times to find in the shares."""

    def forward(self, x):
        time.sleep(0.02)
        return super().forward(x)

    def backward(self, grad_output):
        time.sleep(0.03)
        return super().backward(grad_output)


def test_shares_time_each_layers_forward_and_backward_through_hooks():
    model = Sequential(Conv2d(3, 4, 3, padding=1), SlowReLU())
    x = np.random.default_rng(0).standard_normal((2, 3, 8, 8)).astype(np.float32)

    def step():
        model.backward(np.ones_like(model(x)))

    shares = step_shares(model, step, repeats=1)
    assert 0.05 <= shares["relu"]["ms"] / 1e3 < 0.2             # 20 ms forward + 30 ms backward
    assert shares["conv"]["ms"] > 0 and shares["relu"]["share"] > 0.5
    assert not any(m.has_hooks() for m in model.modules())


def test_shares_run_each_layer_on_its_fast_twin_while_timed():
    model = build_model(4)
    x, _ = random_batch(2, np.random.default_rng(0))
    with use_engine("fast"):
        step_shares(model, lambda: model(x), repeats=1)
    convs = [m for m in model.modules() if isinstance(m, Conv2d)]
    assert all(records.get(conv) is not None for conv in convs)  # each twin left its record


def test_first_step_probe_prints_its_timings_as_json(capsys):
    first_step_probe(threads=1)
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["kernels"] >= 1
    assert result["first_step_s"] > 0 and result["second_step_s"] > 0


def test_peak_rss_of_sees_64_mib_that_are_freed_at_once():
    def touch_64_mib():
        # fresh pages from the system: glibc may keep freed memory for reuse (kernels/memory.py),
        # so an np.ones of this size could land on pages that are resident already
        with mmap.mmap(-1, 64 * 2**20) as pages:
            np.frombuffer(pages, np.uint8)[::4096] = 1          # one write per page
    memory = peak_rss_of(touch_64_mib)
    assert memory["step_mib"] > 48


def test_reference_engine_times_the_textbook_layers():
    model = build_model(4)
    x, _ = random_batch(2, np.random.default_rng(0))
    with use_engine("reference"):
        rows = measure_layers(model, x, steps=1, warmup=0, train=True)
    convs = [m for m in model.modules() if isinstance(m, Conv2d)]
    assert not any(conv in records for conv in convs)            # no twin ran
    assert {row["forward_route"] for row in rows if row["type"] == "conv"} == {"im2col"}
    assert all(row["backward_ms"] > 0 for row in rows)
