"""The split-computing verbs of the command line: train (split configs), export split/triton, serve tail,
split run. :func:`add_split_commands` adds their parsers; heavy modules load inside the handlers."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from aeforge.config import parse_overrides

EXIT_OK = 0


def train_split(args: argparse.Namespace) -> int:
    """``aeforge train`` of a split config, single- or multi-task (``model.tasks``), resumable, under torchrun."""
    from aeforge.artifact import RunWriter
    from aeforge.edge.split.config import load_split_config
    from aeforge.edge.split.distributed import (
        Checkpointer,
        context_from_env,
        distributed_session,
        main_first,
        resume_dir,
    )
    from aeforge.edge.split.multitask import save_multitask_run, train_multitask
    from aeforge.edge.split.train import save_split_run, train_split_experiment

    config = load_split_config(args.config, overrides=parse_overrides(args.set))
    out = Path(args.out) if args.out else Path("runs") / config.name
    resume = getattr(args, "resume", False)
    multitask = config.model.tasks is not None
    train, save = (train_multitask, save_multitask_run) if multitask else (train_split_experiment, save_split_run)
    checkpointer = Checkpointer(resume_dir(out), resume=resume)
    backend = getattr(args, "dist_backend", "auto")
    context_from_env(backend).local_batch(config.train.batch_size)  # before joining: a bad world fails fast
    # under torchrun: one process a GPU (nccl) or CPU process (gloo); rank 0 alone writes
    with distributed_session(backend) as ctx:

        def check_targets() -> None:  # fail before training
            RunWriter(out, kind="split", overwrite=args.force).check_target()
            if args.force and not resume:
                checkpointer.discard()
            checkpointer.check()

        main_first(ctx, check_targets)
        result = train(config, progress=False if args.quiet else None, dist=ctx,  # type: ignore[operator]
                       checkpointer=checkpointer)
        main_first(ctx, lambda: save(result, out, overwrite=args.force, command=sys.argv))  # type: ignore[operator]
        if not ctx.is_main:
            return EXIT_OK
        checkpointer.discard()  # the run is published: the resume checkpoints are no longer needed
    if ctx.distributed:
        print(f"trained on {ctx.world_size} processes ({ctx.backend}, global batch {config.train.batch_size})")
    metrics = result.metrics
    print(f"run: {out}")
    if multitask:
        for name, found in metrics["tasks"].items():
            print(f"  {name} ({found['kind']}): {found['metric']} {found['student']:.4g} "
                  f"(teacher {found['teacher']:.4g})")
        print(f"  code {metrics['code_shape']} {metrics['code_type']}: {metrics['bytes_per_sample']:.0f} bytes per "
              "sample for all tasks")
        return EXIT_OK
    print(", ".join(f"{key} {value:.4g}" if isinstance(value, float) else f"{key} {value}"
                    for key, value in metrics.items() if not isinstance(value, (dict, list))))
    return EXIT_OK


def _split_artifact_dir(path: str) -> Path:
    """An exported split directory (with split.json), given it or the run it was exported into."""
    from aeforge.errors import ArtifactError

    given = Path(path)
    for candidate in (given, given / "split"):
        if (candidate / "split.json").is_file():
            return candidate
    raise ArtifactError(f"{given}: no split.json here or in {given / 'split'}; "
                        f"run `aeforge export split {given}` first")


def _cmd_export_split(args: argparse.Namespace) -> int:
    from aeforge.edge.split.export import export_split

    record = export_split(Path(args.run), out_dir=args.out, opset=args.opset, overwrite=args.force)
    if args.json:
        print(json.dumps(record, indent=2, default=str))
        return EXIT_OK
    code = record["code"]
    if record.get("tasks"):
        files = ", ".join(task["file"] for task in record["tasks"])
        print(f"split export: {record['path']} (head.onnx, {files}, split.json; opset {record['opset']})")
        print(f"  {record['backbone']} split after {record['split_after']}: code {code['shape']} {code['type']}")
        for name, found in record["check"]["tasks"].items():
            print(f"  check {name}: ORT vs PyTorch max relative error {found['max_rel']:.3g}")
        return EXIT_OK
    print(f"split export: {record['path']} (head.onnx, tail.onnx, full.onnx, split.json; opset {record['opset']})")
    print(f"  {record['backbone']} split after {record['split_after']}: code {code['shape']} {code['type']}")
    if record.get("entropy"):
        entropy = record["entropy"]
        print(f"  entropic: range coder {entropy['coder']} (constriction {entropy['library_version']}), CDF tables "
              f"{entropy['cdf_file']} sha256 {entropy['cdf_sha256'][:16]}...")
    print("  check: " + ", ".join(f"{key} {value}" for key, value in record["check"].items()
                                  if not isinstance(value, (dict, list))))
    return EXIT_OK


def _cmd_export_triton(args: argparse.Namespace) -> int:
    from aeforge.edge.split.triton_repo import write_triton_repository

    model_dir = write_triton_repository(_split_artifact_dir(args.run), Path(args.out), model_name=args.model_name,
                                        max_batch_size=args.max_batch)
    print(f"Triton model repository: {model_dir} (tritonserver --model-repository {Path(args.out)})")
    return EXIT_OK


def _cmd_serve_tail(args: argparse.Namespace) -> int:
    from aeforge.edge.split.launch import security_label, tail_server
    from aeforge.edge.split.security import host_port

    artifact = _split_artifact_dir(args.run)
    server = tail_server(artifact, args)
    server.start()
    print(f"serving {artifact} ({args.transport}, {security_label(args)}, {args.backend}) on "
          f"{host_port(args.host, server.port)}; fingerprint {server.fingerprint[:16]}; Ctrl-C stops", flush=True)
    try:
        server.wait()  # the ZeroMQ server raises here when its serving thread dies
    finally:
        server.stop()
    return EXIT_OK


def _cmd_split_run(args: argparse.Namespace) -> int:
    import numpy as np

    from aeforge.edge.split.launch import split_client
    from aeforge.errors import DataError

    path = Path(args.input)
    if not path.is_file():
        raise DataError(f"{path}: input file not found")
    try:
        images = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise DataError(f"{path}: not a numpy .npy array: {error}") from None
    artifact = _split_artifact_dir(args.run)
    with split_client(artifact, args) as client:
        expected = tuple(client.artifact.input_shape[1:])
        if images.ndim == 3:
            images = images[None]
        if tuple(images.shape[1:]) != expected:
            raise DataError(f"{path}: images of shape {images.shape[1:]} given, the head expects {expected}")
        images = _split_float_images(images, args.uint8, path)
        if args.tasks is not None or client.artifact.tasks:  # multi-task export: every task, or those named
            names = [name.strip() for name in args.tasks.split(",") if name.strip()] if args.tasks else None
            tasks_result = client.infer_tasks(np.ascontiguousarray(images, dtype=np.float32), names)
            if args.output:
                arrays = {f"{task}_{key}": value for task, outputs in tasks_result.outputs.items()
                          for key, value in outputs.items()}
                _write_npz_atomic(Path(args.output), arrays)
            print(json.dumps(tasks_result.as_dict(), indent=2))
            return EXIT_OK
        result = client.infer(np.ascontiguousarray(images, dtype=np.float32))
    if args.output:
        from aeforge.artifact import write_npy_atomic

        write_npy_atomic(Path(args.output), result.logits)
    print(json.dumps(result.as_dict(), indent=2))
    return EXIT_OK


def _write_npz_atomic(path: Path, arrays: dict) -> None:
    """Every output of a multi-task request as one ``.npz`` (``<task>_<output>``), through a temporary file."""
    import os
    import tempfile

    import numpy as np

    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".npz", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as stream:
            np.savez(stream, **arrays)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _split_float_images(images: object, uint8: str | None, path: Path) -> object:
    """The head's float input: float arrays as given; uint8 only with ``--uint8`` saying how to scale it."""
    import numpy as np

    from aeforge.errors import DataError

    array = np.asarray(images)
    if array.dtype.kind == "f":
        return array
    if array.dtype == np.uint8 and uint8 == "unit":
        return array.astype(np.float32) / np.float32(255.0)
    if array.dtype == np.uint8 and uint8 == "symmetric":
        return array.astype(np.float32) / np.float32(127.5) - np.float32(1.0)
    if array.dtype == np.uint8:
        raise DataError(f"{path}: uint8 images given; the head takes float32 normalised as in training. Say how to "
                        "scale them: --uint8 unit (x / 255, in [0, 1]) or --uint8 symmetric (x / 127.5 - 1, in "
                        "[-1, 1], what aeforge's split training uses), or save float32 images")
    raise DataError(f"{path}: images of dtype {array.dtype}; the head takes float32 (normalised as in training)")



