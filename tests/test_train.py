"""Training: a short run learns, resume is exact, interruptions and divergence are handled."""

import errno
import json
import os
import re
import socket
import subprocess
import sys
import traceback

import numpy as np
import pytest

from numpy_resnet import cli, get_engine, get_num_threads, run_folder, serialization, set_num_threads
from numpy_resnet.checkpoint import read_checkpoint
from numpy_resnet.data import load_cifar10
from numpy_resnet.models import MODEL_NAMES, get_model
from numpy_resnet.train import EpochResult, History, TrainConfig, fit, write_metrics


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
    checkpoint = tmp_path / "ctrlc" / "checkpoint.npz"
    saved = {}
    real_epoch = train_module.train_one_epoch

    def interrupted_in_the_second_epoch(model, loader, criterion, optimizer, scheduler, epoch,
                                        progress):
        if epoch == 1:
            raise KeyboardInterrupt
        return real_epoch(model, loader, criterion, optimizer, scheduler, epoch, progress)
    monkeypatch.setattr(train_module, "train_one_epoch", interrupted_in_the_second_epoch)
    with pytest.raises(KeyboardInterrupt):
        fit(tiny_config(tmp_path, "ctrlc", epochs=2), data=small_data, progress=False,
            log=lambda *a: None,
            on_epoch_end=lambda epoch, model: saved.setdefault(epoch, checkpoint.read_bytes()))
    assert checkpoint.read_bytes() == saved[1]
    _, meta = read_checkpoint(tmp_path / "ctrlc")
    assert meta["epoch"] == 1
    assert not (tmp_path / "ctrlc" / ".lock").exists(), "Ctrl-C releases the run folder"


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


# ----- run folders: one owner, no silent overwrite, nothing stale or non-finite left ---------
@pytest.fixture(scope="module")
def tiny_data(cifar_dir):
    return load_cifar10(cifar_dir, train_size=40, test_size=20, seed=0)


def tiny_run(tmp_path, name="run", **overrides):
    return tiny_config(tmp_path, name, **{"epochs": 1, "batch_size": 20, **overrides})


class Log(list):
    """log= for fit that keeps every line."""

    def __call__(self, message):
        self.append(message)

    def text(self):
        return "\n".join(self)


def strict_json(text):
    """json.loads that rejects NaN, Infinity and -Infinity, as JSON itself does."""
    def reject(constant):
        raise ValueError(f"not JSON: {constant}")
    return json.loads(text, parse_constant=reject)


def dead_pid():
    """The pid of a process that was started, killed with SIGKILL and reaped."""
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    child.kill()
    child.wait()
    return child.pid


def test_a_second_run_into_a_folder_a_live_run_owns_is_refused(tmp_path, tiny_data):
    refusals = []

    def second_run_into_the_same_folder(epoch, model):
        for force in (False, True):
            with pytest.raises(FileExistsError) as refused:
                fit(tiny_run(tmp_path, seed=9), data=tiny_data, force=force, progress=False,
                    log=lambda *a: None)
            refusals.append(str(refused.value))
    fit(tiny_run(tmp_path, epochs=2), data=tiny_data, progress=False, log=lambda *a: None,
        on_epoch_end=second_run_into_the_same_folder)
    assert len(refusals) == 4
    for message in refusals:
        assert "\n" not in message and f"in use by process {os.getpid()}" in message, message
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert saved["config"]["seed"] == 3 and len(saved["history"]) == 2, "the owner's run, whole"
    assert read_checkpoint(tmp_path / "run")[1]["config"]["seed"] == 3
    assert not (tmp_path / "run" / ".lock").exists(), "the owner released the folder"


@pytest.mark.parametrize("holder, expected", [
    ("{pid} {host}", "in use by process {pid}, still running"),
    ("{pid} some-other-host", "in use by process {pid} on some-other-host"),
    ("", "names no process"),
])
def test_a_lock_that_may_be_live_is_not_taken_over(tmp_path, tiny_data, holder, expected):
    (tmp_path / "run").mkdir()
    lock = tmp_path / "run" / ".lock"
    text = holder.format(pid=os.getpid(), host=socket.gethostname())
    lock.write_text(text)
    with pytest.raises(FileExistsError, match=re.escape(expected.format(pid=os.getpid()))):
        fit(tiny_run(tmp_path), data=tiny_data, progress=False, log=lambda *a: None)
    assert lock.read_text() == text, "a refused run leaves the owner's lock alone"
    assert run_folder.run_files(tmp_path / "run") == []


