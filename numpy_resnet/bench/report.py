"""The text tables of `numpy-resnet bench`: format_report(run_bench(...))."""

from __future__ import annotations

import statistics

from .timing import CATEGORIES


def _num(value, spec: str, width: int) -> str:
    """A right-aligned number, or "-" where there is none (no backward in eval mode)."""
    return f"{'-' if value is None else format(value, spec):>{width}}"


def _forced_kernels_note(blas: str) -> list[str]:
    """A warning when the environment chose OpenBLAS's kernels (OPENBLAS_CORETYPE)."""
    if "OPENBLAS_CORETYPE=" not in blas:
        return []
    return ["note: OPENBLAS_CORETYPE is set, so NumPy's BLAS runs the kernels it names rather than",
            "      the best ones for this CPU (PyTorch's are not affected); to measure the CPU's own,",
            "      run: env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE numpy-resnet bench ..."]


def _header(report: dict) -> list[str]:
    c, m, t = report["config"], report["machine"], report["threads"]
    blas = m["blas"].get("name") or "BLAS"
    if m["blas"].get("version"):
        blas += f" {m['blas']['version']}"
    return [
        f"numpy-resnet bench: ResNet-18, CIFAR stem, {c['num_classes']} classes, width {c['width']}, "
        f"batch {c['batch_size']}, {c['dtype']}, 32x32 images"
        + (", inference only (--eval)" if c["eval_only"] else ""),
        f"engine: {report['engine']}",
        f"every time is the median of {c['steps']} runs after {c['warmup']} warm-up runs",
        f"threads: {t['requested']} requested; {t.get('workers', '?')} workers, Numba {t['numba']}; "
        f"BLAS: {t['blas']}",
        f"machine: {m['cpu_count']} CPUs ({m['cpu_model']}); Python {m['python']}, NumPy {m['numpy']} "
        f"({blas}), Numba {m['numba']} ({m['numba_threading_layer'] or '?'} threads), "
        f"torch {m['torch'] or 'not installed'}",
        *_forced_kernels_note(t["blas"]),
        "",
        f"ceiling: {report['ceiling']['size']}x{report['ceiling']['size']} float32 matmul through "
        f"NumPy: {report['ceiling']['gflops']:.1f} GFLOP/s ({report['ceiling']['ms']:.1f} ms, the "
        f"fastest run)",
    ]


def _torch_layers(report: dict) -> dict:
    """PyTorch's per-layer times by (label, input shape), if --vs-torch measured them."""
    rows = report.get("torch", {}).get("layers", [])
    return {(row["layer"], tuple(row["input"])): row for row in rows}


def _layer_table(report: dict) -> list[str]:
    torch_rows = _torch_layers(report)
    header = (f"{'layer':<22} {'input':<16} {'n':>2} {'fwd ms':>8} {'bwd ms':>8} {'fwd GF/s':>8} "
              f"{'bwd GF/s':>8} {'% ceil':>6} {'n x (fwd+bwd) ms':>16}")
    if torch_rows:
        header += f" {'torch ms':>9} {'speed':>6}"
    lines = ["", "each distinct layer alone (GF/s: GFLOP/s, FLOPs = 2·MACs, backward = 2x forward; "
                 "% ceil: forward / sgemm)"]
    if any(row.get("forward_route") == "winograd" for row in report["layers"]):
        lines.append("w: forward and backward by Winograd's F(2x2, 3x3) (kernels/winograd.py), 2.25x "
                     "fewer multiplications; its GF/s count the direct conv's FLOPs, so % ceil can pass 100")
    if torch_rows:
        lines.append("torch ms: PyTorch's n x (fwd+bwd) for the same layer and input; "
                     "speed: torch ms / ours (above 1: numpy-resnet is faster)")
    lines += [header, "-" * len(header)]
    torch_total = 0.0
    for row in report["layers"]:
        shape = "x".join(str(d) for d in row["input"])
        total = row["count"] * (row["forward_ms"] + (row["backward_ms"] or 0))
        name = row["layer"] + (" w" if row.get("forward_route") == "winograd" else "")
        line = (f"{name:<22} {shape:<16} {row['count']:>2} "
                f"{_num(row['forward_ms'], '.2f', 8)} {_num(row['backward_ms'], '.2f', 8)} "
                f"{_num(row['forward_gflops'], '.1f', 8)} {_num(row['backward_gflops'], '.1f', 8)} "
                f"{_num(row.get('forward_pct_ceiling'), '.0f', 6)} {total:>16.2f}")
        theirs = torch_rows.get((row["layer"], tuple(row["input"])))
        if theirs:
            torch_ms = row["count"] * (theirs["forward_ms"] + (theirs["backward_ms"] or 0))
            torch_total += torch_ms
            line += f" {torch_ms:>9.2f} {torch_ms / total:>6.2f}"
        lines.append(line)
    layers_ms = sum(row["count"] * (row["forward_ms"] + (row["backward_ms"] or 0))
                    for row in report["layers"])
    total_line = f"{'sum over the network':<92} {layers_ms:>16.2f}"
    if torch_rows:
        total_line += f" {torch_total:>9.2f} {torch_total / layers_ms:>6.2f}"
    lines += ["-" * len(header), total_line]
    return lines


