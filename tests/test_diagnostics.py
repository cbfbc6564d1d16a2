"""Tests for numpy_resnet.diagnostics (GradientRecorder, gradient_flow) and the gradflow command."""

from __future__ import annotations

import json

import numpy as np
import pytest

from numpy_resnet import use_engine
from numpy_resnet.blocks import BasicBlock, Bottleneck
from numpy_resnet.cli import main
from numpy_resnet.diagnostics import GradFlowReport, GradientRecorder, gradient_flow, norm
from numpy_resnet.engine import dispatch
from numpy_resnet.experiments import degradation, first_batch, init_model
from numpy_resnet.models import cifar_resnet
from numpy_resnet.nn import Conv2d, CrossEntropyLoss
from numpy_resnet.preact import PreActBasicBlock, PreActBottleneck, preact_cifar_resnet, preact_projection
from numpy_resnet.seeding import manual_seed
from numpy_resnet.shortcuts import make_shortcut


def small_net(residual: bool = True):
    """cifar_resnet depth 8 (one block per stage), float64 so that sums compare exactly."""
    manual_seed(0)
    return cifar_resnet(8, shortcut="B", residual=residual).to(np.float64)


def random_batch(n: int = 4, seed: int = 0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, 3, 32, 32)), rng.integers(0, 10, n)


def assert_left_alone(model):
    """No hook stays on any module, and no instance attribute hides a layer's methods."""
    for name, module in model.named_modules():
        assert not module.has_hooks(), f"{name or 'model'} still has hooks"
        assert not {"forward", "backward"} & set(module.__dict__), f"{name or 'model'} patched"


def test_recorded_norms_equal_norms_computed_by_hand_from_the_same_backward():
    model = small_net()
    x, y = random_batch()
    criterion = CrossEntropyLoss()
    with GradientRecorder(model) as recorder:
        model.zero_grad()
        loss = criterion(model(x), y)
        d = criterion.backward()
        # ResNet.backward by hand, keeping the gradient at each block's output and input
        d = model.avgpool.backward(model.flatten.backward(model.fc.backward(d)))
        by_hand = {}
        for s in (3, 2, 1):
            for i, block in reversed(list(enumerate(getattr(model, f"layer{s}")))):
                dy = d
                d = block.backward(d)
                by_hand[f"layer{s}.{i}"] = (norm(dy), norm(d))
        model.conv1.backward(model.bn1.backward(model.relu.backward(model.maxpool.backward(d))))
    report = recorder.report("resnet8", loss)

    convs = [(name, m) for name, m in model.named_modules() if isinstance(m, Conv2d)]
    recorded = {r.name: r.weight_grad_norm for r in report.convs(main_path=False)}
    assert set(recorded) == {name for name, _ in convs}
    for name, conv in convs:
        assert recorded[name] == pytest.approx(np.linalg.norm(conv.weight.grad), rel=1e-12)
    assert [b.name for b in report.blocks] == ["layer1.0", "layer2.0", "layer3.0"]
    for b in report.blocks:
        assert (b.grad_output_norm, b.grad_input_norm) == pytest.approx(by_hand[b.name], rel=1e-12)
    assert report.loss == pytest.approx(loss)


def test_layers_come_in_the_order_forward_ran_them_with_activation_statistics():
    model = small_net()
    x, y = random_batch()
    report = gradient_flow(model, x, y)
    names = [r.name for r in report.layers]
    assert names[:3] == ["conv1", "bn1", "relu"] and names[-1] == "fc"
    depth = names.index
    assert depth("layer2.0.conv1") < depth("layer2.0.downsample.0") < depth("layer3.0.conv1")
    model.train()
    out = model.relu(model.bn1(model.conv1(x)))                   # the stem's ReLU output, by hand
    relu = report.layers[2]
    assert relu.mean == pytest.approx(out.mean()) and relu.std == pytest.approx(out.std())
    assert relu.zero_fraction == pytest.approx(np.mean(out == 0))
    assert 0.3 < relu.zero_fraction < 0.7                          # BN then ReLU: about half dead


