"""Transport security of the split servers: bind policy, tokens, TLS and CurveZMQ keys, host formatting.

Policy (:func:`check_bind`): a port in 0..65535; a token, when given, of at least
:data:`MIN_TOKEN_BYTES` bytes without whitespace; off loopback a server needs transport security (TLS
for gRPC and TCP, CURVE for ZeroMQ) unless ``insecure`` is passed explicitly, and a token unless TLS
requires client certificates. Tokens come from ``--token-file`` or an environment variable
(:func:`read_token`) so they need not appear on a command line that other local users can read.

TLS: :class:`ServerTLS` (certificate chain and key from PEM files, optionally a CA whose client
certificates are required) and :class:`ClientTLS` (the CA that signed the server's certificate, an
optional client certificate). CURVE: :class:`CurveServerKeys` and :class:`CurveClientKeys` read key
files written by ``zmq.auth.create_certificates`` (or :func:`write_curve_keypair`).
"""

from __future__ import annotations

import ipaddress
import os
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aeforge.errors import ConfigError

MIN_TOKEN_BYTES = 16
MAX_TOKEN_BYTES = 1024


# ------------------------------------------------------------------------------------ hosts
def bare_host(host: str) -> str:
    """``host`` without surrounding whitespace and IPv6 brackets (``[::1]`` -> ``::1``)."""
    return host.strip().removeprefix("[").removesuffix("]")


def host_port(host: str, port: int) -> str:
    """``host:port`` with IPv6 addresses bracketed (``[::1]:8001``), whatever brackets ``host`` had."""
    name = bare_host(host)
    return f"[{name}]:{port}" if ":" in name else f"{name}:{port}"


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1); False for anything else."""
    name = bare_host(host)
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


# ------------------------------------------------------------------------------------ tokens
def check_token(token: Any) -> str:
    """``token`` if it is a string of >= MIN_TOKEN_BYTES UTF-8 bytes without whitespace; ConfigError otherwise."""
    if not isinstance(token, str) or not token or any(c.isspace() for c in token):
        raise ConfigError("token: must be a non-empty string without whitespace")
    size = len(token.encode())
    if size < MIN_TOKEN_BYTES:
        raise ConfigError(f"token: {size} bytes is too short; use at least {MIN_TOKEN_BYTES} random bytes "
                          "(e.g. python -c 'import secrets; print(secrets.token_urlsafe(24))')")
    if size > MAX_TOKEN_BYTES:
        raise ConfigError(f"token: {size} bytes is longer than {MAX_TOKEN_BYTES}")
    return token


def read_token(token: str | None = None, token_file: str | os.PathLike[str] | None = None,
               token_env: str | None = None) -> str | None:
    """The token from exactly one of ``token``, ``token_file`` (first line) or the variable ``token_env``; or None."""
    given = [name for name, value in (("--token", token), ("--token-file", token_file), ("--token-env", token_env))
             if value is not None]
    if len(given) > 1:
        raise ConfigError(f"token: give only one of {', '.join(given)}")
    if token_file is not None:
        path = Path(token_file)
        try:
            lines = path.read_text().splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"--token-file: cannot read {path} ({exc})") from None
        if not lines or not lines[0].strip():
            raise ConfigError(f"--token-file: {path} is empty")
        return lines[0].strip()
    if token_env is not None:
        value = os.environ.get(token_env)
        if not value:
            raise ConfigError(f"--token-env: the environment variable {token_env!r} is not set or empty")
        return value.strip()
    return token


# ------------------------------------------------------------------------------------ bind policy
def check_bind(host: str, port: int, token: str | None, secure: bool = False, insecure: bool = False,
               client_auth: bool = False) -> None:
    """Refuse (ConfigError) a bad port or token, and plaintext or unauthenticated serving off loopback.

    ``secure``: TLS / CURVE is configured; ``insecure``: plaintext off loopback was asked for explicitly;
    ``client_auth``: the transport authenticates clients itself (TLS client certificates).
    """
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ConfigError(f"port: must be an integer in 0..65535, got {port!r}")
    if token is not None:
        check_token(token)
    if is_loopback(host):
        return
    if not secure and not insecure:
        raise ConfigError(f"tls: refusing to serve plaintext on the non-loopback host {host!r}; give a certificate "
                          "and key (--tls-cert/--tls-key; ZeroMQ: --curve-secret-key) or pass --insecure explicitly")
    if not token and not client_auth:
        raise ConfigError(f"token: binding the non-loopback host {host!r} needs a token (--token-file or "
                          "--token-env) or TLS client certificates (--tls-client-ca); without one only "
                          "127.0.0.1 / ::1 / localhost may be used")


def check_connect(host: str, secure: bool, insecure: bool) -> None:
    """A client refuses plaintext to a non-loopback host unless ``insecure`` (ConfigError)."""
    if not secure and not insecure and not is_loopback(host):
        raise ConfigError(f"tls: refusing to send plaintext to the non-loopback host {host!r}; give the server's CA "
                          "(--tls-ca; ZeroMQ: --curve-server-key) or pass --insecure explicitly")


# ------------------------------------------------------------------------------------ TLS
def _read(option: str, path: str | os.PathLike[str] | None) -> bytes | None:
    if path is None:
        return None
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"{option}: cannot read {path} ({exc})") from None
    if not data.strip():
        raise ConfigError(f"{option}: {path} is empty")
    return data


@dataclass(frozen=True)
class ServerTLS:
    """A server's TLS identity: PEM certificate chain and key; with ``client_ca_file`` clients need certificates."""

    cert_file: str
    key_file: str
    client_ca_file: str | None = None

    def ssl_context(self) -> ssl.SSLContext:
        """A TLS >= 1.2 server context; ConfigError naming the file that does not load."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        try:
            context.load_cert_chain(self.cert_file, self.key_file)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"--tls-cert/--tls-key: cannot load {self.cert_file} with {self.key_file} ({exc})") \
                from None
        if self.client_ca_file is not None:
            try:
                context.load_verify_locations(self.client_ca_file)
            except (OSError, ssl.SSLError) as exc:
                raise ConfigError(f"--tls-client-ca: cannot load {self.client_ca_file} ({exc})") from None
            context.verify_mode = ssl.CERT_REQUIRED
        return context

    def grpc_credentials(self) -> Any:
        """``grpc.ssl_server_credentials`` of the same files."""
        import grpc

        self.ssl_context()  # the same checks and error messages as the TCP path
        key, cert = _read("--tls-key", self.key_file), _read("--tls-cert", self.cert_file)
        ca = _read("--tls-client-ca", self.client_ca_file)
        return grpc.ssl_server_credentials([(key, cert)], root_certificates=ca, require_client_auth=ca is not None)


@dataclass(frozen=True)
class ClientTLS:
    """What a client trusts: the CA (PEM) of the server's certificate; optional client certificate and key.

    ``server_name``: the name the server's certificate must carry (default: the host connected to).
    """

    ca_file: str
    cert_file: str | None = None
    key_file: str | None = None
    server_name: str | None = None

    def __post_init__(self) -> None:
        if (self.cert_file is None) != (self.key_file is None):
            raise ConfigError("--tls-cert/--tls-key: a client certificate needs its key and the other way round")

    def ssl_context(self) -> ssl.SSLContext:
        """A TLS >= 1.2 client context that verifies the server's certificate and host name."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        try:
            context.load_verify_locations(self.ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"--tls-ca: cannot load {self.ca_file} ({exc})") from None
        if self.cert_file is not None:
            try:
                context.load_cert_chain(self.cert_file, self.key_file)
            except (OSError, ssl.SSLError) as exc:
                raise ConfigError(f"--tls-cert/--tls-key: cannot load {self.cert_file} ({exc})") from None
        return context

    def triton_options(self) -> dict[str, Any]:
        """Keyword arguments of ``tritonclient.grpc.InferenceServerClient`` for this TLS setup."""
        self.ssl_context()  # fail early, naming the file
        options: dict[str, Any] = {"ssl": True, "root_certificates": self.ca_file, "private_key": self.key_file,
                                   "certificate_chain": self.cert_file}
        if self.server_name:
            options["channel_args"] = [("grpc.ssl_target_name_override", self.server_name)]
        return options


