"""The archive in an S3-compatible bucket: a real local server (moto_server, with IAM checking every request's
SigV4 signature), archived into and restored from, and refused with a wrong secret."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from store_factories import make_node
from tests import _tools

from talentnest.config import ConfigError, Settings
from talentnest.launcher import restore as restoring
from talentnest.store import archive
from talentnest.store._s3 import S3Store
from talentnest.store.archiver import Archiver, ArchiveSettings
from talentnest.store.schema import product_database

BUCKET = "talentnest-archive"
# IAM's CreateUser, PutUserPolicy and CreateAccessKey go unsigned; from then on moto checks every signature.
UNSIGNED_SETUP_CALLS = 3


@pytest.fixture(scope="module")
def s3():
    """A moto_server on loopback with a bucket, and the credentials IAM issued for it."""
    command = shutil.which("moto_server", path=str(Path(sys.executable).parent)) or shutil.which("moto_server")
    if command is None:
        _tools.missing("moto_server is not installed (it comes with the test extra: moto[s3], flask, flask-cors)")
    import boto3

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": str(UNSIGNED_SETUP_CALLS)}
    server = subprocess.Popen([command, "-H", "127.0.0.1", "-p", str(port)], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE)  # fmt: skip
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline, "moto_server did not start"
                time.sleep(0.05)
        setup = {"endpoint_url": endpoint, "region_name": "us-east-1", "aws_access_key_id": "x", "aws_secret_access_key": "x"}
        iam = boto3.client("iam", **setup)
        iam.create_user(UserName="archiver")
        policy = '{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}'
        iam.put_user_policy(UserName="archiver", PolicyName="archive", PolicyDocument=policy)
        key = iam.create_access_key(UserName="archiver")["AccessKey"]
        credentials = {"AWS_ACCESS_KEY_ID": key["AccessKeyId"], "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"]}
        boto3.client(
            "s3", endpoint_url=endpoint, region_name="us-east-1",
            aws_access_key_id=credentials["AWS_ACCESS_KEY_ID"], aws_secret_access_key=credentials["AWS_SECRET_ACCESS_KEY"],
        ).create_bucket(Bucket=BUCKET)  # fmt: skip
        yield {**credentials, "ARCHIVE_S3_ENDPOINT": endpoint, "ARCHIVE_S3_REGION": "us-east-1"}
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_archive_into_a_bucket_and_restore_from_it(s3, tmp_path, monkeypatch):
    for name, value in s3.items():
        monkeypatch.setenv(name, value)
    location = f"s3://{BUCKET}/cluster-a"
    node = make_node(tmp_path / "leader")
    node.db.term, node.db.epoch = 1, 3
    archiver = Archiver(node.db, archive.open_store(location), ArchiveSettings(interval=0.05))
    archiver.node_id = 513
    user = node.signup("grace")
    asyncio.run(archiver.archive_once())
    for i in range(30):
        node.post(user, f"post {i}")
    asyncio.run(archiver.archive_once())
    assert archiver.stats.archived_lsn == node.db.last_lsn
    names = archive.open_store(location).list("")
    assert any(n.endswith(".zst") and "/snapshot-" in n for n in names) and any("/entries-" in n for n in names)

    plan = restoring.plan_archive(location, to_lsn=20, to_time=None, node_id=None)
    restoring.restore(plan, tmp_path / "restored")
    db = product_database(tmp_path / "restored").open()
    follower = make_node(tmp_path / "replay")
    follower.db.apply([e for e in node.all_entries() if e.lsn <= 20])
    assert db.last_lsn == 21 and db.checksum() == follower.db.checksum()
    for opened in (db, follower.db, node.db):
        opened.close()


def test_a_wrong_secret_is_refused_by_the_bucket(s3, tmp_path):
    store = S3Store(
        BUCKET, "refused", access_key=s3["AWS_ACCESS_KEY_ID"], secret_key="not the secret", endpoint=s3["ARCHIVE_S3_ENDPOINT"]
    )
    with pytest.raises(OSError, match=r"SignatureDoesNotMatch|403"):
        store.put_bytes("probe", b"data")


def test_a_bucket_archive_needs_its_credentials_at_start():
    with pytest.raises(ConfigError, match="AWS_SECRET_ACCESS_KEY"):
        Settings.from_env({"JWT_SECRET": "x" * 32, "ARCHIVE_DIR": "s3://bucket/prefix", "AWS_ACCESS_KEY_ID": "a"})
    with pytest.raises(ConfigError, match="bucket name"):
        Settings.from_env({"JWT_SECRET": "x" * 32, "ARCHIVE_DIR": "s3://Bad_Bucket/prefix"})