def test_recorder_gives_the_same_numbers_on_the_reference_and_the_fast_engine():
    model = small_net()
    x, y = random_batch()
    with use_engine("reference"):
        reference = gradient_flow(model, x, y)
    with use_engine("fast"):
        fast = gradient_flow(model, x, y)
    block = model.layer1[0]
    assert block.conv1 in dispatch.records                         # the conv's fast twin ran
    assert block not in dispatch.records                           # the block ran unfused

    def numbers(report):
        layers = [[r.mean, r.std, r.zero_fraction, r.grad_output_norm, r.grad_input_norm,
                   r.weight_grad_norm or 0.0] for r in report.layers]
        blocks = [[b.zero_fraction, b.grad_output_norm, b.grad_input_norm, b.residual_norm,
                   b.shortcut_norm] for b in report.blocks]
        return np.array(layers), np.array(blocks)

    assert [(r.name, r.shape) for r in fast.layers] == [(r.name, r.shape) for r in reference.layers]
    assert [b.name for b in fast.blocks] == [b.name for b in reference.blocks] != []
    for ours, theirs in zip(numbers(fast), numbers(reference), strict=True):
        np.testing.assert_allclose(ours, theirs, rtol=1e-8, atol=1e-12)
    assert fast.loss == pytest.approx(reference.loss, rel=1e-12)
    assert max(b.split_error for b in fast.blocks + reference.blocks) < 1e-12


def make_block(kind: str):
    if kind == "identity":
        return BasicBlock(8, 8)
    if kind == "projection B":
        return BasicBlock(8, 16, stride=2, downsample=make_shortcut("B", 8, 16, 2))
    if kind == "zero-pad A":
        return BasicBlock(8, 16, stride=2, downsample=make_shortcut("A", 8, 16, 2))
    if kind == "bottleneck":
        return Bottleneck(8, 2)                                    # 8 -> 2·4 = 8 channels
    return BasicBlock(8, 16, stride=2, residual=False)             # plain


def branch_backward(block, d):
    """F'ᵀ d by hand: back through the layers of F, last to first (the sum's ReLU excluded)."""
    names = (["bn3", "conv3", "relu2", "bn2", "conv2"] if isinstance(block, Bottleneck)
             else ["bn2", "conv2"]) + ["relu1", "bn1", "conv1"]
    for name in names:
        d = getattr(block, name).backward(d)
    return d


@pytest.mark.parametrize("kind", ["identity", "projection B", "zero-pad A", "bottleneck", "plain"])
def test_residual_and_shortcut_gradients_add_up_to_the_block_input_gradient(kind):
    manual_seed(0)
    block = make_block(kind).to(np.float64)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((4, 8, 8, 8))
    with GradientRecorder(block) as recorder:
        out = block(x)
        dy = rng.standard_normal(out.shape)
        dx = block.backward(dy)
    record = recorder.report().blocks[0]
    assert_left_alone(block)

    d_sum = dy * (out > 0)                                         # through the block's last ReLU
    dx_residual = branch_backward(block, d_sum)                    # F'ᵀ d, by hand
    if not block.residual:
        dx_shortcut = np.zeros_like(dx)
    elif block.downsample is None:
        dx_shortcut = d_sum
    else:
        dx_shortcut = block.downsample.backward(d_sum)
    np.testing.assert_allclose(dx_residual + dx_shortcut, dx, rtol=1e-12, atol=1e-12)
    assert record.residual_norm == pytest.approx(norm(dx_residual), rel=1e-12)
    assert record.shortcut_norm == pytest.approx(norm(dx_shortcut), abs=1e-300, rel=1e-12)
    assert record.grad_input_norm == pytest.approx(norm(dx), rel=1e-12)
    assert record.split_error < 1e-12
    assert record.residual == (kind != "plain")


