"""Every layer passes its finite-difference check on both engines, and the checker catches bugs.

On the reference engine the check runs the code in nn/ and blocks.py itself, so a bug planted
there must fail it; on the fast engine it runs the twins (numpy_resnet/engine).
"""

import contextlib

import numpy as np
import pytest

from numpy_resnet import nn, use_engine
from numpy_resnet.blocks import BasicBlock, Bottleneck
from numpy_resnet.gradcheck import gradcheck
from numpy_resnet.gradcheck_cases import all_cases

CASES = {f"{c.name}-{'train' if c.train else 'eval'}": c for c in all_cases()}


@pytest.mark.parametrize("case", all_cases(), ids=lambda c: f"{c.name}-{'train' if c.train else 'eval'}")
def test_every_case_of_numpy_resnet_gradcheck_matches_finite_differences_in_float64(case, engine):
    """The same cases the command prints; blocks on a random sample of 60 entries per tensor."""
    rng = np.random.default_rng(0)
    max_checks = 60 if "Block" in case.name or "Bottleneck" in case.name else None
    report = gradcheck(case.make(), *case.inputs(rng), train=case.train, max_checks=max_checks)
    assert report.ok(1e-6), str(report)
    assert all(t.kinks == 0 for t in report.tensors if case.name.startswith(("Conv", "Batch", "Linear")))


class BatchNormWithoutMeanTerms(nn.BatchNorm2d):
    """A classic bug: treating μ and σ as constants in train mode."""

    def backward(self, dy):
        x_hat, inv_std, _ = self._saved()
        self.bias.grad += dy.sum(axis=(0, 2, 3))
        self.weight.grad += (dy * x_hat).sum(axis=(0, 2, 3))
        return dy * (self.weight.data * inv_std)[:, None, None]


def test_gradcheck_catches_a_batchnorm_backward_that_ignores_the_batch_statistics():
    x = np.random.default_rng(0).standard_normal((4, 3, 3, 3))
    report = gradcheck(BatchNormWithoutMeanTerms(3), x)
    assert report.errors["input"] > 1e-2
    assert not report.ok()


class LinearWithTransposedGrad(nn.Linear):
    def backward(self, dy):
        x = self._saved("x")
        self.weight.grad += (dy.T @ x) * 1.001        # a 0.1 % error
        return dy @ self.weight.data


def test_gradcheck_catches_a_small_error_in_a_parameter_gradient():
    report = gradcheck(LinearWithTransposedGrad(4, 3), np.random.default_rng(0).standard_normal((2, 4)))
    assert report.errors["weight"] > 1e-4
    assert report.errors["input"] < 1e-6


def test_relu_kinks_are_flagged_not_failed():
    x = np.array([[-1.0, 0.0, 3e-6, -4e-6, 2.0]])      # 0, 3e-6 and -4e-6 sit within h of the kink
    report = gradcheck(nn.ReLU(), x)
    assert report.tensors[0].kinks == 3
    assert report.ok()


def test_gradcheck_leaves_the_module_and_its_running_statistics_untouched():
    bn = nn.BatchNorm2d(3)
    before = bn.state_dict()
    gradcheck(bn, np.random.default_rng(0).standard_normal((4, 3, 2, 2)))
    for key, value in bn.state_dict().items():
        np.testing.assert_array_equal(value, before[key])
    assert bn.weight.data.dtype == np.float32


def test_gradcheck_samples_entries_when_asked():
    report = gradcheck(nn.Conv2d(3, 8, 3, padding=1), np.random.default_rng(0).standard_normal((2, 3, 8, 8)),
                       max_checks=20)
    assert all(t.checked <= 20 for t in report.tensors)
    assert report.ok()


# ----- a bug planted in the textbook is caught ------------------------------------------------
@contextlib.contextmanager
def edited_source(cls: type, method: str, factor: float = 1.01):
    """As if a student edited `cls.method` in its file to return `factor` times its value.

    The class keeps the very function object it had, as after an edit and a fresh import, so
    the engine still takes the class for the one its twin was written for; only the code that
    function runs changes (the function Module wrapped is swapped inside the wrapper).
    """
    wrapper = cls.__dict__[method]
    cell = next(c for c in wrapper.__closure__ if c.cell_contents is wrapper.__wrapped__)
    original = cell.cell_contents

    def edited(self, *args, **kwargs):
        return original(self, *args, **kwargs) * factor

    cell.cell_contents = wrapper.__wrapped__ = edited
    try:
        yield
    finally:
        cell.cell_contents = wrapper.__wrapped__ = original


PLANTED = {                                 # the layer whose backward is made 1% wrong: its cases
    "Conv2d": (nn.Conv2d, ["Conv2d 3x3-train", "Conv2d 3x3 16 channels-train", "Conv2d groups 2-train"]),
    "BatchNorm2d": (nn.BatchNorm2d, ["BatchNorm2d-train", "BatchNorm2d-eval"]),
    "ReLU": (nn.ReLU, ["ReLU-train"]),
    "BasicBlock": (BasicBlock, ["BasicBlock shortcut B-train"]),
    "Bottleneck": (Bottleneck, ["Bottleneck shortcut B-train"]),
}


@pytest.mark.parametrize("layer", PLANTED)
def test_a_reference_backward_made_one_percent_wrong_fails_its_gradcheck(layer):
    cls, names = PLANTED[layer]
    rng = np.random.default_rng(0)
    for name in names:
        case = CASES[name]
        inputs = case.inputs(rng)
        with use_engine("reference"):
            assert gradcheck(case.make(), *inputs, train=case.train, max_checks=60).ok(), name
            with edited_source(cls, "backward"):
                report = gradcheck(case.make(), *inputs, train=case.train, max_checks=60)
        assert not report.ok(), f"{name}: a 1% error in {layer}.backward passed\n{report}"


def test_the_fast_engine_runs_its_twins_not_the_edited_textbook():
    """Why the lessons and the planted-bug checks select the reference engine."""
    case = CASES["BatchNorm2d-train"]
    inputs = case.inputs(np.random.default_rng(0))
    with use_engine("fast"), edited_source(nn.BatchNorm2d, "backward"):
        assert gradcheck(case.make(), *inputs, train=case.train).ok()


def test_the_gradcheck_command_checks_the_textbook_and_the_twins_and_fails_on_a_planted_bug(capsys):
    from numpy_resnet.cli import main
    assert main(["gradcheck", "relu"]) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines() if line.endswith("yes")]
    assert [row[0] for row in rows] == ["reference", "fast"]
    with edited_source(nn.ReLU, "backward"):
        assert main(["gradcheck", "relu"]) == 1
    out = capsys.readouterr().out
    assert "reference ReLU" in out and "1 FAILED" in out     # the edit shows; the twin is unchanged
    assert main(["gradcheck", "nosuchlayer"]) == 2
