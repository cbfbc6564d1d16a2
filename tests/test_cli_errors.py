"""Every ordinary mistake on the command line is one line on stderr and exit status 2.

Each row of BAD is an invocation a user could type: a bad flag, a missing or spoiled file, a
flag that does not apply. The command must answer with exactly one line,
`numpy-resnet COMMAND: what was wrong`, naming the problem (the row's last field), exit with
status 2 and show no traceback. `--debug` or NUMPY_RESNET_DEBUG=1 shows the traceback; an
exception that is not a user's mistake (a bug) keeps its traceback.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from numpy_resnet import cli

# A tiny CIFAR run: an invocation that wrongly got through trains for a second, not an hour.
TINY = "--data-dir {data} --train-size 20 --test-size 10 --batch-size 10 --epochs 1 --no-progress"
NEW = f"train --model resnet20 --out {{tmp}}/new {TINY}"

# (name, the invocation, a fragment the one line must hold)
BAD = [
    # train: flags checked as they are parsed
    ("unknown model", "train --model resnet999 --out {tmp}/new", "'resnet999' is not a model"),
    ("epochs 0", f"{NEW} --epochs 0", "--epochs must be a positive integer"),
    ("epochs not a number", f"{NEW} --epochs 2.5", "--epochs must be a positive integer"),
    ("batch size 0", f"{NEW} --batch-size 0", "--batch-size must be a positive integer"),
    ("width 0", "train --model resnet18 --width 0 --out {tmp}/new", "--width must be a positive"),
    ("train size 0", f"{NEW} --train-size 0", "--train-size must be a positive count or 'all'"),
    ("negative test size", f"{NEW} --test-size -3", "--test-size must be a positive count"),
    ("negative lr", f"{NEW} --lr -1", "--lr must be a positive number"),
    ("lr nan", f"{NEW} --lr nan", "--lr must be a positive number"),
    ("negative weight decay", f"{NEW} --weight-decay -0.1", "--weight-decay must be 0 or"),
    ("negative warmup", f"{NEW} --warmup-epochs -1", "--warmup-epochs must be 0 or"),
    ("unknown stem", f"{NEW} --stem deep", "--stem invalid choice"),
    ("unknown flag", f"{NEW} --epoch-count 3", "unrecognized arguments: --epoch-count"),
    # train: flags that do not apply to the model (the config would drop them)
    ("stem for a CIFAR net", f"{NEW} --stem cifar", "--stem applies to the ImageNet-style nets"),
    ("width for a CIFAR net", f"{NEW} --width 8", "--width applies to the ImageNet-style nets"),
    ("shortcut for resnet18", "train --model resnet18 --shortcut A --out {tmp}/new",
     "--shortcut applies to the CIFAR nets"),
    ("shortcut for the default model", "train --shortcut B --out {tmp}/new",
     "not to resnet18"),
    # train: the data (the loader's checks)
    ("more training images than the files hold", f"{NEW} --train-size 999999", "999999"),
    ("data file size not a multiple of 3,073", f"train --model resnet20 --out {{tmp}}/new {TINY}"
     .replace("{data}", "{truncated_data}"), "not a multiple of 3073"),
    ("binary batches.meta.txt", f"train --model resnet20 --out {{tmp}}/new {TINY}"
     .replace("{data}", "{binary_meta_data}"), "batches.meta.txt"),
    ("missing data folder", f"train --model resnet20 --out {{tmp}}/new {TINY}"
     .replace("{data}", "{tmp}/no-such-data"), "no-such-data"),
    # train: the run folder
    ("out under a file", f"train --model resnet20 --out {{a_file}}/run {TINY}",
     "file.txt/run: Not a directory"),
    ("out is a file", f"train --model resnet20 --out {{a_file}} {TINY}", "is a file"),
    ("resume and force", "train --resume {run} --force", "choose one"),
    ("resume a missing folder", "train --resume {tmp}/no-such-run", "no such run folder"),
    ("resume a file", "train --resume {a_file}", "not a run folder"),
    ("resume a truncated checkpoint", "train --resume {truncated_run}", "checkpoint.npz"),
    ("resume a zero-byte checkpoint", "train --resume {empty_run}", "checkpoint.npz"),
    # train --resume: flags that would change the run's recipe, which resume keeps
    ("resume with another lr", "train --resume {run} --epochs 5 --lr 0.5", "--lr 0.5"),
    ("resume with another batch size and seed", "train --resume {run} --batch-size 3 --seed 7",
     "--batch-size 3 (the run has batch_size=10), --seed 7 (the run has seed=0)"),
    ("resume with another model", "train --resume {run} --model resnet32", "--model resnet32"),
    ("resume into another out", "train --resume {run} --out {tmp}/elsewhere", "--out"),
    ("resume to fewer epochs than trained", "train --resume {run} --epochs 1",
     "has trained 2 epochs already"),
    ("resume a CIFAR net with a stem", "train --resume {run} --stem cifar", "--stem applies"),
    # evaluate
    ("evaluate test size 0", "evaluate {run} --data-dir {data} --test-size 0",
     "--test-size must be a positive count"),
    ("evaluate a missing run", "evaluate {tmp}/no-such-run", "no-such-run"),
    ("evaluate a truncated checkpoint", "evaluate {truncated_run}", "checkpoint.npz"),
    ("evaluate a zero-byte checkpoint", "evaluate {empty_run}/checkpoint.npz", "checkpoint.npz"),
    ("evaluate a file that is no checkpoint", "evaluate {run}/metrics.json", "metrics.json"),
    ("evaluate on spoiled data", "evaluate {run} --data-dir {truncated_data}",
     "not a multiple of 3073"),
    # plot
    ("plot a missing run", "plot {tmp}/no-such-run -o {tmp}/curves.png", "no-such-run"),
    ("plot to an unknown extension", "plot {run} -o {tmp}/curves.xyz", "curves.xyz"),
    ("plot to a file with no extension", "plot {run} -o {tmp}/curves",
     "the extension names the image format"),
    ("plot a run whose metrics.json is not JSON", "plot {spoiled_metrics_run} -o {tmp}/c.png",
     "metrics.json"),
    # summary
    ("summary input 3x8", "summary resnet18 --input 3x8", "--input takes CxHxW"),
    ("summary input with a zero", "summary resnet18 --input 0x32x32", "--input takes CxHxW"),
    ("summary unknown model", "summary resnet999", "resnet999"),
    ("summary 0 classes", "summary resnet18 --num-classes 0", "--num-classes must be a positive"),
    # the other commands
    ("unknown command", "trian", "invalid choice: 'trian'"),
    ("gradcheck an unknown layer", "gradcheck nosuchlayer", "no layer matches ['nosuchlayer']"),
    ("gradcheck 0 checks", "gradcheck relu --max-checks 0", "--max-checks must be a positive"),
    ("bench width 0", "bench --width 0", "--width must be a positive integer"),
    ("gradflow batch size 0", "gradflow --batch-size 0", "--batch-size must be a positive"),
    ("gradflow a missing checkpoint", "gradflow --checkpoint {tmp}/no-such-run --data-dir {data}",
     "no-such-run"),
    ("experiment 0 epochs", "experiment degradation --epochs 0", "--epochs must be a positive"),
]


@pytest.fixture(scope="module")
def places(tmp_path_factory, cifar_dir) -> dict[str, str]:
    """The paths the invocations name: a finished 2-epoch run and spoiled copies of things."""
    root = tmp_path_factory.mktemp("cli_errors")
    run = root / "run"
    argv = f"train --model resnet20 --out {run} {TINY} --epochs 2".format(data=cifar_dir).split()
    assert cli.main(argv) == 0

    truncated_run, empty_run, spoiled_metrics_run = root / "truncated", root / "empty", root / "spoiled"
    for folder in (truncated_run, empty_run, spoiled_metrics_run):
        folder.mkdir()
    checkpoint = (run / "checkpoint.npz").read_bytes()
    (truncated_run / "checkpoint.npz").write_bytes(checkpoint[:len(checkpoint) // 2])
    (empty_run / "checkpoint.npz").write_bytes(b"")
    (spoiled_metrics_run / "metrics.json").write_text('{"config": {}, "history": [')

    truncated_data = _copy_of(cifar_dir, root / "truncated-data")
    with open(truncated_data / "data_batch_1.bin", "r+b") as f:
        f.truncate(f.seek(0, os.SEEK_END) - 5)
    binary_meta_data = _copy_of(cifar_dir, root / "binary-meta-data")
    (binary_meta_data / "batches.meta.txt").write_bytes(bytes(range(256)))

    a_file = root / "file.txt"
    a_file.write_text("not a folder\n")
    return {"tmp": str(root), "data": str(cifar_dir), "run": str(run),
            "truncated_run": str(truncated_run), "empty_run": str(empty_run),
            "spoiled_metrics_run": str(spoiled_metrics_run), "truncated_data": str(truncated_data),
            "binary_meta_data": str(binary_meta_data), "a_file": str(a_file)}


def _copy_of(data: Path, to: Path) -> Path:
    shutil.copytree(data, to)
    for path in [to, *to.iterdir()]:
        path.chmod(0o755 if path.is_dir() else 0o644)   # the shared subset is read-only
    return to


def _argv(invocation: str, places: dict) -> list[str]:
    return [token.format(**places) for token in invocation.split()]


def assert_one_clear_line(err: str, command: str, fragment: str) -> None:
    lines = err.strip().splitlines()
    assert "Traceback" not in err, err
    assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}:\n{err}"
    assert lines[0].startswith(f"numpy-resnet{command}: "), lines[0]
    assert fragment in lines[0], f"{fragment!r} not in {lines[0]!r}"


@pytest.mark.parametrize("name, invocation, fragment", BAD, ids=[row[0] for row in BAD])
def test_a_bad_invocation_is_one_line_and_status_2(name, invocation, fragment, places, capsys):
    argv = _argv(invocation, places)
    status = cli.main(argv)
    err = capsys.readouterr().err
    command = "" if name == "unknown command" else f" {argv[0]}"
    assert status == 2, f"exit status {status}, stderr:\n{err}"
    assert_one_clear_line(err, command, fragment)


def _run(*argv: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "numpy_resnet", *argv], capture_output=True,
                          text=True, timeout=300, env={**os.environ, **env})


@pytest.mark.parametrize("invocation, fragment", [
    (f"{NEW} --epochs 0", "--epochs must be a positive integer"),            # argparse
    ("train --resume {tmp}/no-such-run", "no such run folder"),             # the command
    (f"{NEW} --stem cifar", "--stem applies"),                              # the command
    ("evaluate {empty_run}", "checkpoint.npz"),                             # the library
    (f"train --model resnet20 --out {{tmp}}/new {TINY}".replace("{data}", "{truncated_data}"),
     "not a multiple of 3073"),                                             # the library
], ids=["parse", "resume", "stem", "checkpoint", "data"])
def test_no_traceback_reaches_the_terminal(invocation, fragment, places):
    argv = _argv(invocation, places)
    done = _run(*argv, NUMPY_RESNET_DEBUG="")
    assert done.returncode == 2, done.stderr
    assert_one_clear_line(done.stderr, f" {argv[0]}", fragment)


@pytest.mark.parametrize("where", ["--debug before the command", "--debug after it",
                                   "NUMPY_RESNET_DEBUG=1"])
def test_debug_shows_the_traceback(where, places):
    argv = ["train", "--resume", f"{places['tmp']}/no-such-run"]
    env = {"NUMPY_RESNET_DEBUG": ""}
    if where == "--debug before the command":
        argv.insert(0, "--debug")
    elif where == "--debug after it":
        argv.append("--debug")
    else:
        env["NUMPY_RESNET_DEBUG"] = "1"
    done = _run(*argv, **env)
    assert done.returncode == 1
    assert "Traceback" in done.stderr and "FileNotFoundError: --resume" in done.stderr


def test_a_bug_keeps_its_traceback(monkeypatch, places):
    def buggy(args):
        raise TypeError("a bug, not a user's mistake")
    monkeypatch.setattr(cli, "_cmd_plot", buggy)
    with pytest.raises(TypeError, match="a bug"):
        cli.main(["plot", places["run"]])


def test_ctrl_c_says_interrupted_and_exits_with_130(monkeypatch, places, capsys):
    def interrupted(args):
        raise KeyboardInterrupt
    monkeypatch.setattr(cli, "_cmd_plot", interrupted)
    assert cli.main(["plot", places["run"]]) == 130
    assert capsys.readouterr().err.strip() == "interrupted"


def test_resume_with_more_epochs_extends_the_run_and_says_how_the_lr_goes_on(places, tmp_path,
                                                                              capsys):
    run = shutil.copytree(places["run"], tmp_path / "run")
    assert cli.main(["train", "--resume", str(run), "--epochs", "3", "--no-progress"]) == 0
    opening = "\n".join(capsys.readouterr().out.splitlines()[:2])
    assert "after epoch 2" in opening and "lr schedule" in opening and "3 epochs" in opening, opening
    saved = json.loads((run / "metrics.json").read_text())
    assert saved["config"]["epochs"] == 3 and len(saved["history"]) == 3
    # the cosine reached 0 at the end of epoch 2 of 2; stretched to 3 epochs it has not
    assert saved["history"][-1]["lr"] > 0


def test_resume_accepts_flags_that_repeat_the_runs_recipe(places, tmp_path):
    run = shutil.copytree(places["run"], tmp_path / "run")
    argv = _argv(f"train --model resnet20 --out {run} --resume {run} {TINY} --epochs 2", places)
    assert cli.main(argv) == 0
    assert len(json.loads((run / "metrics.json").read_text())["history"]) == 2


def test_bad_invocations_cover_the_issue_and_are_counted():
    # the invocations issue 18 lists, each still in the table
    names = {row[0] for row in BAD}
    listed = {"unknown model", "epochs 0", "batch size 0", "width 0",
              "more training images than the files hold", "resume a missing folder",
              "resume a file", "evaluate test size 0", "plot a missing run",
              "plot to an unknown extension", "summary input 3x8", "resume a truncated checkpoint",
              "resume a zero-byte checkpoint", "evaluate a truncated checkpoint",
              "evaluate a zero-byte checkpoint", "data file size not a multiple of 3,073",
              "binary batches.meta.txt", "resume with another lr", "stem for a CIFAR net",
              "shortcut for resnet18", "out under a file"}
    assert listed <= names, listed - names
    assert len(BAD) == len(names)