# ------------------------------------------------------------------------------------ CurveZMQ
def _zmq_auth() -> Any:
    try:
        import zmq
        import zmq.auth
    except ImportError:
        raise ConfigError("CURVE keys need pyzmq (pip install pyzmq)") from None
    if not zmq.has("curve"):
        raise ConfigError("CURVE: this libzmq was built without CURVE support")
    return zmq


def _load_curve(option: str, path: str | os.PathLike[str], secret: bool) -> tuple[bytes, bytes | None]:
    zmq = _zmq_auth()
    try:
        public, secret_key = zmq.auth.load_certificate(str(path))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{option}: cannot read a ZeroMQ certificate from {path} ({exc})") from None
    if secret and secret_key is None:
        raise ConfigError(f"{option}: {path} holds no secret key (give the .key_secret file)")
    return public, secret_key


@dataclass(frozen=True)
class CurveServerKeys:
    """A ZeroMQ server's CURVE keypair file; ``clients_dir``: only clients whose public key file is there connect."""

    secret_key_file: str
    clients_dir: str | None = None

    def keys(self) -> tuple[bytes, bytes]:
        """(public, secret) Z85 keys."""
        public, secret = _load_curve("--curve-secret-key", self.secret_key_file, secret=True)
        assert secret is not None
        if self.clients_dir is not None and not Path(self.clients_dir).is_dir():
            raise ConfigError(f"--curve-clients: {self.clients_dir} is not a directory")
        return public, secret


@dataclass(frozen=True)
class CurveClientKeys:
    """What a ZeroMQ client trusts: the server's public key file; its own keypair file (default: a fresh one)."""

    server_key_file: str
    secret_key_file: str | None = None

    def keys(self) -> tuple[bytes, bytes, bytes]:
        """(server public, client public, client secret) Z85 keys."""
        zmq = _zmq_auth()
        server_public, _ = _load_curve("--curve-server-key", self.server_key_file, secret=False)
        if self.secret_key_file is None:
            public, secret = zmq.curve_keypair()
            return server_public, public, secret
        public, secret = _load_curve("--curve-secret-key", self.secret_key_file, secret=True)
        assert secret is not None
        return server_public, public, secret


def write_curve_keypair(directory: str | os.PathLike[str], name: str) -> tuple[Path, Path]:
    """``directory/name.key`` (public) and ``name.key_secret`` (secret, mode 0600); returns both paths."""
    zmq = _zmq_auth()
    Path(directory).mkdir(parents=True, exist_ok=True)
    public, secret = zmq.auth.create_certificates(str(directory), name)
    os.chmod(secret, 0o600)
    return Path(public), Path(secret)
