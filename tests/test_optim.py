"""numpy_resnet.optim against torch.optim: same updates, same lr schedules, exact resume."""

from __future__ import annotations

import itertools
import warnings

import numpy as np
import pytest

from numpy_resnet.nn.module import Parameter
from numpy_resnet.optim import (
    SGD,
    AdamW,
    CosineAnnealingLR,
    LinearLR,
    MultiStepLR,
    StepLR,
    WarmupCosine,
    param_groups_no_decay,
)

torch = pytest.importorskip("torch")

SHAPES = [(3, 4), (5,), (2, 3, 3)]


def make_params(seed=0):
    """The same float64 values as our Parameters and as torch tensors."""
    rng = np.random.default_rng(seed)
    ours = [Parameter(rng.standard_normal(shape)) for shape in SHAPES]
    theirs = [torch.tensor(p.data.copy(), requires_grad=True) for p in ours]
    return ours, theirs


def set_grads(ours, theirs, rng):
    for p, t in zip(ours, theirs, strict=True):
        g = rng.standard_normal(p.shape)
        p.grad[...] = g
        t.grad = torch.tensor(g)


def run_both(ours, theirs, opt, topt, steps=5, seed=1):
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        set_grads(ours, theirs, rng)
        opt.step()
        topt.step()
        for p, t in zip(ours, theirs, strict=True):
            np.testing.assert_allclose(p.data, t.detach().numpy(), rtol=1e-12, atol=1e-14)


def as_torch_groups(groups, theirs, ours):
    """Our group dicts with torch tensors in place of our Parameters."""
    lookup = {id(p): t for p, t in zip(ours, theirs, strict=True)}
    return [{**g, "params": [lookup[id(p)] for p in g["params"]]} for g in groups]


# ----- SGD -----------------------------------------------------------------------------
SGD_OPTIONS = [
    dict(momentum=m, dampening=d, weight_decay=wd, nesterov=n)
    for m, d, wd, n in itertools.product([0.0, 0.9], [0.0, 0.3], [0.0, 1e-2], [False, True])
    if not (n and (m == 0 or d != 0))
]


@pytest.mark.parametrize("options", SGD_OPTIONS, ids=str)
def test_sgd_matches_torch_step_for_step(options):
    ours, theirs = make_params()
    run_both(ours, theirs, SGD(ours, lr=0.1, **options),
             torch.optim.SGD(theirs, lr=0.1, **options))


def test_sgd_param_groups_match_torch():
    ours, theirs = make_params()
    groups = [{"params": ours[:2], "lr": 0.05, "weight_decay": 1e-3},
              {"params": ours[2:], "nesterov": True}]
    opt = SGD(groups, lr=0.1, momentum=0.9)
    topt = torch.optim.SGD(as_torch_groups(groups, theirs, ours), lr=0.1, momentum=0.9)
    assert opt.param_groups[1]["lr"] == 0.1 and opt.param_groups[0]["momentum"] == 0.9
    run_both(ours, theirs, opt, topt)


def test_sgd_nesterov_needs_momentum_and_no_dampening():
    ours, _ = make_params()
    with pytest.raises(ValueError, match="nesterov"):
        SGD(ours, lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match="nesterov"):
        SGD(ours, lr=0.1, momentum=0.9, dampening=0.1, nesterov=True)


def test_frozen_parameters_are_not_updated():
    ours, _ = make_params()
    ours[0].requires_grad = False
    before = ours[0].data.copy()
    opt = SGD(ours, lr=0.1, momentum=0.9, weight_decay=0.1)
    ours[0].grad[...] = 1.0
    opt.step()
    np.testing.assert_array_equal(ours[0].data, before)
    assert ours[0] not in opt.state


def test_zero_grad_clears_every_gradient():
    ours, _ = make_params()
    for p in ours:
        p.grad[...] = 3.0
    SGD(ours, lr=0.1).zero_grad()
    assert all(not p.grad.any() for p in ours)


def test_a_parameter_in_two_groups_is_an_error():
    ours, _ = make_params()
    with pytest.raises(ValueError, match="more than one"):
        SGD([{"params": ours}, {"params": ours[:1]}], lr=0.1)