def _network(report: dict) -> list[str]:
    batch = report["config"]["batch_size"]
    lines = ["", f"whole network, batch {batch}"]
    if "train" in report:
        lines.append(f"  training step (forward, loss, backward, SGD)  {report['train']['ms']:>9.1f} ms"
                     f"  {report['train']['images_per_s']:>8.1f} images/s")
    lines.append(f"  inference (eval mode, forward only)           {report['inference']['ms']:>9.1f} ms"
                 f"  {report['inference']['images_per_s']:>8.1f} images/s")
    what = "training step" if "train" in report else "inference forward"
    methods = "forward and backward" if "train" in report else "forward"
    lines += ["", f"share of the {what} by layer type (the median of {report['config']['steps']} "
                  f"runs with each layer's {methods} on a timer)"]
    if report["engine"] == "fast":
        lines.append("  (the timers keep each block from fusing conv -> BatchNorm -> ReLU: its layers "
                     "run one by one here)")
    lines.append(f"  {'type':<10} {'ms':>9} {'share':>7}")
    shares = report["shares"]
    for kind in CATEGORIES:
        lines.append(f"  {kind:<10} {shares[kind]['ms']:>9.1f} {100 * shares[kind]['share']:>6.1f}%")
    total_ms = sum(s["ms"] for s in shares.values())
    lines.append(f"  {'total':<10} {total_ms:>9.1f} {100 * sum(s['share'] for s in shares.values()):>6.1f}%")
    return lines


def _compile(report: dict) -> list[str]:
    if "compile" not in report:
        return []
    cold, cached = report["compile"]["from_scratch"], report["compile"]["cached"]
    return ["", f"first-run Numba cost ({report['compile']['method']})",
            f"  compiled from scratch (empty NUMBA_CACHE_DIR)  {cold['compile_s']:>7.2f} s   "
            f"{cold['kernels']} kernels, {cold['cache_misses']} cache misses",
            f"  loaded from that cache (next fresh process)    {cached['compile_s']:>7.2f} s   "
            f"{cached['cache_hits']} cache hits",
            f"  import numba                                   {cached['numba_import_s']:>7.2f} s"]


def _memory(report: dict) -> list[str]:
    memory = report["memory"]
    what = "training step" if "train" in report else "inference forward"
    return ["", f"peak memory of one {what}, fresh process, after a warm-up on 2 images "
                f"({memory['method']})",
            f"  numpy-resnet  {memory['step_mib']:>8.1f} MiB above the {memory['before_mib']:.1f} MiB "
            f"held before it"]


def _versus_torch(report: dict) -> list[str]:
    if "torch" not in report:
        return []
    ours, theirs, ratio = report, report["torch"], report["ratios"]
    same = ours["architecture"] == theirs["architecture"]
    lines = ["", f"numpy-resnet vs PyTorch {theirs['torch']}, torch.set_num_threads({theirs['threads']}), "
                 f"same batch and step; ratio = numpy-resnet / torch",
             f"  same network: {'yes' if same else 'NO'} (state_dict keys and shapes "
             f"{ours['architecture']['fingerprint']} vs {theirs['architecture']['fingerprint']}, "
             f"{ours['architecture']['parameters']:,} vs {theirs['architecture']['parameters']:,} "
             f"parameters)",
             "  PyTorch's malloc: " + ("numpy-resnet's glibc thresholds (--torch-same-malloc)"
                                      if theirs.get("same_malloc") else
                                      "as installed (--torch-same-malloc gives it numpy-resnet's)")]
    rounds = report.get("rounds")
    for key, label in (("train", "train step: "), ("inference", "inference:  ")):
        if key not in ratio:
            continue
        if rounds and key in rounds:
            r = rounds[key]
            ours_ips = [rounds["batch_size"] / (ms / 1e3) for ms in r["ours_ms"]]
            torch_ips = [rounds["batch_size"] / (ms / 1e3) for ms in r["torch_ms"]]
            lines.append(f"  {label} numpy-resnet {statistics.median(ours_ips):.1f} img/s, torch "
                         f"{statistics.median(torch_ips):.1f} img/s, ratio {ratio[key]:.3f} (median of "
                         f"{rounds['rounds']} rounds in turn: {', '.join(f'{q:.3f}' for q in r['ratios'])})")
        else:
            lines.append(f"  {label} numpy-resnet {ours[key]['images_per_s']:.1f} img/s, "
                         f"torch {theirs[key]['images_per_s']:.1f} img/s, ratio {ratio[key]:.3f}")
    if "memory" in ratio:
        lines.append(f"  peak memory: numpy-resnet {ours['memory']['step_mib']:.1f} MiB, "
                     f"torch {theirs['memory']['step_mib']:.1f} MiB, ratio {ratio['memory']:.2f}")
    return lines


def format_report(report: dict) -> str:
    """Aligned text tables: header, ceiling, layers, network, shares, compile, memory, torch."""
    lines = (_header(report) + _layer_table(report) + _network(report) + _compile(report)
             + _memory(report) + _versus_torch(report))
    return "\n".join(lines)
