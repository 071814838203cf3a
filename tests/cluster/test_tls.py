"""A cluster over TLS with certificates made here by ``openssl``: nodes call each other over HTTPS and
present their certificates both ways; a client without a certificate reaches the product but not
``/cluster/*`` even with the key; a certificate of another CA, or plain HTTP, gets no answer at all."""

from __future__ import annotations

import shutil
import ssl
import subprocess
from pathlib import Path

import httpx
import pytest

from talentnest.cluster.auth import HEADER, sign

FAST = {"HEARTBEAT_INTERVAL": "0.5", "FAILURE_TIMEOUT": "5", "ELECTION_INTERVAL": "2"}
pytestmark = pytest.mark.cluster


def openssl(*arguments: str) -> None:
    assert shutil.which("openssl"), "the TLS test needs openssl (apt-get install openssl; ./dev installs it)"
    result = subprocess.run(["openssl", *arguments], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def make_ca(directory: Path, name: str) -> tuple[Path, Path]:
    key, cert = directory / f"{name}.key", directory / f"{name}.pem"
    openssl(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", str(key), "-out", str(cert),
        "-days", "2", "-subj", f"/CN={name}", "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
    )  # fmt: skip
    return cert, key


def make_certificate(directory: Path, name: str, ca: tuple[Path, Path]) -> tuple[Path, Path]:
    key, request, cert, extensions = (directory / f"{name}{suffix}" for suffix in (".key", ".csr", ".pem", ".ext"))
    extensions.write_text(
        "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth,clientAuth\n"
    )
    openssl(
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        str(key),
        "-out",
        str(request),
        "-subj",
        f"/CN={name}",
    )
    openssl(
        "x509", "-req", "-in", str(request), "-CA", str(ca[0]), "-CAkey", str(ca[1]), "-CAcreateserial", "-out", str(cert),
        "-days", "2", "-extfile", str(extensions),
    )  # fmt: skip
    return cert, key


def client_context(ca: Path, certificate: tuple[Path, Path] | None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(ca))
    context.check_hostname = False  # nodes are reached by address; the CA is the identity (talentnest.tls)
    if certificate is not None:
        context.load_cert_chain(str(certificate[0]), str(certificate[1]))
    return context


def test_a_tls_cluster_replicates_over_https_and_refuses_clients_without_the_cas_certificate(make_cluster, tmp_path):
    ca = make_ca(tmp_path, "talentnest-test-ca")
    node_cert = make_certificate(tmp_path, "talentnest-node", ca)
    rogue_ca = make_ca(tmp_path, "rogue-ca")
    rogue_cert = make_certificate(tmp_path, "rogue-node", rogue_ca)
    tls = {"TLS_CERT_FILE": str(node_cert[0]), "TLS_KEY_FILE": str(node_cert[1]), "TLS_CA_FILE": str(ca[0])}

    cluster = make_cluster(3, env={**FAST, **tls}, scheme="https", verify=client_context(ca[0], node_cert))
    leader = cluster.wait_for_leader()
    follower = next(node for node in cluster.nodes if node is not leader)
    assert all(entry["address"].startswith("https://") for entry in leader.status()["nodes"])

    reply = cluster.signup(follower, username="overtls")  # forwarded to the leader over HTTPS
    assert reply.headers["x-leader-id"] == str(leader.node_id)
    cluster.wait_for_applied(reply.lsn)
    assert len(set(cluster.checksums().values())) == 1

    # A client with the CA but no certificate: the product answers; a signed /cluster/* call does not.
    with httpx.Client(verify=client_context(ca[0], None), trust_env=False) as anonymous:
        assert anonymous.get(f"{follower.url}/api/users/search?query=overtls").json()["items"][0]["username"] == "overtls"
        target = "/cluster/checksum"
        refused = anonymous.get(f"{follower.url}{target}", headers={HEADER: sign(cluster.cluster_key, "GET", target)})
        assert refused.status_code == 401 and "certificate" in refused.json()["error"]["message"]

    # A certificate of another CA: the handshake fails, nothing is answered.
    with httpx.Client(verify=client_context(ca[0], rogue_cert), trust_env=False) as rogue, pytest.raises(httpx.HTTPError):
        rogue.get(f"{follower.url}/api/users/search?query=overtls")
    # Plain HTTP to a node that speaks TLS: no HTTP answer either.
    with httpx.Client(trust_env=False) as plain, pytest.raises(httpx.HTTPError):
        plain.get(f"http://{follower.address}:{follower.url.rsplit(':', 1)[1]}/api/users/search?query=overtls")