def add_split_commands(sub: argparse._SubParsersAction, export_sub: argparse._SubParsersAction) -> None:
    """``export split``, ``export triton``, ``serve tail`` and ``split run``."""
    split_export = export_sub.add_parser("split", help="split run -> head.onnx (QDQ), tail.onnx (multi-task: "
                                                       "tail_<task>.onnx each), split.json")
    split_export.add_argument("run", help="split run directory (aeforge train on a split config)")
    split_export.add_argument("--out", help="output directory (default RUN/split)")
    split_export.add_argument("--opset", type=int, default=18, help="ONNX opset (default 18)")
    split_export.add_argument("--json", action="store_true")
    split_export.add_argument("--force", action="store_true", help="replace an existing export")
    split_export.set_defaults(handler=_cmd_export_split)

    triton = export_sub.add_parser("triton", help="Triton model repository of the split tail (config.pbtxt)")
    triton.add_argument("run", help="split run or its exported directory")
    triton.add_argument("--out", required=True, help="model repository directory")
    triton.add_argument("--model-name", default="aeforge_tail")
    triton.add_argument("--max-batch", type=int, default=64)
    triton.set_defaults(handler=_cmd_export_triton)

    serve = sub.add_parser("serve", help="serve a split tail (KServe v2 gRPC, TCP or ZeroMQ fast path)")
    serve_sub = serve.add_subparsers(dest="what", metavar="WHAT", required=True)
    tail = serve_sub.add_parser("tail", help="the server half of a split model")
    tail.add_argument("run", help="split run or its exported directory")
    tail.add_argument("--host", default="127.0.0.1",
                      help="bind address (non-loopback needs TLS or CURVE, or --insecure, and a token)")
    tail.add_argument("--port", type=int, default=8001)
    tail.add_argument("--token", help="shared secret (>= 16 bytes) clients must send; visible in ps: prefer "
                                      "--token-file or --token-env")
    tail.add_argument("--token-file", help="file whose first line is the token")
    tail.add_argument("--token-env", metavar="VAR", help="environment variable holding the token")
    tail.add_argument("--transport", choices=["grpc", "tcp", "zmq"], default="grpc")
    tail.add_argument("--max-batch", type=int, default=64)
    tail.add_argument("--backend", choices=["ort", "trt"], default="ort")
    tail.add_argument("--tls-cert", help="grpc/tcp: PEM certificate chain of the server")
    tail.add_argument("--tls-key", help="grpc/tcp: PEM private key of --tls-cert")
    tail.add_argument("--tls-client-ca", help="grpc/tcp: PEM CA; clients must present a certificate it signed")
    tail.add_argument("--curve-secret-key", help="zmq: the server's CURVE keypair file (zmq.auth .key_secret)")
    tail.add_argument("--curve-clients", metavar="DIR", help="zmq: only clients whose public key file is in DIR")
    tail.add_argument("--insecure", action="store_true", help="allow plaintext on a non-loopback host")
    tail.add_argument("--handshake-timeout-s", type=float, default=5.0,
                      help="seconds a new connection has for its TLS handshake and HELLO (default 5)")
    tail.set_defaults(handler=_cmd_serve_tail)

    split = sub.add_parser("split", help="split-computing client")
    split_sub = split.add_subparsers(dest="what", metavar="WHAT", required=True)
    split_run = split_sub.add_parser("run", help="head here, tail on the server: logits of images in a .npy")
    split_run.add_argument("run", help="split run or its exported directory")
    split_run.add_argument("--input", required=True, help=".npy float32 images (N, C, H, W)")
    split_run.add_argument("--output", help=".npy to write the logits to (multi-task: an .npz of every output)")
    split_run.add_argument("--tasks", help="multi-task exports: comma-separated tasks to run, e.g. cls,det,seg "
                                           "(default: all; over grpc, tcp and zmq alike)")
    split_run.add_argument("--uint8", choices=["unit", "symmetric"],
                           help="uint8 images: scale x/255 (unit) or x/127.5-1 (symmetric); refused without it")
    split_run.add_argument("--host", default="127.0.0.1")
    split_run.add_argument("--port", type=int, default=8001)
    split_run.add_argument("--token", help="the server's token (visible in ps: prefer --token-file/--token-env)")
    split_run.add_argument("--token-file", help="file whose first line is the token")
    split_run.add_argument("--token-env", metavar="VAR", help="environment variable holding the token")
    split_run.add_argument("--transport", choices=["grpc", "tcp", "zmq"], default="grpc")
    split_run.add_argument("--compression", choices=["none", "zlib", "zstd"], default="none")
    split_run.add_argument("--tls-ca", help="grpc/tcp: PEM CA that signed the server's certificate (verified)")
    split_run.add_argument("--tls-cert", help="grpc/tcp: PEM client certificate (servers with --tls-client-ca)")
    split_run.add_argument("--tls-key", help="grpc/tcp: PEM private key of --tls-cert")
    split_run.add_argument("--tls-server-name", help="grpc/tcp: name in the server's certificate (default --host)")
    split_run.add_argument("--curve-server-key", help="zmq: the server's CURVE public key file (zmq.auth .key)")
    split_run.add_argument("--curve-secret-key", help="zmq: this client's CURVE keypair file (default: a fresh one)")
    split_run.add_argument("--insecure", action="store_true", help="allow plaintext to a non-loopback host")
    split_run.add_argument("--timeout-s", type=float, default=10.0, help="seconds to wait for a reply (default 10)")
    split_run.set_defaults(handler=_cmd_split_run)
