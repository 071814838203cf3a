"""`talentnest restore` and `backup` refusals: one line naming what is wrong, exit 2, and nothing changed."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent / "store"))

from store_factories import make_node

from talentnest.cli import main
from talentnest.store import snapshot


def a_backup(tmp_path: Path) -> Path:
    node = make_node(tmp_path / "source")
    node.db.term, node.db.epoch = 1, 1
    node.signup("ada")
    path, _ = snapshot.take_to_serve(node.db.path)
    node.db.close()
    return path


def test_a_data_directory_that_holds_a_node_needs_replace_and_is_left_as_it_was(tmp_path, capsys):
    backup = a_backup(tmp_path)
    target = tmp_path / "node"
    assert main(["restore", str(backup), "--data-dir", str(target)]) == 0
    before = sorted(p.name for p in target.iterdir())
    assert main(["restore", str(backup), "--data-dir", str(target)]) == 2
    assert "pass --replace" in capsys.readouterr().err
    assert sorted(p.name for p in target.iterdir()) == before
    garbage = tmp_path / "garbage.backup"
    garbage.write_bytes(b"\x28\xb5\x2f\xfd" + b"not a frame" * 10)
    assert main(["restore", str(garbage), "--replace", "--data-dir", str(target)]) == 2
    assert "does not verify" in capsys.readouterr().err
    assert sorted(p.name for p in target.iterdir()) == before, "a failed --replace puts back what it moved"
    assert main(["restore", str(backup), "--replace", "--data-dir", str(target)]) == 0
    assert list(target.glob("replaced-*/talentnest.db"))


def test_refusals_name_what_is_wrong(tmp_path, capsys, monkeypatch):
    backup = a_backup(tmp_path)
    cases = [
        (["restore", str(backup), "--to-time", "2026-01-01T00:00:00Z", "--data-dir", str(tmp_path / "a")], "needs an archive"),
        (["restore", str(backup), "--to-time", "yesterday", "--data-dir", str(tmp_path / "b")], "ISO 8601"),
        (["restore", str(tmp_path / "missing"), "--data-dir", str(tmp_path / "c")], "does not exist"),
        (["restore", str(tmp_path), "--data-dir", str(tmp_path / "d")], "holds no archive"),
        (["restore", str(backup), "--generation", str(2**30), "--data-dir", str(tmp_path / "g")], "at most 1073741823,"),
        (["restore", str(backup), "--generation", "258", "--data-dir", str(tmp_path / "h")], "at most 257 (the source's next"),
    ]
    for arguments, says in cases:
        assert main(arguments) == 2, arguments
        assert says in capsys.readouterr().err, arguments
    garbage = tmp_path / "garbage.backup"
    garbage.write_bytes(b"\x28\xb5\x2f\xfd" + b"not a frame" * 10)
    assert main(["restore", str(garbage), "--data-dir", str(tmp_path / "e")]) == 2
    assert "does not verify" in capsys.readouterr().err and not (tmp_path / "e" / "talentnest.db").exists()
    monkeypatch.delenv("JWT_SECRET", raising=False)
    monkeypatch.delenv("CLUSTER_SECRET", raising=False)
    assert main(["backup", "--url", "http://127.0.0.1:9", str(tmp_path / "f")]) == 2
    assert "set CLUSTER_SECRET (or JWT_SECRET" in capsys.readouterr().err
