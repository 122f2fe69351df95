"""The output contract, line by line (README, "What quant guarantees"):

1. quant never deletes or overwrites a file it did not write, nor an input: the corpus
   (tests/bad_inputs/cases_io.py, test_bad_output_is_refused_and_every_user_file_is_byte_identical),
   test_rerun_replaces_only_what_quant_wrote, test_single_files_quant_wrote_are_replaced_others_need_force.
2. Files and folders get the permissions the umask gives: test_permissions_follow_the_umask.
3. Outputs are atomic, and what a killed run leaves is removed by the next one:
   test_os_errors_while_saving_a_folder_keep_the_old_output, test_os_errors_while_writing_a_file_keep_the_old_file,
   test_sighup_mid_save_exits_130_and_leaves_nothing, test_after_sigkill_mid_save_the_next_run_removes_what_was_left.
4. Concurrent runs into one output both end cleanly: test_concurrent_saves_in_threads_all_succeed_and_leave_nothing,
   test_concurrent_cli_runs_into_one_output_end_cleanly.
5. OS errors are one Error line and a Hint, exit code 2: the corpus (EISDIR, ENAMETOOLONG, ELOOP, NUL) and the
   in-process cases here (ENOSPC, EFBIG, EROFS, EDQUOT, EBUSY, a mount point, the last-resort handler).
"""
from __future__ import annotations

import errno
import hashlib
import json
import os
import signal
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest

import quant
from bad_inputs.cases_io import CASES, quant_output
from conftest import ROOT, run_cli
from quant.core.io import atomic_output_dir
from quant.core.ownership import MANIFEST, unproven