def test_split_error_is_measured_so_a_block_gradient_changed_after_its_layers_shows_it():
    manual_seed(0)
    block = BasicBlock(8, 8).to(np.float64)
    x = np.random.default_rng(1).standard_normal((4, 8, 8, 8))
    # a hook that doubles dL/dx after the block's layers ran: the parts add up to half of it
    with block.register_full_backward_hook(lambda module, dx, dy: (2 * dx[0],)):
        with GradientRecorder(block) as recorder:
            block.backward(np.ones_like(block(x)))
    record = recorder.report().blocks[0]
    assert record.split_error == pytest.approx(0.5, rel=1e-12)     # |g - 2g| / |2g|
    assert not block.has_hooks()


def test_recorder_and_gradient_flow_leave_the_model_as_they_found_it():
    model = small_net()
    x, y = random_batch()
    model.eval()
    before = model(x)
    rng = np.random.default_rng(2)
    for p in model.parameters():
        p.grad[...] = rng.standard_normal(p.grad.shape)
    grads = [p.grad.copy() for p in model.parameters()]
    buffers = {k: np.copy(v) for k, v in model.named_buffers()}

    gradient_flow(model, x, y)
    with pytest.raises(RuntimeError), GradientRecorder(model):
        raise RuntimeError("an error inside the with block still removes the hooks")

    assert_left_alone(model)
    with pytest.raises(RuntimeError), GradientRecorder(model):
        model(x)                                                   # hooks ran, then an error
        raise RuntimeError("an error after a forward still removes every hook")
    assert_left_alone(model)
    assert not model.training
    np.testing.assert_array_equal(model(x), before)
    for p, g in zip(model.parameters(), grads, strict=True):
        np.testing.assert_array_equal(p.grad, g)
    for k, v in model.named_buffers():
        np.testing.assert_array_equal(v, buffers[k])


def test_paused_recorder_records_nothing_and_reports_round_trip_through_json():
    model = small_net()
    x, y = random_batch()
    with GradientRecorder(model) as recorder:
        recorder.active = False
        model(x)
        assert recorder.layers == {} and recorder.blocks == {}
    report = gradient_flow(model, x, y, "resnet8")
    again = GradFlowReport.from_json(json.loads(json.dumps(report.to_json())))
    assert again == report
    assert "layer3.0" in report.table() and report.first_last_ratio() > 0


def test_plain_net_gradient_shrinks_far_more_with_depth_than_its_residual_twin(cifar_dir):
    x, y = first_batch(cifar_dir, 32)                              # real images
    residual = gradient_flow(init_model("resnet32", seed=0), x, y)
    plain = gradient_flow(init_model("plain32", seed=0), x, y)
    assert len(residual.convs()) == len(plain.convs()) == 31
    assert plain.first_last_ratio() > 5 * residual.first_last_ratio()
    shares = [b.shortcut_norm / (b.shortcut_norm + b.residual_norm) for b in residual.blocks]
    assert min(shares) > 0.2                                        # the shortcut carries its part


def test_gradflow_command_prints_ratios_and_writes_a_png(cifar_dir, tmp_path, capsys):
    output = tmp_path / "gradflow.png"
    code = main(["gradflow", "--models", "resnet20", "plain20", "--batch-size", "8", "-q",
                 "--data-dir", str(cifar_dir), "-o", str(output)])
    assert code == 0
    assert output.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    printed = capsys.readouterr().out
    assert "resnet20" in printed and "plain20" in printed and "first/last" in printed


def test_degradation_writes_summary_and_snapshots_and_skips_finished_runs(cifar_dir, tmp_path):
    kwargs = {"models": ("resnet20",), "epochs": 1, "train_size": 40, "test_size": 20,
              "data_dir": cifar_dir, "gradflow_batch": 8, "progress": False}
    messages = []
    summary = degradation(tmp_path, log=messages.append, **kwargs)
    run = tmp_path / "resnet20"
    assert sorted(p.name for p in (run / "gradflow").iterdir()) == ["epoch_000.json", "epoch_001.json"]
    assert (tmp_path / "degradation.png").is_file() and (run / "metrics.json").is_file()
    table = summary.read_text()
    assert "| resnet20 | 272,474 |" in table and "0.73" in table       # ours beside the reference

    messages.clear()
    degradation(tmp_path, log=messages.append, **kwargs)
    assert any("complete, skipped" in m for m in messages)