# ----- AdamW ------------------------------------------------------------------------------
@pytest.mark.parametrize("options", [
    dict(),
    dict(lr=1e-2, weight_decay=0.0),
    dict(lr=3e-3, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1),
], ids=str)
def test_adamw_matches_torch_step_for_step(options):
    ours, theirs = make_params()
    run_both(ours, theirs, AdamW(ours, **options), torch.optim.AdamW(theirs, **options))


def test_adamw_param_groups_match_torch():
    ours, theirs = make_params()
    groups = [{"params": ours[:1], "lr": 1e-2},
              {"params": ours[1:], "weight_decay": 0.0, "betas": (0.5, 0.9)}]
    opt = AdamW(groups, lr=1e-3)
    topt = torch.optim.AdamW(as_torch_groups(groups, theirs, ours), lr=1e-3)
    run_both(ours, theirs, opt, topt)


# ----- state_dict: resume gives the same continuation ---------------------------------
@pytest.mark.parametrize("make", [
    lambda ps: SGD(ps, lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-3),
    lambda ps: AdamW(ps, lr=1e-2),
], ids=["SGD", "AdamW"])
def test_state_dict_through_npz_resumes_exactly(make, tmp_path):
    ours, _ = make_params()
    opt = make(ours)
    sched = StepLR(opt, step_size=2, gamma=0.5)
    rng = np.random.default_rng(3)
    grads = [[rng.standard_normal(s) for s in SHAPES] for _ in range(6)]

    def train(opt, sched, params, steps):
        for step_grads in steps:
            for p, g in zip(params, step_grads, strict=True):
                p.grad[...] = g
            opt.step()
            sched.step()

    train(opt, sched, ours, grads[:3])
    np.savez(tmp_path / "opt.npz", **opt.state_dict())
    np.savez(tmp_path / "sched.npz", **sched.state_dict())
    copies = [Parameter(p.data.copy()) for p in ours]
    train(opt, sched, ours, grads[3:])

    opt2 = make(copies)
    sched2 = StepLR(opt2, step_size=2, gamma=0.5)
    opt2.load_state_dict(np.load(tmp_path / "opt.npz"))
    sched2.load_state_dict(np.load(tmp_path / "sched.npz"))
    train(opt2, sched2, copies, grads[3:])
    for p, q in zip(ours, copies, strict=True):
        np.testing.assert_array_equal(p.data, q.data)
    assert sched2.get_last_lr() == sched.get_last_lr()
    assert opt2.param_groups[0].keys() == opt.param_groups[0].keys()
    assert type(opt2.param_groups[0]["lr"]) is float


def test_state_dict_is_flat_numpy():
    ours, _ = make_params()
    opt = AdamW(ours)
    opt.step()
    state = opt.state_dict()
    assert all(isinstance(k, str) and isinstance(v, np.ndarray) for k, v in state.items())
    assert state["state.2.exp_avg"].shape == SHAPES[2]
    assert state["param_groups.0.betas"].tolist() == [0.9, 0.999]


def test_loading_into_differently_grouped_params_is_an_error():
    ours, _ = make_params()
    state = SGD(ours, lr=0.1).state_dict()
    with pytest.raises(ValueError, match="parameter groups"):
        SGD([{"params": ours[:1]}, {"params": ours[1:]}], lr=0.1).load_state_dict(state)


def test_a_bad_state_dict_changes_nothing():
    ours, _ = make_params()
    opt = SGD(ours, lr=0.1, momentum=0.9)
    opt.step()
    state = opt.state_dict()
    state["param_groups.0.lr"] = np.asarray(0.5)
    state["state.2.momentum_buffer"] = np.zeros((9, 9))
    with pytest.raises(ValueError, match=r"state\.2\.momentum_buffer has shape \(9, 9\)"):
        opt.load_state_dict(state)
    assert opt.param_groups[0]["lr"] == 0.1
    with pytest.raises(ValueError, match="unexpected key 'extra'"):
        opt.load_state_dict({**opt.state_dict(), "extra": np.zeros(1)})