def test_a_stale_lock_from_a_killed_run_is_taken_over_with_a_note(tmp_path, tiny_data):
    (tmp_path / "run").mkdir()
    pid = dead_pid()
    (tmp_path / "run" / ".lock").write_text(f"{pid} {socket.gethostname()}\n")
    log = Log()
    fit(tiny_run(tmp_path), data=tiny_data, progress=False, log=log)
    assert f"left by process {pid}, which has ended; taken over" in log.text()
    assert read_checkpoint(tmp_path / "run")[1]["epoch"] == 1
    assert not (tmp_path / "run" / ".lock").exists()
    assert not list((tmp_path / "run").glob(".lock*")), "no claim file left behind"


def test_taking_over_a_stale_lock_gives_back_a_live_one_that_replaced_it(tmp_path):
    lock = tmp_path / ".lock"
    stale = f"{dead_pid()} {socket.gethostname()}\n"
    live = f"{os.getpid()} {socket.gethostname()}\n"
    lock.write_text(live)               # another run took the stale lock over since we read it
    assert not run_folder._take_over(lock, stale)
    assert lock.read_text() == live and list(tmp_path.iterdir()) == [lock]


def test_a_run_folder_that_cannot_be_written_is_refused_in_one_line_at_once(tmp_path, tiny_data,
                                                                             monkeypatch):
    real_open = os.open

    def read_only_folder(path, flags, *args, **kwargs):
        if os.fspath(path).endswith(run_folder.LOCK_NAME):
            raise PermissionError(errno.EACCES, "Permission denied", os.fspath(path))
        return real_open(path, flags, *args, **kwargs)
    monkeypatch.setattr(os, "open", read_only_folder)
    (tmp_path / "run").mkdir()
    log = Log()
    with pytest.raises(PermissionError) as refused:
        fit(tiny_run(tmp_path), data=tiny_data, progress=False, log=log)
    assert str(refused.value) == f"cannot write in the run folder {tmp_path / 'run'}: Permission denied"
    assert refused.value.errno == errno.EACCES and log == [], "refused before training"
    assert refused.value.__cause__ is None and refused.value.__suppress_context__


def test_a_finished_run_is_not_overwritten_without_force(tmp_path, tiny_data, cifar_dir):
    run = tmp_path / "run"
    fit(tiny_run(tmp_path), data=tiny_data, progress=False, log=lambda *a: None)
    before = {name: (run / name).read_bytes() for name in run_folder.RUN_FILES}
    with pytest.raises(FileExistsError, match="already holds a run .*--resume.*--force") as refused:
        fit(tiny_run(tmp_path, seed=9), data=tiny_data, progress=False, log=lambda *a: None)
    assert "\n" not in str(refused.value)
    assert {name: (run / name).read_bytes() for name in run_folder.RUN_FILES} == before
    assert not (run / ".lock").exists(), "a refused run releases the folder"
    with pytest.raises(ValueError, match="choose one"):
        fit(TrainConfig(out=str(run)), data=tiny_data, resume=True, force=True)
    # --force starts it over: the new run's files replace the old run's, all of them
    code = cli.main(["train", "--width", "4", "--epochs", "1", "--train-size", "20",
                     "--test-size", "20", "--batch-size", "20", "--seed", "9", "--out", str(run),
                     "--data-dir", str(cifar_dir), "--no-progress", "--force"])
    assert code == 0
    for name in run_folder.RUN_FILES:
        assert (run / name).read_bytes() != before[name], name
    saved = json.loads((run / "metrics.json").read_text())
    assert saved["config"]["seed"] == 9 and read_checkpoint(run)[1]["config"]["seed"] == 9
    # the old run goes first: a forced run stopped before its first save leaves no run that
    # a --resume would take for its own
    def stop_in_the_first_epoch(message):
        if message.startswith("epoch   1/"):
            raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        fit(tiny_run(tmp_path, seed=5), data=tiny_data, force=True, progress=False,
            log=stop_in_the_first_epoch)
    assert run_folder.run_files(run) == []


