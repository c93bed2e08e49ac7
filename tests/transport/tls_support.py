"""A self-signed certificate made at test time with the openssl CLI, and TLS contexts for it (S9.2)."""

from __future__ import annotations

import atexit
import functools
import os
import shutil
import ssl
import subprocess
import tempfile
from pathlib import Path

#: The name the certificate is for (and the client checks).
HOSTNAME = "localhost"


@functools.cache
def certificate() -> tuple[Path, Path]:
    """``(cert.pem, key.pem)``: a P-256 self-signed certificate for localhost and 127.0.0.1.

    Made once per test run, in a folder removed when the run ends (it holds a private key; one
    folder per run used to stay behind in the temporary directory). CI installs openssl
    (.ci/run): a missing CLI fails, it is not skipped.
    """
    openssl = shutil.which("openssl")
    assert openssl is not None, "the openssl CLI is needed for the TLS tests (.ci/run installs it)"
    folder = Path(tempfile.mkdtemp(prefix="wsasend-tls-"))
    atexit.register(_remove_if_ours, folder, os.getpid())
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            *(openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"),
            *("-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", f"/CN={HOSTNAME}"),
            *("-addext", f"subjectAltName=DNS:{HOSTNAME},IP:127.0.0.1"),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return cert, key


def _remove_if_ours(folder: Path, creator: int) -> None:
    # A forked child that exits normally runs the parent's atexit hooks: leave the folder to the
    # process that made it.
    if os.getpid() == creator:
        shutil.rmtree(folder, ignore_errors=True)


def server_context() -> ssl.SSLContext:
    cert, key = certificate()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    return context


def client_context() -> ssl.SSLContext:
    """A client context that trusts only our certificate and checks the host name."""
    cert, _ = certificate()
    context = ssl.create_default_context(cafile=str(cert))
    return context