def test_no_decay_groups_hold_biases_and_norm_parameters():
    named = [("conv1.weight", Parameter(np.zeros((4, 3, 3, 3)))),
             ("bn1.weight", Parameter(np.ones(4))), ("bn1.bias", Parameter(np.zeros(4))),
             ("fc.weight", Parameter(np.zeros((10, 4)))), ("fc.bias", Parameter(np.zeros(10)))]
    decay, no_decay = param_groups_no_decay(named, weight_decay=5e-4)
    assert decay["weight_decay"] == 5e-4 and no_decay["weight_decay"] == 0.0
    assert decay["params"] == [named[0][1], named[3][1]]
    assert no_decay["params"] == [named[1][1], named[2][1], named[4][1]]
    SGD([decay, no_decay], lr=0.1)


# ----- schedules -----------------------------------------------------------------------
def lr_sequences(make_ours, make_theirs, steps, lrs=(0.1, 0.02)):
    """Each scheduler's lrs (both groups) at steps 0..steps-1."""
    params = [Parameter(np.zeros(1)) for _ in lrs]
    tensors = [torch.zeros(1, requires_grad=True) for _ in lrs]
    opt = SGD([{"params": [p], "lr": lr} for p, lr in zip(params, lrs, strict=True)], lr=0.1)
    topt = torch.optim.SGD([{"params": [t], "lr": lr}
                            for t, lr in zip(tensors, lrs, strict=True)], lr=0.1)
    ours, theirs = make_ours(opt), make_theirs(topt)
    got, expected = [], []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch: "step() before optimizer.step()", "epoch"
        for _ in range(steps):
            got.append(ours.get_last_lr())
            expected.append(theirs.get_last_lr())
            assert [g["lr"] for g in opt.param_groups] == got[-1]
            topt.step()
            ours.step()
            theirs.step()
    return np.array(got), np.array(expected)


SCHEDULES = {
    "StepLR": (lambda o: StepLR(o, step_size=7, gamma=0.5),
               lambda o: torch.optim.lr_scheduler.StepLR(o, step_size=7, gamma=0.5)),
    "MultiStepLR": (lambda o: MultiStepLR(o, [12, 5, 12, 20], gamma=0.3),
                    lambda o: torch.optim.lr_scheduler.MultiStepLR(o, [12, 5, 12, 20], 0.3)),
    "LinearLR": (lambda o: LinearLR(o, start_factor=0.1, end_factor=0.9, total_iters=10),
                 lambda o: torch.optim.lr_scheduler.LinearLR(o, 0.1, 0.9, total_iters=10)),
    "LinearLR-defaults": (lambda o: LinearLR(o), torch.optim.lr_scheduler.LinearLR),
    "CosineAnnealingLR": (lambda o: CosineAnnealingLR(o, T_max=10, eta_min=1e-3),
                          lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, 10, 1e-3)),
}


@pytest.mark.parametrize("name", SCHEDULES)
def test_schedule_matches_torch(name):
    got, expected = lr_sequences(*SCHEDULES[name], steps=35)
    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-15)


@pytest.mark.parametrize("warmup", [0, 1, 5])
def test_warmup_cosine_matches_torch_sequential_lr(warmup):
    total, min_lr = 25, 1e-3

    def ours(o):
        return WarmupCosine(o, warmup_steps=warmup, total_steps=total, min_lr=min_lr)

    def theirs(o):
        if warmup == 0:
            return torch.optim.lr_scheduler.CosineAnnealingLR(o, total, min_lr)
        linear = torch.optim.lr_scheduler.LinearLR(o, 1e-3, 1.0, total_iters=warmup)
        cosine = torch.optim.lr_scheduler.CosineAnnealingLR(o, total - warmup, min_lr)
        return torch.optim.lr_scheduler.SequentialLR(o, [linear, cosine], milestones=[warmup])

    got, expected = lr_sequences(ours, theirs, steps=total + 1)
    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-15)
    assert got[warmup, 0] == pytest.approx(0.1) and got[total, 0] == pytest.approx(min_lr)


def test_warmup_cosine_stays_at_min_lr_after_total_steps():
    opt = SGD([Parameter(np.zeros(1))], lr=0.1)
    sched = WarmupCosine(opt, warmup_steps=3, total_steps=10, min_lr=0.01)
    assert sched.get_last_lr() == [pytest.approx(0.1 * 1e-3)]
    for _ in range(15):
        sched.step()
    assert sched.get_last_lr() == [0.01]
