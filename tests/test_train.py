"""Training: a short run learns, resume is exact, interruptions and divergence are handled."""

import json

import numpy as np
import pytest

from numpy_resnet import cli, get_engine, serialization
from numpy_resnet.checkpoint import read_checkpoint
from numpy_resnet.data import load_cifar10
from numpy_resnet.models import MODEL_NAMES, get_model
from numpy_resnet.train import TrainConfig, fit


@pytest.fixture(scope="module")
def small_data(cifar_dir):
    return load_cifar10(cifar_dir, train_size=300, test_size=200, seed=0)


def tiny_config(tmp_path, name="run", **overrides):
    settings = dict(model="resnet18", width=4, epochs=2, batch_size=50, lr=0.05, warmup_epochs=1,
                    seed=3, out=str(tmp_path / name))
    settings.update(overrides)
    return TrainConfig(**settings)


def test_fit_writes_metrics_and_a_loadable_checkpoint(tmp_path, small_data):
    config = tiny_config(tmp_path)
    history = fit(config, data=small_data, progress=False, log=lambda *a: None)
    assert [e.epoch for e in history.epochs] == [1, 2]
    out = tmp_path / "run"
    rows = (out / "metrics.csv").read_text().splitlines()
    assert rows[0].startswith("epoch,train_loss,train_acc,test_loss,test_acc") and len(rows) == 3
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["config"]["width"] == 4 and len(saved["history"]) == 2
    state, meta = read_checkpoint(out)
    assert meta["epoch"] == 2 and "model.fc.weight" in state and "optim.param_groups.0.lr" in state
    assert not list(out.glob("*.tmp")), "atomic writes leave no temporary files"


def test_resume_gives_exactly_the_uninterrupted_result(tmp_path, small_data):
    quiet = dict(data=small_data, progress=False, log=lambda *a: None)
    straight = fit(tiny_config(tmp_path, "straight", epochs=3), **quiet)
    # the same run, stopped by a Ctrl-C at its second epoch's log line, before that epoch is saved
    config = tiny_config(tmp_path, "resumed", epochs=3)
    def interrupt_in_second_epoch(message):
        if message.startswith("epoch   2/"):
            raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        fit(config, **{**quiet, "log": interrupt_in_second_epoch})
    _, meta = read_checkpoint(tmp_path / "resumed")
    assert meta["epoch"] == 1
    resumed = fit(TrainConfig(out=str(tmp_path / "resumed")), data=small_data, resume=True,
                  progress=False, log=lambda *a: None)
    for a, b in zip(straight.epochs, resumed.epochs, strict=True):
        assert a.train_loss == b.train_loss and a.test_acc == b.test_acc


def test_ctrl_c_inside_an_epoch_leaves_the_last_checkpoint_valid(tmp_path, small_data, monkeypatch):
    import numpy_resnet.train as train_module
    config = tiny_config(tmp_path, "ctrlc", epochs=2)
    fit(tiny_config(tmp_path, "ctrlc", epochs=1), data=small_data, progress=False, log=lambda *a: None)
    before = (tmp_path / "ctrlc" / "checkpoint.npz").read_bytes()

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(train_module, "train_one_epoch", interrupted)
    with pytest.raises(KeyboardInterrupt):
        fit(config, data=small_data, resume=False, progress=False, log=lambda *a: None)
    assert (tmp_path / "ctrlc" / "checkpoint.npz").read_bytes() == before
    _, meta = read_checkpoint(tmp_path / "ctrlc")
    assert meta["epoch"] == 1


def test_a_diverging_run_stops_with_a_clear_message(tmp_path, small_data):
    config = tiny_config(tmp_path, "nan", lr=1e12, warmup_epochs=0, epochs=1)
    with pytest.raises(FloatingPointError, match="training diverged"):
        fit(config, data=small_data, progress=False, log=lambda *a: None)


def test_short_training_run_beats_chance_clearly(tmp_path, cifar_dir):
    data = load_cifar10(cifar_dir, train_size=1000, test_size=500, seed=0)
    config = tiny_config(tmp_path, "learn", width=8, epochs=4, batch_size=64, lr=0.1)
    history = fit(config, data=data, progress=False, log=lambda *a: None)
    assert history.epochs[-1].train_loss < history.epochs[0].train_loss
    assert history.epochs[-1].test_acc > 0.25, history.epochs


def test_cli_train_evaluate_and_plot(tmp_path, cifar_dir, capsys):
    run = tmp_path / "cli"
    code = cli.main(["train", "--width", "4", "--epochs", "1", "--train-size", "100",
                     "--test-size", "50", "--batch-size", "50", "--out", str(run),
                     "--data-dir", str(cifar_dir), "--no-progress"])
    assert code == 0
    assert cli.main(["evaluate", str(run), "--data-dir", str(cifar_dir), "--test-size", "50"]) == 0
    text = capsys.readouterr().out
    assert "confusion matrix" in text and "airplane" in text
    png = tmp_path / "curves.png"
    assert cli.main(["plot", str(run), "-o", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 1000


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_train_config_builds_every_registered_model(name):
    # each constructor gets only the arguments it takes: a CIFAR net has no `stem`
    model = get_model(name, **TrainConfig(model=name).model_kwargs())
    assert model.fc.out_features == 10


def test_cli_trains_a_cifar_net_named_cifar_resnet20(tmp_path, cifar_dir):
    run = tmp_path / "cifar_resnet20"
    code = cli.main(["train", "--model", "cifar_resnet20", "--epochs", "1", "--train-size", "20",
                     "--test-size", "20", "--batch-size", "10", "--out", str(run),
                     "--data-dir", str(cifar_dir), "--no-progress"])
    assert code == 0
    saved = json.loads((run / "metrics.json").read_text())
    assert saved["config"]["model"] == "cifar_resnet20" and len(saved["history"]) == 1


def test_cli_train_on_the_reference_engine_says_so_and_records_it(tmp_path, cifar_dir, capsys):
    run = tmp_path / "reference"
    code = cli.main(["train", "--engine", "reference", "--model", "resnet20", "--epochs", "1",
                     "--train-size", "20", "--test-size", "20", "--batch-size", "10",
                     "--out", str(run), "--data-dir", str(cifar_dir), "--no-progress"])
    assert code == 0
    opening = capsys.readouterr().out.splitlines()[0]
    assert "reference engine" in opening, opening
    rows = json.loads((run / "metrics.json").read_text())["history"]
    assert [row["engine"] for row in rows] == ["reference"]
    assert "engine" in (run / "metrics.csv").read_text().splitlines()[0]
    assert get_engine() == "fast", "the command restores the engine it found"


def test_a_run_saved_without_engine_records_resumes_and_records_from_then_on(tmp_path, small_data):
    def stop_at_the_second_epoch(message):
        if message.startswith("epoch   2/"):
            raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        fit(tiny_config(tmp_path, "old", epochs=2), data=small_data, progress=False,
            log=stop_at_the_second_epoch)
    # rewrite the checkpoint as a run whose epoch rows kept no "engine"
    checkpoint = tmp_path / "old" / "checkpoint.npz"
    state = serialization.load(checkpoint)
    meta = json.loads(str(state["meta"]))
    for row in meta["history"]:
        del row["engine"]
    state["meta"] = np.array(json.dumps(meta))
    serialization.save(state, checkpoint)

    history = fit(TrainConfig(out=str(tmp_path / "old")), data=small_data, resume=True,
                  progress=False, log=lambda *a: None)
    assert [e.engine for e in history.epochs] == [None, "fast"]