def test_a_new_run_into_a_folder_without_a_run_starts_and_keeps_other_files(tmp_path, tiny_data):
    run = tmp_path / "run"
    (run / "gradflow").mkdir(parents=True)
    (run / "notes.txt").write_text("mine")
    fit(tiny_run(tmp_path), data=tiny_data, progress=False, log=lambda *a: None)
    assert (run / "notes.txt").read_text() == "mine" and (run / "gradflow").is_dir()


def test_a_run_folder_that_is_a_file_or_missing_is_refused_in_one_line(tmp_path, tiny_data):
    (tmp_path / "file").write_text("")
    with pytest.raises(NotADirectoryError, match="is a file"):
        fit(tiny_run(tmp_path, "file"), data=tiny_data, progress=False, log=lambda *a: None)
    with pytest.raises(NotADirectoryError, match="is a file"):
        fit(TrainConfig(out=str(tmp_path / "file")), data=tiny_data, resume=True)
    with pytest.raises(FileNotFoundError, match="no run folder at"):
        fit(TrainConfig(out=str(tmp_path / "missing")), data=tiny_data, resume=True)
    assert not (tmp_path / "missing").exists(), "resuming a missing run creates nothing"


@pytest.mark.parametrize("lag", ["rewound", "deleted", "csv only"])
def test_metrics_lagging_the_checkpoint_are_rewritten_on_resume(tmp_path, tiny_data, lag):
    run = tmp_path / "run"
    after_first = {}

    def keep_the_first_epochs_metrics(epoch, model):
        if epoch == 1:
            after_first.update({n: (run / n).read_bytes() for n in ("metrics.json", "metrics.csv")})
    fit(tiny_run(tmp_path, epochs=2), data=tiny_data, progress=False, log=lambda *a: None,
        on_epoch_end=keep_the_first_epochs_metrics)
    expected = {n: (run / n).read_bytes() for n in ("metrics.json", "metrics.csv")}
    # a kill between the checkpoint's write and the metrics' in the last epoch
    if lag == "rewound":
        for name, data in after_first.items():
            (run / name).write_bytes(data)
    elif lag == "deleted":
        for name in after_first:
            (run / name).unlink()
    else:
        (run / "metrics.csv").write_bytes(after_first["metrics.csv"])
    log = Log()
    history = fit(TrainConfig(out=str(run)), data=tiny_data, resume=True, progress=False, log=log)
    assert [e.epoch for e in history.epochs] == [1, 2] and "epoch   " not in log.text(), \
        "the run was finished: resume trains no epoch"
    assert {n: (run / n).read_bytes() for n in expected} == expected
    assert strict_json((run / "metrics.json").read_text())["history"] == \
        read_checkpoint(run)[1]["history"]


def test_a_diverging_run_keeps_a_finite_last_good_checkpoint_and_valid_json(tmp_path, tiny_data):
    run = tmp_path / "run"

    def diverge_after_the_first_save(epoch, model):
        # what --lr 1e6 does: the BatchNorm variances overflow while the loss is still finite
        if epoch == 1:
            model.bn1.running_var[:] = np.inf
    with pytest.raises(FloatingPointError, match=r"epoch 2 left inf or NaN in bn1\.running_var; "
                                                 r"training diverged .* keeps epoch 1") as stop:
        fit(tiny_run(tmp_path, epochs=3), data=tiny_data, progress=False, log=lambda *a: None,
            on_epoch_end=diverge_after_the_first_save)
    assert "\n" not in str(stop.value)
    state = serialization.load(run / "checkpoint.npz")
    meta = strict_json(str(state.pop("meta")))
    assert meta["epoch"] == 1
    assert all(np.isfinite(v).all() for v in state.values() if v.dtype.kind == "f")
    assert len(strict_json((run / "metrics.json").read_text())["history"]) == 1
    assert not (run / ".lock").exists()
    # and the last good epoch resumes
    history = fit(TrainConfig(out=str(run)), data=tiny_data, resume=True, progress=False,
                  log=lambda *a: None)
    assert [e.epoch for e in history.epochs] == [1, 2, 3]


