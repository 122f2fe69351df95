"""What quant can prove it wrote (quant.core.ownership) and the single-file writer that relies on it."""
import json
import os
import stat

import pytest

from quant.core.errors import QuantError
from quant.core.io import atomic_output_dir, json_output, write_file_atomic, writing, xml_output
from quant.core.ownership import MANIFEST, has_marker, remove_proven, unproven, write_manifest, written_by_quant


def _folder(tmp_path):
    folder = tmp_path / "out"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.txt").write_text("a")
    (folder / "sub" / "b.bin").write_bytes(b"b")
    write_manifest(folder)
    return folder


def test_a_manifest_proves_every_entry_and_nothing_else(tmp_path):
    folder = _folder(tmp_path)
    assert unproven(folder) == []
    (folder / "sub" / "mine.txt").write_text("user")
    assert unproven(folder) == ["sub/mine.txt"]
    (folder / "sub" / "mine.txt").unlink()
    (folder / "a.txt").write_text("edited")  # same name, other content: the user's now
    assert unproven(folder) == ["a.txt"]


def test_a_listed_name_that_is_a_symlink_or_a_damaged_manifest_proves_nothing(tmp_path):
    folder = _folder(tmp_path)
    (folder / "a.txt").unlink()
    os.symlink(tmp_path / "elsewhere", folder / "a.txt")
    assert unproven(folder) == ["a.txt"]
    (folder / MANIFEST).write_text("{not json")
    assert unproven(folder) == [MANIFEST, "a.txt", "sub"]  # a damaged manifest is not quant's either


def test_remove_proven_deletes_only_unchanged_files_of_quant(tmp_path):
    folder = _folder(tmp_path)
    (folder / "sub" / "b.bin").write_bytes(b"changed by the user")
    (folder / "notes.txt").write_text("mine")
    assert remove_proven(folder) is False
    assert sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.name != MANIFEST) == \
        ["notes.txt", "sub", "sub/b.bin"]
    assert (folder / "sub" / "b.bin").read_bytes() == b"changed by the user"


def test_markers_recognize_quants_json_and_xml_only(tmp_path):
    (tmp_path / "q.json").write_text(json_output({"passed": True}))
    (tmp_path / "q.xml").write_text(xml_output('<?xml version="1.0" encoding="utf-8"?>\n<testsuites />\n'))
    (tmp_path / "u.json").write_text(json.dumps({"generator": "quantum-espresso"}))
    (tmp_path / "list.json").write_text("[1, 2]")
    assert has_marker(tmp_path / "q.json") and has_marker(tmp_path / "q.xml")
    assert (tmp_path / "q.xml").read_text().startswith('<?xml version="1.0" encoding="utf-8"?>\n<!-- generator: quant')
    assert not has_marker(tmp_path / "u.json") and not has_marker(tmp_path / "list.json")


def test_write_file_atomic_refuses_a_users_file_unless_forced(tmp_path):
    user = tmp_path / "notes.json"
    user.write_text("mine")
    with pytest.raises(QuantError, match="was not written by quant"):
        write_file_atomic(user, "{}")
    assert user.read_text() == "mine"
    with writing(force=True):
        write_file_atomic(user, json_output({"x": 1}))
    assert json.loads(user.read_text())["x"] == 1 and written_by_quant(user)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.json"]


def test_files_written_into_a_quant_folder_keep_it_provable(tmp_path):
    with atomic_output_dir(tmp_path / "R") as staging:
        (staging / "model.txt").write_text("model")
    write_file_atomic(tmp_path / "R" / "eval.csv", "a,b\n")  # no marker possible: listed in the manifest
    write_file_atomic(tmp_path / "R" / "eval.csv", "a,b,c\n")
    assert unproven(tmp_path / "R") == []
    with atomic_output_dir(tmp_path / "R" / "inner") as staging:  # a folder output inside a quant folder
        (staging / "x").write_text("x")
    assert unproven(tmp_path / "R") == []


def test_staging_and_outputs_get_the_umask_modes(tmp_path):
    old = os.umask(0o027)
    try:
        with atomic_output_dir(tmp_path / "R") as staging:
            assert stat.S_IMODE(staging.stat().st_mode) == 0o750
            (staging / "f").write_text("x")
        write_file_atomic(tmp_path / "g.json", json_output({}))
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "R").stat().st_mode) == 0o750
    assert stat.S_IMODE((tmp_path / "R" / MANIFEST).stat().st_mode) == 0o640
    assert stat.S_IMODE((tmp_path / "g.json").stat().st_mode) == 0o640


def test_stale_staging_is_removed_only_with_quants_unlocked_lock(tmp_path):
    from quant.core.io import STAGING_LOCK, STAGING_PREFIX, remove_stale_staging

    for name, lock, text in [(".a.tmp-1", STAGING_LOCK, STAGING_PREFIX),
                             (".b.tmp-1", STAGING_LOCK + ".new-7", STAGING_PREFIX),
                             (".c.tmp-1", STAGING_LOCK, "someone else's"), (".d.tmp-1", "notes.txt", STAGING_PREFIX)]:
        (tmp_path / name).mkdir()
        (tmp_path / name / lock).write_text(f"{text} pid 1\n")
    assert sorted(remove_stale_staging(tmp_path)) == [".a.tmp-1", ".b.tmp-1"]  # killed before or after the rename
    assert sorted(p.name for p in tmp_path.iterdir()) == [".c.tmp-1", ".d.tmp-1"]
