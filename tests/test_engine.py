"""The textbook and the engine, apart: which code runs, and a layout whose arrows point one way.

The engine (numpy_resnet/engine) answers a layer's call only in place of the exact code its
twin was written for; anything a user or student puts in its place runs as written. The
textbook (nn/, blocks.py, shortcuts.py, models.py) holds no fast path, and the imports of the
package form no cycle: engine -> textbook, engine -> kernels, never back.
"""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest

from numpy_resnet import get_engine, nn, use_engine
from numpy_resnet.blocks import BasicBlock
from numpy_resnet.engine.dispatch import records
from numpy_resnet.models import cifar_resnet

PACKAGE = Path(__file__).resolve().parents[1] / "numpy_resnet"
TEXTBOOK = sorted((PACKAGE / "nn").glob("*.py")) + [PACKAGE / f for f in
                                                     ("blocks.py", "shortcuts.py", "models.py")]


def x_like(shape=(2, 3, 6, 6), seed=0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


# ----- which code runs ------------------------------------------------------------------------
HANDOUT = (PACKAGE.parent / "ASSIGNMENT.md").exists()       # a student's copy: reference by default


@pytest.mark.skipif(HANDOUT, reason="a handout runs the reference engine by default")
def test_a_fresh_process_runs_the_fast_engine_by_default():
    import subprocess
    import sys
    code = "import numpy_resnet; print(numpy_resnet.get_engine())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "fast"


def test_the_fast_engines_twin_runs():
    assert get_engine() == "fast"
    conv = nn.Conv2d(3, 4, 3, padding=1)
    conv(x_like())
    assert conv in records and conv.cache is None      # the twin's record, not the layer's cache


def test_the_reference_engine_runs_the_layers_own_code():
    conv = nn.Conv2d(3, 4, 3, padding=1)
    with use_engine("reference"):
        conv(x_like())
    assert conv not in records and conv.cache is not None


def test_use_engine_sets_the_engine_at_once_and_a_with_block_restores_it():
    use_engine("reference")
    try:
        assert get_engine() == "reference"
        with use_engine("fast"):
            assert get_engine() == "fast"
        assert get_engine() == "reference"
    finally:
        use_engine("fast")


@pytest.mark.parametrize("method", ["forward", "backward"])
def test_a_subclass_that_overrides_a_method_runs_its_own_code(method):
    calls = []

    class Watched(nn.BatchNorm2d):
        pass

    def override(self, *args):
        calls.append(method)
        return getattr(nn.BatchNorm2d, method)(self, *args)

    setattr(Watched, method, override)
    bn = Watched(3)
    y = bn(x_like())
    bn.backward(np.ones_like(y))
    assert calls == [method] and bn not in records and bn.cache is not None


def test_an_instance_attribute_forward_or_backward_runs_that_code():
    relu = nn.ReLU()
    relu.forward = lambda x: x * 2                      # a student's or a recorder's own
    np.testing.assert_array_equal(relu(x_like()), x_like() * 2)
    bn = nn.BatchNorm2d(3)
    bn.backward = lambda dy: dy * 0
    y = bn(x_like())
    assert bn not in records                            # its forward too is the layer's own
    assert not bn.backward(np.ones_like(y)).any()


def test_a_method_patched_on_the_class_runs_instead_of_the_twin(monkeypatch):
    original = nn.ReLU.backward
    monkeypatch.setattr(nn.ReLU, "backward", lambda self, dy: original(self, dy) * 3)
    relu = nn.ReLU()
    x = x_like()
    y = relu(x)
    np.testing.assert_array_equal(relu.backward(np.ones_like(y)), 3.0 * (x > 0))
    assert relu not in records


def test_hooks_run_around_a_layers_twin_and_see_the_same_numbers_as_on_the_reference():
    seen = {}
    x = x_like().astype(np.float64)
    for engine in ("reference", "fast"):
        bn = nn.BatchNorm2d(3).to(np.float64)
        bn.register_forward_hook(lambda m, args, y, e=engine: seen.setdefault(e, []).append(y.copy()))
        bn.register_full_backward_hook(lambda m, gi, go, e=engine: seen[e].append(gi[0].copy()))
        with use_engine(engine):
            y = bn(x)
            bn.backward(np.cos(y))
        assert (bn in records) == (engine == "fast")
    for ours, reference in zip(seen["fast"], seen["reference"], strict=True):
        np.testing.assert_allclose(ours, reference, rtol=1e-12, atol=1e-12)


def test_a_backward_gradient_of_the_wrong_shape_is_an_error_not_a_read_past_the_buffer():
    for layer in (nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(1)):
        y = layer(x_like((2, 4, 8, 8)))
        with pytest.raises(ValueError, match=r"expected a gradient shaped like the forward's output, "
                                             r"\(2, 4, 8, 8\), got \(1, 4, 8, 8\)"):
            layer.backward(np.ones((1, 4, 8, 8), np.float32))
        assert y.shape == (2, 4, 8, 8)


def test_a_model_gives_the_same_numbers_on_both_engines_in_train_and_eval():
    model = cifar_resnet(8, width=8).to(np.float64)
    state = model.state_dict()
    x = np.random.default_rng(1).standard_normal((3, 3, 12, 12))
    results = {}
    for engine in ("reference", "fast"):
        model.load_state_dict(state)
        model.zero_grad()
        with use_engine(engine):
            y_train = model.train()(x)
            dx = model.backward(np.sin(y_train))
            y_eval = model.eval()(x)
        results[engine] = [y_train, dx, y_eval] + [p.grad.copy() for p in model.parameters()]
        assert (model in records) == (engine == "fast")
    for ours, reference in zip(results["fast"], results["reference"], strict=True):
        np.testing.assert_allclose(ours, reference, rtol=1e-10, atol=1e-12)


def test_a_block_with_a_hooked_layer_runs_its_own_code_so_the_hook_sees_every_call():
    block = BasicBlock(4, 4)
    calls = []
    block.relu1.register_full_backward_hook(lambda m, gi, go: calls.append(go[0].shape))
    y = block(x_like((2, 4, 5, 5)))
    block.backward(np.ones_like(y))
    assert block not in records and calls == [(2, 4, 5, 5)]


# ----- the layout: no fast path in the textbook, arrows one way, no cycles ----------------------
def imports_of(path: Path) -> set[str]:
    """Every module `path` imports, anywhere in it, as an absolute dotted name."""
    package = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if path.name == "__init__.py":
        package += ".__init__"
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[:-node.level]
                base = ".".join(parent + ([base] if base else []))
            names.add(base)
            names |= {f"{base}.{alias.name}" for alias in node.names}
    return names


def package_modules() -> dict[str, Path]:
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


def test_the_textbook_imports_neither_the_engine_nor_a_fast_kernel():
    fast = ("numpy_resnet.engine", "numba", "numpy_resnet.kernels.conv_nhwc", "numpy_resnet.kernels.winograd",
            "numpy_resnet.kernels.batchnorm_nhwc", "numpy_resnet.kernels.elementwise",
            "numpy_resnet.kernels.im2col_numba", "numpy_resnet.kernels.threads")
    for path in TEXTBOOK:
        bad = sorted(name for name in imports_of(path) if name.startswith(fast))
        assert not bad, f"{path.name} imports {bad}"


def test_the_textbook_has_no_fast_path_names_and_no_assignment_directives():
    names = {"fast_path", "_FAST", "workspace", "conv_bn_relu", "bn_relu_backward", "fused",
             "_cols_buffer", "_backward_fast", "_forward_fast", "_sum_folds", "use_backend"}
    for path in TEXTBOOK:
        text = path.read_text()
        assert "WHEN STUBBED" not in text, path.name
        used = {n.id for n in ast.walk(ast.parse(text)) if isinstance(n, ast.Name)}
        used |= {n.attr for n in ast.walk(ast.parse(text)) if isinstance(n, ast.Attribute)}
        used |= {n.name for n in ast.walk(ast.parse(text)) if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
        assert not used & names, f"{path.name} uses {sorted(used & names)}"


def test_the_kernels_import_nothing_of_the_layers_or_the_engine():
    for path in (PACKAGE / "kernels").glob("*.py"):
        inside = {n for n in imports_of(path) if n.startswith("numpy_resnet.")}
        bad = sorted(n for n in inside if not n.startswith("numpy_resnet.kernels"))
        assert not bad, f"kernels/{path.name} imports {bad}"


def test_the_package_has_no_import_cycle():
    modules = package_modules()
    graph = {}
    for name, path in modules.items():
        targets = set()
        for imported in imports_of(path):
            while imported and imported not in modules:    # `from .x import f`: module x
                imported = imported.rpartition(".")[0]
            if imported and imported != name and not name.startswith(imported + "."):
                targets.add(imported)                      # a package's own __init__ is its parent
        graph[name] = targets
    for name in graph:                                     # not a parent package's re-exports
        graph[name] = {t for t in graph[name] if not (modules[t].name == "__init__.py"
                                                      and name.startswith(t + "."))}

    def cycle_from(start):
        stack, seen = [(start, [start])], set()
        while stack:
            node, path = stack.pop()
            for nxt in graph[node]:
                if nxt == start:
                    return path + [nxt]
                if nxt not in seen:
                    seen.add(nxt)
                    stack.append((nxt, path + [nxt]))
        return None

    cycles = [c for c in map(cycle_from, graph) if c]
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles[:5])


def test_no_module_shadows_the_standard_library():
    import sys
    ours = {path.stem for path in PACKAGE.rglob("*.py")} | {p.name for p in PACKAGE.rglob("*") if p.is_dir()}
    assert not ours & set(sys.stdlib_module_names) - {"__init__", "__main__"}