def test_a_huge_learning_rate_saves_nothing_non_finite(tmp_path, tiny_data):
    # --lr 1e6: the loss stays finite for a while, the BatchNorm variances overflow first
    with pytest.raises(FloatingPointError, match=r"left inf or NaN in \S+running_var; training "
                                                 r"diverged and the epoch was not saved"):
        fit(tiny_run(tmp_path, lr=1e6, warmup_epochs=0, epochs=3), data=tiny_data,
            progress=False, log=lambda *a: None)
    run = tmp_path / "run"
    if (run / "checkpoint.npz").exists():
        state = serialization.load(run / "checkpoint.npz")
        strict_json(str(state.pop("meta")))
        assert all(np.isfinite(v).all() for v in state.values() if v.dtype.kind == "f")
        strict_json((run / "metrics.json").read_text())


def test_metrics_with_nan_or_inf_are_strict_json_with_null(tmp_path):
    history = History(TrainConfig(out=None))
    history.epochs.append(EpochResult(1, 2.5, 0.1, float("nan"), 0.1, 0.05, 1.0, np.float64(np.inf),
                                      "fast", 2))
    write_metrics(tmp_path, history)
    row = strict_json((tmp_path / "metrics.json").read_text())["history"][0]
    assert row["test_loss"] is None and row["images_per_second"] is None and row["train_loss"] == 2.5


def test_resume_refuses_a_checkpoint_holding_inf(tmp_path, tiny_data):
    run = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        fit(tiny_run(tmp_path, epochs=2), data=tiny_data, progress=False,
            log=stop_at_the_second_epoch)
    state = serialization.load(run / "checkpoint.npz")
    state["model.layer1.0.bn2.running_var"][:] = np.inf      # as saved by a diverged run
    serialization.save(state, run / "checkpoint.npz")
    with pytest.raises(ValueError, match=r"holds inf or NaN in layer1\.0\.bn2\.running_var.*--force"):
        fit(TrainConfig(out=str(run)), data=tiny_data, resume=True, progress=False,
            log=lambda *a: None)


def stop_at_the_second_epoch(message):
    if message.startswith("epoch   2/"):
        raise KeyboardInterrupt


@pytest.mark.parametrize("when", ["start", "resume"])
def test_stale_temporary_files_are_removed_when_a_run_starts_or_resumes(tmp_path, tiny_data, when):
    run = tmp_path / "run"
    if when == "resume":
        with pytest.raises(KeyboardInterrupt):
            fit(tiny_run(tmp_path, epochs=2), data=tiny_data, progress=False,
                log=stop_at_the_second_epoch)
    run.mkdir(exist_ok=True)
    ours = [run / ".checkpoint.npz.k3j9x_a2.tmp", run / ".metrics.json.0a1b2c3d.tmp",
            run / ".metrics.csv.zz9y8x7w.tmp"]
    others = [run / ".notes.txt.k3j9x_a2.tmp", run / "checkpoint.npz.tmp", run / "mine.tmp"]
    for path in ours + others:
        path.write_bytes(b"half a file")
    log = Log()
    fit(tiny_run(tmp_path, epochs=2), data=tiny_data, resume=when == "resume", progress=False,
        log=log)
    assert [path for path in ours if path.exists()] == []
    assert all(path.exists() for path in others), "only the run's own leftovers are removed"
    assert "removed 3 temporary file(s) left by an interrupted write" in log.text()


def test_temporary_files_are_kept_while_another_run_owns_the_folder(tmp_path, tiny_data):
    run = tmp_path / "run"
    run.mkdir()
    (run / ".lock").write_text(f"{os.getpid()} {socket.gethostname()}\n")
    writing = run / ".checkpoint.npz.k3j9x_a2.tmp"
    writing.write_bytes(b"being written")
    with pytest.raises(FileExistsError):
        fit(tiny_run(tmp_path), data=tiny_data, progress=False, log=lambda *a: None)
    assert writing.exists(), "the owner may still be writing it"