def test_an_interrupted_degradation_run_resumes_to_exactly_the_uninterrupted_result(
        cifar_dir, tmp_path, monkeypatch):
    # three epochs with a gradient-flow snapshot after the second; Ctrl-C in the third epoch
    import numpy_resnet.train as train_module
    kwargs = {"models": ("resnet20",), "epochs": 3, "train_size": 40, "test_size": 20,
              "data_dir": cifar_dir, "gradflow_batch": 8, "progress": False,
              "snapshot_epochs": [0, 2, 3], "log": lambda *a: None}
    degradation(tmp_path / "straight", **kwargs)
    one_epoch = train_module.train_one_epoch

    def ctrl_c_in_the_third_epoch(model, loader, criterion, optimizer, scheduler, epoch, progress):
        if epoch == 2:
            raise KeyboardInterrupt
        return one_epoch(model, loader, criterion, optimizer, scheduler, epoch, progress)
    with monkeypatch.context() as patch:
        patch.setattr(train_module, "train_one_epoch", ctrl_c_in_the_third_epoch)
        with pytest.raises(KeyboardInterrupt):
            degradation(tmp_path / "resumed", **kwargs)
    degradation(tmp_path / "resumed", **kwargs)

    def results(out):
        history = json.loads((out / "resnet20" / "metrics.json").read_text())["history"]
        snapshots = [json.loads((out / "resnet20" / "gradflow" / f"epoch_{e:03d}.json").read_text())
                     for e in (0, 2, 3)]
        return [{k: v for k, v in row.items() if k not in ("seconds", "images_per_second")}
                for row in history], [s["layers"] for s in snapshots]
    assert results(tmp_path / "resumed") == results(tmp_path / "straight")


def test_experiment_command_takes_all_for_the_subset_sizes_as_train_does():
    from numpy_resnet.cli import _count_or_none, build_parser

    argv = ["experiment", "degradation", "--train-size", "all", "--test-size", "200"]
    args = build_parser().parse_args(argv)
    assert _count_or_none(args.train_size) is None and _count_or_none(args.test_size) == 200
    args = build_parser().parse_args(["train", "--train-size", "all"])
    assert _count_or_none(args.train_size) is None


def test_experiment_command_on_the_reference_engine_says_so_and_records_it(cifar_dir, tmp_path,
                                                                          capsys):
    code = main(["experiment", "degradation", "--engine", "reference", "--models", "resnet20",
                 "--epochs", "1", "--train-size", "20", "--test-size", "20", "--snapshots", "1",
                 "--data-dir", str(cifar_dir), "--out", str(tmp_path), "--no-progress"])
    assert code == 0
    opening = capsys.readouterr().out.splitlines()[0]
    assert "reference engine" in opening, opening
    rows = json.loads((tmp_path / "resnet20" / "metrics.json").read_text())["history"]
    assert [row["engine"] for row in rows] == ["reference"]
    assert "Engine of our runs: reference." in (tmp_path / "summary.md").read_text()


def test_a_gated_nets_gates_are_off_the_main_path_of_the_gradient_ratio():
    from numpy_resnet.models import get_model
    model = get_model("gated20", shortcut="B")
    x = np.random.default_rng(0).standard_normal((2, 3, 8, 8)).astype(np.float32)
    report = gradient_flow(model, x, np.array([1, 2]))
    main = [r.name for r in report.convs(main_path=True)]
    every = [r.name for r in report.convs(main_path=False)]
    assert len(main) == 19 and not any(".gate" in name for name in main)     # 6n + 1 convs
    assert any(".gate" in name for name in every) and any("downsample" in name for name in every)


# ----- pre-activation blocks: the split, and the identity-mapping measurement ------------------

def make_preact_block(kind: str):
    if kind == "identity":
        return PreActBasicBlock(8, 8)
    if kind == "projection":
        return PreActBasicBlock(8, 16, stride=2, downsample=preact_projection(8, 16, 2))
    if kind == "bottleneck":
        return PreActBottleneck(8, 2)                              # 8 -> 2·4 = 8 channels
    return PreActBasicBlock(8, 16, stride=2, residual=False)       # plain


