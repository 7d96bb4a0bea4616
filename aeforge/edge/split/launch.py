"""``aeforge serve tail`` and ``aeforge split run`` options -> a configured server or client.

The CLI passes its parsed arguments; everything about tokens, TLS and CURVE is checked here so that a
wrong combination is refused by name before anything is loaded or bound.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from aeforge.edge.split.security import (
    ClientTLS,
    CurveClientKeys,
    CurveServerKeys,
    ServerTLS,
    read_token,
)
from aeforge.errors import ConfigError


def _token(args: argparse.Namespace) -> str | None:
    token = read_token(getattr(args, "token", None), getattr(args, "token_file", None),
                       getattr(args, "token_env", None))
    if getattr(args, "token", None) is not None:
        print("warning: --token is visible to other local users (ps, /proc); prefer --token-file or --token-env",
              file=sys.stderr)
    return token


def _refuse_mixed(transport: str, args: argparse.Namespace, tls_options: tuple[str, ...],
                  curve_options: tuple[str, ...]) -> None:
    given = lambda names: [f"--{n.replace('_', '-')}" for n in names if getattr(args, n, None) is not None]  # noqa: E731
    if transport == "zmq" and given(tls_options):
        raise ConfigError(f"{', '.join(given(tls_options))}: the zmq transport is secured with CURVE "
                          "(--curve-*), not TLS")
    if transport != "zmq" and given(curve_options):
        raise ConfigError(f"{', '.join(given(curve_options))}: CURVE secures the zmq transport only, not {transport}")


def tail_server(artifact: Path, args: argparse.Namespace) -> Any:
    """The (not yet started) server of ``aeforge serve tail`` for these arguments."""
    from aeforge.edge.split.fastpath import FastPathServer
    from aeforge.edge.split.serve import TailServer
    from aeforge.edge.split.zmqpath import ZmqFastPathServer

    _refuse_mixed(args.transport, args, ("tls_cert", "tls_key", "tls_client_ca"),
                  ("curve_secret_key", "curve_clients"))
    common: dict[str, Any] = {"host": args.host, "port": args.port, "token": _token(args),
                              "max_batch": args.max_batch, "backend": args.backend, "insecure": args.insecure,
                              "handshake_timeout_s": args.handshake_timeout_s}
    if args.transport == "zmq":
        if args.curve_clients is not None and args.curve_secret_key is None:
            raise ConfigError("--curve-clients: needs --curve-secret-key (the server's CURVE keypair)")
        curve = CurveServerKeys(args.curve_secret_key, args.curve_clients) if args.curve_secret_key else None
        return ZmqFastPathServer(artifact, curve=curve, **common)
    tls = None
    if args.tls_cert is not None or args.tls_key is not None or args.tls_client_ca is not None:
        if args.tls_cert is None or args.tls_key is None:
            raise ConfigError("--tls-cert/--tls-key: TLS needs both the certificate and its key")
        tls = ServerTLS(args.tls_cert, args.tls_key, args.tls_client_ca)
    server_cls = TailServer if args.transport == "grpc" else FastPathServer
    return server_cls(artifact, tls=tls, **common)


def security_label(args: argparse.Namespace) -> str:
    """``curve``, ``tls+client-certs``, ``tls`` or ``plaintext``: what ``serve tail`` runs with these arguments."""
    if args.transport == "zmq":
        return "curve" if args.curve_secret_key else "plaintext"
    if args.tls_cert is None:
        return "plaintext"
    return "tls+client-certs" if args.tls_client_ca else "tls"


def split_client(artifact: Path, args: argparse.Namespace) -> Any:
    """The SplitClient of ``aeforge split run`` for these arguments."""
    from aeforge.edge.split.client import SplitClient

    _refuse_mixed(args.transport, args, ("tls_ca", "tls_cert", "tls_key", "tls_server_name"),
                  ("curve_server_key", "curve_secret_key"))
    tls = curve = None
    if args.tls_ca is not None:
        tls = ClientTLS(args.tls_ca, args.tls_cert, args.tls_key, args.tls_server_name)
    elif args.tls_cert is not None or args.tls_key is not None or args.tls_server_name is not None:
        raise ConfigError("--tls-ca: needed to verify the server (with --tls-cert, --tls-key or --tls-server-name)")
    if args.curve_server_key is not None:
        curve = CurveClientKeys(args.curve_server_key, args.curve_secret_key)
    elif args.curve_secret_key is not None:
        raise ConfigError("--curve-server-key: needed to verify the server (with --curve-secret-key)")
    return SplitClient(artifact, transport=args.transport, host=args.host, port=args.port, token=_token(args),
                       compression=args.compression, timeout_s=args.timeout_s, tls=tls, curve=curve,
                       insecure=args.insecure)