def test_a_resume_on_another_thread_count_says_results_may_differ(tmp_path, tiny_data):
    threads = get_num_threads()
    other = 2 if threads == 1 else 1
    run = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        fit(tiny_run(tmp_path, epochs=3), data=tiny_data, progress=False,
            log=stop_at_the_second_epoch)
    assert [row["threads"] for row in read_checkpoint(run)[1]["history"]] == [threads]
    same = Log()
    with pytest.raises(KeyboardInterrupt):
        fit(TrainConfig(out=str(run)), data=tiny_data, resume=True, progress=False,
            log=lambda message: (same(message), stop_at_the_second_epoch(message)))
    assert "thread" not in same.text()
    other_log = Log()
    set_num_threads(other)
    try:
        history = fit(TrainConfig(out=str(run)), data=tiny_data, resume=True, progress=False,
                      log=other_log)
    finally:
        set_num_threads(threads)
    notes = [line for line in other_log if "thread" in line]
    assert len(notes) == 1 and "last bits" in notes[0] and f"on {threads} thread" in notes[0], notes
    assert [e.threads for e in history.epochs] == [threads, other, other]
    assert "threads" in (run / "metrics.csv").read_text().splitlines()[0]


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full to fill a disk")
@pytest.mark.parametrize("failing", ["checkpoint", "metrics"])
def test_a_full_disk_raises_one_line_and_keeps_the_files(tmp_path, tiny_data, monkeypatch, failing):
    run = tmp_path / "run"
    real_fdopen = os.fdopen
    writes = []

    def disk_full_from_now(epoch, model):
        # from here on, each atomic write goes to /dev/full (ENOSPC) from the chosen file on
        def fdopen(fd, mode="r", *args, **kwargs):
            writes.append(fd)
            if len(writes) < (1 if failing == "checkpoint" else 2):
                return real_fdopen(fd, mode, *args, **kwargs)
            os.close(fd)
            return open("/dev/full", mode)
        monkeypatch.setattr(serialization.os, "fdopen", fdopen)
    kept = {}
    with pytest.raises(OSError) as full:
        fit(tiny_run(tmp_path, epochs=2), data=tiny_data, progress=False, log=lambda *a: None,
            on_epoch_end=lambda epoch, model: (kept.update(
                {n: (run / n).read_bytes() for n in run_folder.RUN_FILES}),
                disk_full_from_now(epoch, model)))
    monkeypatch.undo()
    message = str(full.value)
    assert full.value.errno == errno.ENOSPC and "No space left on device" in message
    assert "\n" not in message and full.value.__cause__ is None and full.value.__suppress_context__
    shown = "".join(traceback.format_exception(full.value))
    assert "During handling" not in shown and "direct cause" not in shown
    if failing == "checkpoint":
        assert message.startswith("could not save epoch 2 to ") and "keeps epoch 1" in message
        assert (run / "checkpoint.npz").read_bytes() == kept["checkpoint.npz"]
    else:
        assert "could not write the metrics of epoch 2" in message and "--resume" in message
        assert read_checkpoint(run)[1]["epoch"] == 2
    assert (run / "metrics.json").read_bytes() == kept["metrics.json"]
    assert not list(run.glob(".*.tmp")) and not (run / ".lock").exists()


def test_resume_with_more_epochs_extends_the_run_and_says_how_the_lr_goes_on(tmp_path, tiny_data):
    run = tmp_path / "run"
    fit(tiny_run(tmp_path, epochs=2), data=tiny_data, progress=False, log=lambda *a: None)
    with pytest.raises(ValueError, match="epochs=1, but .* has trained 2 epochs already"):
        fit(TrainConfig(out=str(run)), data=tiny_data, resume=True, epochs=1, progress=False,
            log=lambda *a: None)
    log = Log()
    history = fit(TrainConfig(out=str(run)), data=tiny_data, resume=True, epochs=3,
                  progress=False, log=log)
    assert [e.epoch for e in history.epochs] == [1, 2, 3]
    assert "now lasts 3 epochs, not 2" in log.text() and "epoch 3 starts at lr" in log.text()
    assert history.epochs[2].lr > 0, "the schedule was stretched, not ended"
    assert read_checkpoint(run)[1]["config"]["epochs"] == 3


def test_a_new_run_that_fails_before_saving_leaves_no_empty_folder(tmp_path):
    with pytest.raises(OSError):
        fit(tiny_run(tmp_path, "runs/new", data_dir=str(tmp_path / "no-data-here")),
            progress=False, log=lambda *a: None)
    assert not (tmp_path / "runs").exists()
