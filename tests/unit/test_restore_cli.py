"""`talentnest restore` and `backup` refusals: one line naming what is wrong, exit 2, and nothing changed."""

from __future__ import annotations

import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "store"))

from store_factories import make_node

from talentnest.cli import main
from talentnest.cluster import auth
from talentnest.launcher.backup import BACKUP_PATH
from talentnest.store import snapshot


def a_snapshot(tmp_path: Path) -> tuple[Path, snapshot.SnapshotInfo]:
    node = make_node(tmp_path / "source")
    node.db.term, node.db.epoch = 1, 1
    node.signup("ada")
    found = snapshot.take_to_serve(node.db.path)
    node.db.close()
    return found


def a_backup(tmp_path: Path) -> Path:
    return a_snapshot(tmp_path)[0]


SECRET = "the cluster's jwt secret"
KEY = auth.cluster_key(jwt_secret=SECRET, cluster_secret=None)


@pytest.fixture
def serve_backup(tmp_path):
    """A stand-in node on loopback that answers ``GET /cluster/backup`` with a real snapshot and its headers,
    its answer signed by ``sign(nonce, sha256)`` (None: unsigned); yields ``(url, setter of sign)``."""
    path, info = a_snapshot(tmp_path)
    body = path.read_bytes()
    signer = {"sign": None}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            assert self.path == BACKUP_PATH
            nonce = auth.nonce_of(self.headers[auth.HEADER])
            self.send_response(200)
            headers = {
                "Content-Length": str(len(body)),
                "X-Snapshot-Lsn": str(info.lsn),
                "X-Snapshot-Term": str(info.term),
                "X-Snapshot-Schema-Version": str(info.schema_version),
                "X-Snapshot-Compression": info.compression,
                "X-Snapshot-Sha256": info.sha256,
                "X-Snapshot-Raw-Bytes": str(info.raw_bytes),
                "X-Snapshot-Time": "2026-12-02T14:05:12.345Z",
                "X-Node-Id": "513",
                "X-Node-Role": "follower",
            }
            if signer["sign"] is not None:
                headers[auth.HEADER] = signer["sign"](nonce, info.sha256)
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", lambda sign: signer.update(sign=sign)
    finally:
        server.shutdown()
        server.server_close()


def test_a_backup_whose_answer_is_not_signed_for_its_request_is_refused_and_not_kept(serve_backup, tmp_path, capsys, monkeypatch):
    url, signing = serve_backup
    monkeypatch.setenv("JWT_SECRET", SECRET)
    monkeypatch.delenv("CLUSTER_SECRET", raising=False)
    other_key = auth.cluster_key(jwt_secret="another cluster's secret", cluster_secret=None)
    forged = [
        (None, "has no X-Cluster-Signature"),
        (lambda nonce, sha: auth.sign_answer(other_key, nonce, 200, sha), "signature is wrong"),
        (lambda nonce, sha: auth.sign_answer(KEY, "0" * 32, 200, sha), "signed for another request"),
    ]
    for sign, says in forged:
        signing(sign)
        file = tmp_path / "refused.backup"
        assert main(["backup", "--url", url, str(file)]) == 2
        assert says in capsys.readouterr().err, says
        assert not file.exists() and not (tmp_path / "refused.backup.partial").exists()
    signing(lambda nonce, sha: auth.sign_answer(KEY, nonce, 200, sha))
    assert main(["backup", "--url", url, str(tmp_path / "kept.backup")]) == 0, capsys.readouterr().err
    assert (tmp_path / "kept.backup.manifest.json").exists()


def test_the_key_may_come_from_a_secret_file_as_a_node_reads_it(serve_backup, tmp_path, capsys, monkeypatch):
    url, signing = serve_backup
    signing(lambda nonce, sha: auth.sign_answer(KEY, nonce, 200, sha))
    monkeypatch.delenv("CLUSTER_SECRET", raising=False)
    monkeypatch.delenv("JWT_SECRET", raising=False)
    secret_file = tmp_path / "jwt_secret"
    secret_file.write_text(SECRET + "\n")  # as a Docker or Kubernetes secret is mounted
    monkeypatch.setenv("JWT_SECRET_FILE", str(secret_file))
    assert main(["backup", "--url", url, str(tmp_path / "from-file.backup")]) == 0, capsys.readouterr().err
    monkeypatch.setenv("JWT_SECRET", SECRET)
    assert main(["backup", "--url", url, str(tmp_path / "both.backup")]) == 2
    assert "JWT_SECRET and JWT_SECRET_FILE are both set" in capsys.readouterr().err


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
