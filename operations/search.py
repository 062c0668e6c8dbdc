"""Reaching the public search API: a gRPC channel to the gateway, with TLS or mTLS."""

from __future__ import annotations

from pathlib import Path


def client_channel(address: str, *, ca: str | None, cert: str | None, key: str | None):
    """A gRPC channel to the gateway: TLS when `ca` (the server's CA) is given, with a client
    certificate (mTLS) when `cert` and `key` are.

    Raises:
        ValueError: a client certificate without TLS, or a cert without its key.
        OSError: a file cannot be read.
    """
    import grpc

    if not ca:
        if cert or key:
            raise ValueError("--tls-cert/--tls-key need --tls-ca (the gateway's CA)")
        return grpc.insecure_channel(address)
    if bool(cert) != bool(key):
        raise ValueError("--tls-cert and --tls-key go together")
    credentials = grpc.ssl_channel_credentials(
        root_certificates=Path(ca).read_bytes(),
        private_key=Path(key).read_bytes() if key else None,
        certificate_chain=Path(cert).read_bytes() if cert else None,
    )
    return grpc.secure_channel(address, credentials)
