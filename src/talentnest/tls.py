"""TLS for a node, from the files its settings name: the server's context (HTTPS on its port, asking
clients for a certificate of the cluster's CA) and the client's (calls to peers, presenting its own)."""

from __future__ import annotations

import ssl

from talentnest.config import ConfigError, Settings

# Set in a request's ASGI scope when its connection presented a certificate the CA signed.
PEER_CERTIFICATE_SCOPE_KEY = "talentnest.peer_certificate"


def _load(context: ssl.SSLContext, settings: Settings) -> ssl.SSLContext:
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(str(settings.tls_cert_file), str(settings.tls_key_file))
    except (ssl.SSLError, OSError) as exc:
        raise ConfigError(
            f"TLS_CERT_FILE '{settings.tls_cert_file}' and TLS_KEY_FILE '{settings.tls_key_file}' do not load: {exc}"
        ) from None
    try:
        context.load_verify_locations(cafile=str(settings.tls_ca_file))
    except (ssl.SSLError, OSError) as exc:
        raise ConfigError(f"TLS_CA_FILE '{settings.tls_ca_file}' does not load: {exc}") from None
    return context


def server_context(settings: Settings) -> ssl.SSLContext | None:
    """HTTPS for the node's port, or None without TLS. Clients are asked for a certificate signed by
    ``TLS_CA_FILE``: required of every connection with ``TLS_CLIENT_CERTS=require``, else optional (and
    then required only of ``/cluster/*`` calls, by ``cluster.auth.RequestAuth``). Raises ConfigError."""
    if not settings.tls:
        return None
    context = _load(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER), settings)
    context.verify_mode = ssl.CERT_REQUIRED if settings.tls_client_certs == "require" else ssl.CERT_OPTIONAL
    return context


def client_context(settings: Settings) -> ssl.SSLContext | None:
    """For calls to peers: their certificate must chain to ``TLS_CA_FILE``, and this node presents its own.

    Peers are reached by IP address, which changes with every pod or container, so the certificate is
    not matched against the address: holding a certificate of the cluster's own CA is the identity
    (give the nodes a CA of their own). Raises ConfigError."""
    if not settings.tls:
        return None
    context = _load(ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT), settings)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_REQUIRED
    return context
