"""Peak memory of one `quant calibrate` run against the number of samples in the data file.

Not a test. Each run is its own process (`python -m quant calibrate`, batch size 32, method minmax); the
peak RSS comes from the kernel (wait4's ru_maxrss). Data: N samples of 3x112x112 float32 in an .npz
written by np.savez (stored), np.savez_compressed (deflated), and the same samples stored one per key
(x_0000, x_0001, ...). `--baseline DIR` also runs the code of another checkout (e.g. the main branch) on
the same files. Writes benchmarks/results/data_memory.json and the "Data memory" section of RESULTS.md.

    python benchmarks/data_memory.py                       # 64, 512, 2048 samples (a few minutes here)
    python benchmarks/data_memory.py --baseline /work/main
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SHAPE = (3, 112, 112)
LAYOUTS = ("savez", "savez_compressed", "one key per sample")


def write_data(folder: Path, samples: int) -> dict[str, Path]:
    """Write the three files in a child process: a child's ru_maxrss starts from its parent's RSS at fork."""
    paths = {"savez": folder / f"stored_{samples}.npz", "savez_compressed": folder / f"deflated_{samples}.npz",
             "one key per sample": folder / f"keyed_{samples}.npz"}
    subprocess.run([sys.executable, __file__, "--write", str(samples), str(folder)], check=True)
    return paths


def _write(folder: Path, samples: int) -> None:
    rng = np.random.default_rng(0)
    data = rng.standard_normal((samples, *SHAPE), dtype=np.float32)
    paths = {"savez": folder / f"stored_{samples}.npz", "savez_compressed": folder / f"deflated_{samples}.npz",
             "one key per sample": folder / f"keyed_{samples}.npz"}
    np.savez(paths["savez"], x=data)
    np.savez_compressed(paths["savez_compressed"], x=data)
    np.savez(paths["one key per sample"], **{f"x_{i:05d}": data[i] for i in range(samples)})


def peak_rss_mb(code_root: Path, model: Path, data: Path, out: Path) -> float | None:
    """Peak RSS (MB) of `quant calibrate` run from ``code_root``; None when it failed."""
    env = dict(os.environ, PYTHONPATH=str(code_root))
    argv = [sys.executable, "-m", "quant", "calibrate", str(model), "--data", str(data), "--output", str(out),
            "--method", "minmax", "--batch-size", "32"]
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=code_root)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    error = proc.stderr.read().decode(errors="replace").strip().splitlines()
    proc.stderr.close()
    if proc.returncode != 0:
        print(f"  failed ({error[-1] if error else proc.returncode})", file=sys.stderr)
        return None
    return usage.ru_maxrss / 1024.0


def _revision(root: Path) -> str:
    proc = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    return proc.stdout.strip() or "?"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", default="64,512,2048")
    parser.add_argument("--baseline", type=Path, help="another checkout to compare (e.g. /work/main)")
    parser.add_argument("--write", nargs=2, metavar=("N", "DIR"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.write:
        return _write(Path(args.write[1]), int(args.write[0]))
    sys.path.insert(0, str(ROOT / "tests"))
    from models import dynamic_conv

    codes = {f"this branch {_revision(ROOT)}": ROOT}
    if args.baseline:
        codes[f"baseline {_revision(args.baseline)}"] = args.baseline.resolve()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = dynamic_conv(tmp / "model.onnx")
        for samples in (int(s) for s in args.samples.split(",")):
            paths = write_data(tmp, samples)
            for layout, path in paths.items():
                for code, root in codes.items():
                    mb = peak_rss_mb(root, model, path, tmp / f"out_{samples}_{len(rows)}")
                    rows.append({"samples": samples, "layout": layout, "code": code, "file_mb": path.stat().st_size / 2**20,
                                 "peak_rss_mb": mb})
                    print(f"{samples:>5} {layout:<20} {code:<12} file {rows[-1]['file_mb']:7.1f} MB  peak RSS "
                          f"{'failed' if mb is None else f'{mb:7.1f} MB'}", file=sys.stderr)
            for path in paths.values():
                path.unlink()
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "data_memory.json").write_text(json.dumps(rows, indent=1) + "\n")
    from results_md import write_section

    write_section("## Data memory", table(rows, list(codes)))


def table(rows: list[dict], codes: list[str]) -> str:
    samples = sorted({r["samples"] for r in rows})
    lines = ["## Data memory (benchmarks/data_memory.py)", "",
             f"Peak RSS of one `quant calibrate --method minmax --batch-size 32` process (kernel ru_maxrss) on N "
             f"samples of {'x'.join(map(str, SHAPE))} float32 (dynamic_conv test model). 'failed': the run exited "
             "with an error (before this branch, one key per sample was refused).", "",
             "| data | code | " + " | ".join(f"N={n}" for n in samples) + " |",
             "| --- | --- | " + " | ".join("---" for _ in samples) + " |"]
    for layout in LAYOUTS:
        for code in codes:
            cells = []
            for n in samples:
                row = next((r for r in rows if r["samples"] == n and r["layout"] == layout and r["code"] == code), None)
                value = None if row is None else row["peak_rss_mb"]
                cells.append("failed" if value is None else f"{value:.0f} MB")
            lines.append(f"| {layout} | {code} | " + " | ".join(cells) + " |")
    sizes = ", ".join(f"N={n}: {next(r['file_mb'] for r in rows if r['samples'] == n and r['layout'] == 'savez'):.0f} MB"
                      for n in samples)
    lines += ["", f"File sizes (savez): {sizes}."]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