def preact_branch_backward(block, d, to="x"):
    """F'ᵀ d by hand, F's layers last to first; to="pre" stops at the pre-activation."""
    names = (["conv3", "relu3", "bn3", "conv2", "relu2", "bn2", "conv1"]
             if isinstance(block, PreActBottleneck) else ["conv2", "relu2", "bn2", "conv1"])
    if to == "x":
        names += ["relu1", "bn1"]
    for name in names:
        d = getattr(block, name).backward(d)
    return d


@pytest.mark.parametrize("kind", ["identity", "projection", "bottleneck", "plain"])
def test_preact_residual_and_shortcut_gradients_add_up_where_the_two_paths_part(kind):
    manual_seed(0)
    block = make_preact_block(kind).to(np.float64)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((4, 8, 8, 8))
    with GradientRecorder(block) as recorder:
        out = block(x)
        dy = rng.standard_normal(out.shape)
        dx = block.backward(dy)
    record = recorder.report().blocks[0]
    assert_left_alone(block)

    if kind == "projection":       # both paths read pre = relu1(bn1(x)): the split is of dL/dpre
        dx_residual = preact_branch_backward(block, dy, to="pre")
        dx_shortcut = block.downsample.backward(dy)
        total = dx_residual + dx_shortcut
        np.testing.assert_allclose(block.bn1.backward(block.relu1.backward(total)), dx,
                                   rtol=1e-12, atol=1e-12)
    else:                          # nothing after the sum: the identity hands dL/dy to x
        dx_residual = preact_branch_backward(block, dy)
        dx_shortcut = dy if block.residual else np.zeros_like(dx)
        total = dx
        np.testing.assert_allclose(dx_residual + dx_shortcut, dx, rtol=1e-12, atol=1e-12)
    assert record.residual_norm == pytest.approx(norm(dx_residual), rel=1e-12)
    assert record.shortcut_norm == pytest.approx(norm(dx_shortcut), abs=1e-300, rel=1e-12)
    assert record.grad_input_norm == pytest.approx(norm(dx), rel=1e-12)
    assert record.split_error < 1e-12 and norm(total) > 0
    assert record.residual == (kind != "plain")


def test_preact_split_error_shows_an_identity_block_that_drops_its_shortcut_gradient():
    manual_seed(0)
    block = PreActBasicBlock(8, 8).to(np.float64)
    x = np.random.default_rng(1).standard_normal((4, 8, 8, 8))
    # a hook that hands back only F's part, as a backward that forgot "+ grad_output" would
    with block.register_full_backward_hook(lambda module, dx, dy: (dx[0] - dy[0],)):
        with GradientRecorder(block) as recorder:
            dy = np.ones_like(block(x))
            dx = block.backward(dy)
    record = recorder.report().blocks[0]
    assert record.split_error == pytest.approx(norm(dy) / norm(dx), rel=1e-12)


def stage_end_gradients(model, x, y, block):
    """Record `model`'s gradient flow on one batch, keeping x_L and dL/dx_l, dL/dx_L (= dL/dy)
    of `block`, the last block of its stage."""
    kept = {}

    def keep_output(module, args, output):
        kept["x_L"] = output.copy()

    def keep(module, grad_input, grad_output):
        kept["dx_l"], kept["dx_L"] = grad_input[0].copy(), grad_output[0].copy()
    criterion = CrossEntropyLoss()
    with (block.register_forward_hook(keep_output), block.register_full_backward_hook(keep),
          GradientRecorder(model) as recorder):
        model.train()
        model.zero_grad()
        loss = criterion(model(x), y)
        model.backward(criterion.backward())
    return recorder.report("net", loss), kept


