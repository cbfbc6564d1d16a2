"""Every layer passes its finite-difference check, and the checker itself catches bugs."""

import numpy as np
import pytest

from numpy_resnet import nn
from numpy_resnet.gradcheck import gradcheck
from numpy_resnet.gradcheck_cases import all_cases


@pytest.mark.parametrize("case", all_cases(), ids=lambda c: f"{c.name}-{'train' if c.train else 'eval'}")
def test_every_case_of_numpy_resnet_gradcheck_matches_finite_differences_in_float64(case):
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