def snapshot(root: Path) -> dict[str, str]:
    """Every entry under ``root`` (hidden ones too): sha256 of files, link targets, 'dir' for folders."""
    out = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(folder) / name
            rel = str(path.relative_to(root))
            mode = os.lstat(path).st_mode
            if stat.S_ISLNK(mode):
                out[rel] = "link:" + os.readlink(path)
            elif stat.S_ISDIR(mode):
                out[rel] = "dir"
            else:
                out[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def one_error(stderr: str, message: str) -> None:
    assert "Traceback" not in stderr, stderr
    lines = stderr.strip().splitlines()
    assert lines and lines[0].startswith("Error: ") and message in lines[0], stderr
    assert len(lines) == 1 or (len(lines) == 2 and lines[1].startswith("Hint: ")), stderr


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_output_is_refused_and_every_user_file_is_byte_identical(case, tmp_path):
    argv = case.build(tmp_path)
    before = snapshot(tmp_path)
    proc = run_cli(argv)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout
    one_error(proc.stderr, case.error)
    assert snapshot(tmp_path) == before, "the refused run changed, removed or added files"


def _calibrate(digits, out, *extra):
    proc = run_cli(["calibrate", digits["model"], "--data", digits["calibration"], "--output", out, *extra])
    assert proc.returncode == 0, proc.stderr
    return proc


def test_rerun_replaces_only_what_quant_wrote(digits, tmp_path):
    """A rerun replaces a folder quant wrote, with the files quant added to it later (eval.json, the report,
    gate files): every one is in the manifest with its hash. Nothing is left beside it."""
    out = tmp_path / "R"
    _calibrate(digits, out, "--method", "minmax")
    assert run_cli(["eval", digits["model"], out / "model.int8.onnx", "--data", digits["heldout"],
                    "--output-json", out / "eval.json"]).returncode == 0
    assert run_cli(["gate", digits["model"], out / "model.int8.onnx", "--data", digits["heldout"], "--max-drop", "5",
                    "--json-out", out / "gate.json", "--junit", out / "gate.xml"]).returncode == 0
    proc = run_cli(["report", out])
    assert proc.returncode == 0, proc.stderr
    assert unproven(out) == []  # every entry, plots/ included, is proven quant's
    _calibrate(digits, out, "--method", "entropy")
    assert json.loads((out / "quant.json").read_text())["method"] == "entropy"
    assert sorted(p.name for p in out.iterdir()) == [MANIFEST, "calibration.cache", "histograms.npz",
                                                     "model.int8.onnx", "quant.json"]
    assert [p.name for p in tmp_path.iterdir()] == ["R"]  # no .R.tmp-*, no .R.old-*


def test_single_files_quant_wrote_are_replaced_others_need_force(digits, tmp_path):
    gate = ["gate", digits["model"], digits["model"], "--data", digits["heldout"], "--max-drop", "1"]
    for _ in range(2):  # quant recognizes its own JSON and XML (a generator marker inside) and replaces them
        proc = run_cli(gate + ["--json-out", tmp_path / "g.json", "--junit", tmp_path / "g.xml"])
        assert proc.returncode == 0, proc.stderr
    assert json.loads((tmp_path / "g.json").read_text())["generator"].startswith("quant ")
    assert "<!-- generator: quant" in (tmp_path / "g.xml").read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g.json", "g.xml"]  # no sidecar beside single files

    (tmp_path / "user.json").write_text('{"theirs": true}\n')
    proc = run_cli(gate + ["--json-out", tmp_path / "user.json"])
    one_error(proc.stderr, "exists and was not written by quant")
    assert (tmp_path / "user.json").read_text() == '{"theirs": true}\n'
    proc = run_cli(gate + ["--json-out", tmp_path / "user.json", "--force"])
    assert proc.returncode == 0 and json.loads((tmp_path / "user.json").read_text())["passed"] is True

    model = tmp_path / "m.onnx"
    model.write_bytes(digits["model"].read_bytes())
    proc = run_cli(["eval", model, digits["model"], "--data", digits["heldout"], "--output-json", model, "--force"])
    one_error(proc.stderr, "is the input")  # --force never overwrites an input
    assert model.read_bytes() == digits["model"].read_bytes()


def test_json_to_dev_stdout_is_written_directly(digits):
    proc = run_cli(["gate", digits["model"], digits["model"], "--data", digits["heldout"], "--max-drop", "1",
                    "--json-out", "/dev/stdout"])
    assert proc.returncode == 0, proc.stderr
    assert '"generator": "quant ' in proc.stdout and '"passed": true' in proc.stdout


def test_recalibrate_dot_names_the_output_after_the_folder(digits, tmp_path):
    quant.calibrate(digits["model"], digits["calibration"], methods=("minmax",)).save(tmp_path / "cal")
    proc = run_cli(["recalibrate", ".", "--method", "mse"], cwd=tmp_path / "cal")
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cal", "cal-mse"]
    assert json.loads((tmp_path / "cal-mse" / "quant.json").read_text())["method"] == "mse"


def test_a_long_valid_output_name_works(digits, tmp_path):
    """A 250-byte name is valid; the staging name beside it must not be longer than 255 bytes."""
    quant.calibrate(digits["model"], digits["calibration"], methods=("minmax",)).save(tmp_path / "cal")
    long = tmp_path / ("n" * 250)
    proc = run_cli(["recalibrate", tmp_path / "cal", "--method", "mse", "--output", long])
    assert proc.returncode == 0, proc.stderr
    assert (long / "model.int8.onnx").exists() and sorted(p.name for p in tmp_path.iterdir()) == ["cal", long.name]


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_permissions_follow_the_umask(digits, tmp_path, umask):
    """Files get 0666 & ~umask, folders 0777 & ~umask, as a plain open()/mkdir give (mkstemp gave 0600,
    mkdtemp 0700); a file quant replaces keeps its mode."""
    def run(*args):
        proc = subprocess.run([sys.executable, "-m", "quant", *map(str, args)], capture_output=True, text=True,
                              preexec_fn=lambda: os.umask(umask), timeout=600)
        assert proc.returncode == 0, proc.stderr

    out = tmp_path / "R"
    run("calibrate", digits["model"], "--data", digits["calibration"], "--method", "minmax,mse", "--output", out)
    int8 = out / "minmax" / "model.int8.onnx"
    run("eval", digits["model"], int8, "--data", digits["heldout"], "--output-json", out / "minmax" / "eval.json")
    run("gate", digits["model"], int8, "--data", digits["heldout"], "--max-drop", "5", "--json-out",
        tmp_path / "gate.json", "--junit", tmp_path / "new" / "gate.xml")
    run("report", out / "minmax", "--output", tmp_path / "site")
    paths = [p for p in tmp_path.rglob("*")]
    folders = [p for p in paths if p.is_dir()]
    assert {out, out / "minmax", out / "mse", tmp_path / "new", tmp_path / "site", tmp_path / "site" / "plots"} <= set(folders)
    assert len(paths) - len(folders) >= 20
    for path in paths:
        expected = (0o777 if path.is_dir() else 0o666) & ~umask
        assert stat.S_IMODE(path.stat().st_mode) == expected, (path, oct(path.stat().st_mode))
    os.chmod(tmp_path / "gate.json", 0o640)
    run("gate", digits["model"], int8, "--data", digits["heldout"], "--max-drop", "5", "--json-out", tmp_path / "gate.json")
    assert stat.S_IMODE((tmp_path / "gate.json").stat().st_mode) == 0o640


def test_concurrent_saves_in_threads_all_succeed_and_leave_nothing(tmp_path):
    """Eight saves into one output commit at the same instant: each ends cleanly, the last one wins."""
    writers, errors = 8, []
    barrier = threading.Barrier(writers)

    def save(index):
        try:
            with atomic_output_dir(tmp_path / "out") as staging:
                (staging / "who.txt").write_text(str(index))
                barrier.wait(timeout=60)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    for _ in range(3):
        threads = [threading.Thread(target=save, args=(i,)) for i in range(writers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        assert int((tmp_path / "out" / "who.txt").read_text()) in range(writers)
        assert unproven(tmp_path / "out") == [] and [p.name for p in tmp_path.iterdir()] == ["out"]


def test_concurrent_cli_runs_into_one_output_end_cleanly(digits, tmp_path):
    quant.calibrate(digits["model"], digits["calibration"], methods=("minmax",)).save(tmp_path / "cal")
    procs = [subprocess.Popen([sys.executable, "-m", "quant", "recalibrate", str(tmp_path / "cal"), "--method", method,
                               "--output", str(tmp_path / "out")], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for method in ("mse", "percentile", "entropy", "mse")]
    for proc in procs:
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0 or (proc.returncode == 2 and len(err.strip().splitlines()) <= 2), err
        assert "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cal", "out"]
    assert unproven(tmp_path / "out") == []
    assert json.loads((tmp_path / "out" / "quant.json").read_text())["method"] in ("mse", "percentile", "entropy")


KILLED_MID_SAVE = """
import os, signal, sys
from quant.backends.onnxruntime import OrtRunner
from quant.core.io import atomic_output_dir
runner = OrtRunner(sys.argv[1], mode="ort-int8")  # a quant-ort-* folder in $TMPDIR
with atomic_output_dir(sys.argv[2]) as staging:
    (staging / "model.int8.onnx").write_bytes(b"half a model")
    os.kill(os.getpid(), signal.SIGKILL)
"""

LIVE_SAVE = """
import sys
from quant.core.io import atomic_output_dir
with atomic_output_dir(sys.argv[1]) as staging:
    (staging / "a.txt").write_text("alive")
    print("staged", flush=True)
    sys.stdin.readline()
"""


def _quant_temp(tmp: Path) -> list[str]:
    """quant's entries in a temp folder (ONNX Runtime keeps a '.ses' file of its own there)."""
    return sorted(p.name for p in tmp.iterdir() if p.name.startswith("quant-"))


def _env(tmp):
    return dict(os.environ, TMPDIR=str(tmp), PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))


def test_after_sigkill_mid_save_the_next_run_removes_what_was_left(digits, tmp_path):
    """Staging folders and temp folders of a killed run are removed by the next run; those of a live run,
    and look-alikes that quant cannot prove are its own, stay."""
    tmp, work = tmp_path / "tmp", tmp_path / "work"
    tmp.mkdir(), work.mkdir()
    killed = subprocess.run([sys.executable, "-c", KILLED_MID_SAVE, str(digits["model"]), str(work / "R")],
                            env=_env(tmp), capture_output=True, text=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert [p.name.startswith(".R.tmp-") for p in work.iterdir()] == [True]
    assert [name.startswith("quant-ort-") for name in _quant_temp(tmp)] == [True]
    (work / ".R.tmp-mine").mkdir()  # a look-alike without quant's lock
    (work / ".R.tmp-mine" / "draft.txt").write_text("mine")
    (tmp / "quant-ort-mine").mkdir()
    (tmp / "quant-ort-mine" / "notes.txt").write_text("mine")
    old = quant_output(work, ".R.old-left")  # a replaced output a killed commit left: its manifest proves it
    assert unproven(old) == []
    live = subprocess.Popen([sys.executable, "-c", LIVE_SAVE, str(work / "L")], env=_env(tmp), stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert live.stdout.readline().strip() == "staged"
    keep = {k: v for k, v in snapshot(tmp_path).items() if "mine" in k or k.startswith("work/.L.tmp-")}

    proc = subprocess.run([sys.executable, "-m", "quant", "calibrate", str(digits["model"]), "--data",
                           str(digits["calibration"]), "--output", str(work / "R")], env=_env(tmp),
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    after = snapshot(tmp_path)
    assert {k: v for k, v in after.items() if k in keep} == keep  # the live run's and the user's: untouched
    assert sorted(p.name for p in work.iterdir() if not p.name.startswith(".L.tmp-")) == [".R.tmp-mine", "R"]
    assert _quant_temp(tmp) == ["quant-ort-mine"]
    live.communicate("go\n", timeout=60)
    assert live.returncode == 0 and (work / "L" / "a.txt").read_text() == "alive"


SIGHUP_MID_SAVE = """
import os, signal, sys
import quant.pipeline.calibration as calibration
real = calibration.save_histograms
def save_then_hang_up(*args):
    real(*args)
    os.kill(os.getpid(), signal.SIGHUP)  # the terminal closes while the artifacts are being written
calibration.save_histograms = save_then_hang_up
from quant.cli.main import main
sys.exit(main(sys.argv[1:]))
"""


def test_sighup_mid_save_exits_130_and_leaves_nothing(digits, tmp_path):
    tmp, work = tmp_path / "tmp", tmp_path / "work"
    tmp.mkdir(), work.mkdir()
    quant.calibrate(digits["model"], digits["calibration"], methods=("minmax",)).save(work / "R")
    before = snapshot(work)
    proc = subprocess.run([sys.executable, "-c", SIGHUP_MID_SAVE, "calibrate", str(digits["model"]), "--data",
                           str(digits["calibration"]), "--method", "mse", "--output", str(work / "R")], env=_env(tmp),
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 130 and "Interrupted" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert snapshot(work) == before and _quant_temp(tmp) == []  # the earlier output unchanged, no staging, no temp


@pytest.fixture
def tmpfs(tmp_path):
    """Mount a small tmpfs (needs root and mount(8); skipped elsewhere): real ENOSPC, EROFS, mount points."""
    import shutil

    mounted = []
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root")

    def mount(name, options):
        path = tmp_path / name
        path.mkdir()
        proc = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True)
        if proc.returncode:
            pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.decode().strip()}")
        mounted.append(path)
        return path
    yield mount
    for path in mounted:
        subprocess.run(["umount", str(path)], capture_output=True)


def test_real_full_disk_read_only_disk_and_mount_point(digits, tmp_path, tmpfs):
    full, read_only = tmpfs("full", "size=64k"), tmpfs("ro", "size=64k,ro")
    proc = run_cli(["calibrate", digits["model"], "--data", digits["calibration"], "--output", full / "out"])
    one_error(proc.stderr, "no space left on the device")
    assert list(full.iterdir()) == []  # the staging folder is gone with its half-written files
    proc = run_cli(["eval", digits["model"], digits["model"], "--data", digits["heldout"], "--num-samples", "20",
                    "--output-json", read_only / "eval.json"])
    one_error(proc.stderr, "read-only file system")
    proc = run_cli(["calibrate", digits["model"], "--data", digits["calibration"], "--output", full])
    one_error(proc.stderr, "is a mount point")


@pytest.fixture
def in_process(monkeypatch, capsys):
    """Run `quant ARGS` in this process (so OS calls can be made to fail); returns (exit code, stderr)."""
    from quant.cli.main import main

    monkeypatch.setattr(signal, "signal", lambda *args: None)  # leave pytest's own handlers alone

    def run(*args):
        code = main([str(a) for a in args])
        return code, capsys.readouterr().err
    return run


def _os_error(code):
    return OSError(code, os.strerror(code))


FOLDER_ERRORS = [(errno.ENOSPC, "no space left on the device"), (errno.EFBIG, "too large for its file system"),
                 (errno.EROFS, "read-only"), (errno.EDQUOT, "quota")]


@pytest.mark.parametrize("code,message", FOLDER_ERRORS, ids=[errno.errorcode[c] for c, _ in FOLDER_ERRORS])
def test_os_errors_while_saving_a_folder_keep_the_old_output(digits, tmp_path, in_process, monkeypatch, code, message):
    quant.calibrate(digits["model"], digits["calibration"], methods=("minmax",)).save(tmp_path / "cal")
    quant.calibrate(digits["model"], digits["calibration"], methods=("minmax",)).save(tmp_path / "R")
    before = snapshot(tmp_path)
    real = Path.write_text

    def failing(self, *args, **kwargs):
        if ".R.tmp-" in str(self):
            raise _os_error(code)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", failing)
    rc, err = in_process("recalibrate", tmp_path / "cal", "--method", "mse", "--output", tmp_path / "R")
    assert rc == 2
    one_error(err, message)
    assert f"'{tmp_path / 'R'}'" in err.splitlines()[0]  # the user's path, not the staging name
    assert snapshot(tmp_path) == before


FILE_ERRORS = [(errno.ENOSPC, "no space left on the device"), (errno.EFBIG, "too large for its file system"),
               (errno.EROFS, "read-only")]


@pytest.mark.parametrize("code,message", FILE_ERRORS, ids=[errno.errorcode[c] for c, _ in FILE_ERRORS])
def test_os_errors_while_writing_a_file_keep_the_old_file(digits, tmp_path, in_process, monkeypatch, code, message):
    args = ["gate", digits["model"], digits["model"], "--data", digits["heldout"], "--max-drop", "1",
            "--num-samples", "50", "--json-out", tmp_path / "gate.json"]
    assert in_process(*args)[0] == 0
    before = snapshot(tmp_path)
    real = os.write

    def failing(fd, data):
        if ".tmp-" in os.readlink(f"/proc/self/fd/{fd}"):
            raise _os_error(code)
        return real(fd, data)

    monkeypatch.setattr(os, "write", failing)
    rc, err = in_process(*args)
    assert rc == 2
    one_error(err, message)
    assert snapshot(tmp_path) == before  # the earlier gate.json intact, no temporary file left


def test_ebusy_and_mount_points_as_output(digits, tmp_path, in_process, monkeypatch):
    quant.calibrate(digits["model"], digits["calibration"], methods=("minmax",)).save(tmp_path / "cal")
    quant.calibrate(digits["model"], digits["calibration"], methods=("minmax",)).save(tmp_path / "R")
    before = snapshot(tmp_path)
    target = str(tmp_path / "R")
    real = os.rename

    def busy(src, dst, *args, **kwargs):
        if str(src) == target:
            raise _os_error(errno.EBUSY)
        return real(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "rename", busy)
    rc, err = in_process("recalibrate", tmp_path / "cal", "--method", "mse", "--output", tmp_path / "R")
    assert rc == 2
    one_error(err, "busy")
    assert snapshot(tmp_path) == before
    monkeypatch.setattr(os, "rename", real)
    monkeypatch.setattr(os.path, "ismount", lambda path: str(path) == target)
    rc, err = in_process("recalibrate", tmp_path / "cal", "--method", "mse", "--output", tmp_path / "R")
    assert rc == 2
    one_error(err, "is a mount point")
    assert snapshot(tmp_path) == before


def test_the_last_resort_handler_turns_any_os_error_into_one_line(tmp_path, in_process, monkeypatch):
    import quant.report

    def denied(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", "/srv/reports/plots")

    quant.calibrate(ROOT / "examples" / "digits" / "model.onnx", ROOT / "examples" / "digits" / "calibration.npz",
                    methods=("minmax",)).save(tmp_path / "cal")
    monkeypatch.setattr(quant.report, "write_report", denied)
    rc, err = in_process("report", tmp_path / "cal")
    assert rc == 2
    one_error(err, "cannot access '/srv/reports/plots': permission denied")
    assert err.strip().splitlines()[1].startswith("Hint: ")


def test_stale_temp_folders_of_older_versions_are_removed_only_when_empty_and_old(tmp_path):
    from quant.core.tempdirs import EMPTY_AGE_S, remove_stale

    for name in ("quant-ort-old", "quant-ort-recent", "quant-ort-full"):
        (tmp_path / name).mkdir()
    (tmp_path / "quant-ort-full" / "x.onnx").write_bytes(b"?")
    past = os.stat(tmp_path).st_mtime - 2 * EMPTY_AGE_S
    for name in ("quant-ort-old", "quant-ort-full"):
        os.utime(tmp_path / name, (past, past))
    assert remove_stale("quant-ort-", str(tmp_path)) == ["quant-ort-old"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["quant-ort-full", "quant-ort-recent"]