def test_preact_stage_end_gradient_is_the_top_gradient_plus_the_branch_exactly(engine):
    # x_L = x_l + F(x_l) for the stage's last block, nothing after the sum, so
    # dL/dx_l = dL/dx_L + F'ᵀ dL/dx_L: the direct term arrives unchanged
    manual_seed(0)
    model = preact_cifar_resnet(14).to(np.float64)                 # two blocks a stage
    x, y = random_batch()
    x = x[:, :, :16, :16]
    top = {}                                                       # |dL/dx_L| of each stage
    for stage in ("layer1", "layer2", "layer3"):
        last = getattr(model, stage)[1]
        report, kept = stage_end_gradients(model, x, y, last)
        dx_l, dx_L = kept["dx_l"], kept["dx_L"]
        top[stage] = norm(dx_L)
        branch = preact_branch_backward(last, dx_L)                # F'ᵀ dL/dx_L, separately
        np.testing.assert_allclose(dx_l, dx_L + branch, rtol=1e-10, atol=1e-14)
        record = {b.name: b for b in report.blocks}[f"{stage}.1"]
        assert record.direct_norm == pytest.approx(norm(dx_L), rel=1e-10)
        assert record.rest_norm == pytest.approx(norm(branch), rel=1e-10)
        cosine = np.vdot(dx_l, dx_L) / (norm(dx_l) * norm(dx_L))
        assert record.direct_cosine == pytest.approx(cosine, rel=1e-10)
        assert record.direct_share == pytest.approx(norm(dx_L) / norm(dx_l), rel=1e-10)
    blocks = {b.name: b for b in report.blocks}
    assert blocks["layer1.0"].direct_norm == pytest.approx(top["layer1"], rel=1e-10)   # 16 -> 16
    assert blocks["layer2.0"].direct_norm is None                  # 16 -> 32, stride 2: skipped
    assert blocks["layer2.0"].split_error < 1e-12                  # the projection's split
    assert max(b.split_error for b in report.blocks) < 1e-12


def test_original_blocks_gate_the_direct_term_with_the_relu_after_the_sum(engine):
    # y = relu(x + F(x)): dL/dx_l = m ⊙ d + F'ᵀ(m ⊙ d), m = (y > 0), not dL/dx_L + F'ᵀ dL/dx_L
    manual_seed(0)
    model = cifar_resnet(14, shortcut="B").to(np.float64)
    x, y = random_batch()
    x = x[:, :, :16, :16]
    last = model.layer2[1]
    report, kept = stage_end_gradients(model, x, y, last)
    dx_l, dx_L = kept["dx_l"], kept["dx_L"]
    mask = kept["x_L"] > 0                                         # the ReLU after the sum
    gated = mask * dx_L
    np.testing.assert_allclose(dx_l, gated + branch_backward(last, gated), rtol=1e-10, atol=1e-14)
    ungated = dx_L + branch_backward(last, dx_L)
    assert norm(dx_l - ungated) > 0.1 * norm(dx_l)                 # the mask shows
    record = {b.name: b for b in report.blocks}["layer2.1"]
    assert record.rest_norm == pytest.approx(norm(dx_l - dx_L), rel=1e-10)
    assert record.direct_cosine < 1


def test_preact_direct_term_keeps_a_higher_cosine_than_the_original_blocks(cifar_dir):
    x, y = first_batch(cifar_dir, 32)                              # real images
    preact = gradient_flow(init_model("preact_resnet20", seed=0), x, y)
    original = gradient_flow(init_model("resnet20", seed=0), x, y)
    assert len(preact.direct_cosines()) == len(original.direct_cosines()) == 7
    assert np.mean(preact.direct_cosines()) > np.mean(original.direct_cosines())
    table = preact.table()
    assert "identity mapping" in table and "cos(l, L)" in table


def test_gradflow_command_prints_the_identity_mapping_table(cifar_dir, tmp_path, capsys):
    code = main(["gradflow", "--models", "preact_resnet20", "--batch-size", "4",
                 "--data-dir", str(cifar_dir), "-o", str(tmp_path / "gradflow.png")])
    assert code == 0
    printed = capsys.readouterr().out
    assert "identity mapping" in printed and "layer3.2" in printed
    summary = printed.splitlines()[-3:-1]                          # header, one row; then "wrote"
    assert "mean cos(l, L)" in summary[0]
    assert 0 < float(summary[1].split()[-1]) <= 1
