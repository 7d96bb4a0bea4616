"""The runner interface shared by every backend (after Polygraphy's ``BaseRunner``).

::

    with OrtRunner("model.onnx") as runner:
        meta = runner.input_metadata()            # {"input": TensorMeta(float32, (None, 1, 8, 8))}
        outputs = runner.infer({"input": x})      # {"output": array}
        runner.last_inference_time_s

``activate()`` allocates (sessions, engines, device memory), ``deactivate()`` frees; the context
manager does both. ``infer`` validates the feed against ``input_metadata()`` (names, dtype, shape
with ``None`` for dynamic dimensions) and raises :class:`~aeforge.errors.DataError` naming the input,
what was expected and what was given.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

from aeforge.errors import AeforgeError, DataError

Shape = tuple[int | None, ...]


class TensorMeta(NamedTuple):
    """dtype and shape of one tensor; ``None`` marks a dynamic dimension."""

    dtype: np.dtype
    shape: Shape


def normalize_shape(shape: Sequence[Any]) -> Shape:
    """Dimensions as ints, with ``None`` for dynamic ones (``None``, ``-1``, symbolic names)."""
    return tuple(d if isinstance(d, (int, np.integer)) and d >= 0 else None for d in shape)


def format_shape(shape: Sequence[int | None]) -> str:
    """``(N, 1, 8, 8)``-style text; dynamic dimensions print as ``N``."""
    return "(" + ", ".join("N" if d is None else str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"


def check_feed(
    feed: Mapping[str, Any], metadata: Mapping[str, TensorMeta], runner: str,
    accepted: dict[str, tuple[int, ...]] | None = None,
) -> None:
    """Raise DataError unless ``feed`` has exactly the inputs of ``metadata`` with their dtype and shape.

    ``accepted`` (name -> shape already validated) lets a runner skip re-checking a shape it has
    seen; the fast path costs well under a microsecond per input, the messages are built only on error.
    """
    if len(feed) == len(metadata):
        for name, (dtype, shape) in metadata.items():
            array = feed.get(name)
            if not isinstance(array, np.ndarray) or (array.dtype is not dtype and array.dtype != dtype):
                break
            got = array.shape
            if accepted is not None and accepted.get(name) == got:
                continue
            if len(got) != len(shape):
                break
            for expected, given in zip(shape, got, strict=True):
                if expected is not None and expected != given:
                    break
            else:
                if accepted is not None:
                    accepted[name] = got
                continue
            break
        else:
            return
    _raise_feed_error(feed, metadata, runner)


def _raise_feed_error(feed: Mapping[str, Any], metadata: Mapping[str, TensorMeta], runner: str) -> None:
    """The DataError naming what is wrong with ``feed`` (the slow path of :func:`check_feed`)."""
    if feed.keys() != metadata.keys():
        missing = [name for name in metadata if name not in feed]
        extra = [name for name in feed if name not in metadata]
        parts = []
        if missing:
            parts.append(f"missing input(s) {', '.join(map(repr, missing))}")
        if extra:
            parts.append(f"unknown input(s) {', '.join(map(repr, extra))}")
        raise DataError(f"{runner}: {'; '.join(parts)}; the model takes {', '.join(map(repr, metadata))}")
    for name, (dtype, shape) in metadata.items():
        array = feed[name]
        if not isinstance(array, np.ndarray):
            raise DataError(f"{runner}: input {name!r}: expected a numpy array, got {type(array).__name__}")
        if array.dtype != dtype:
            raise DataError(f"{runner}: input {name!r}: expected dtype {dtype}, got {array.dtype}")
        got = array.shape
        if len(got) != len(shape) or any(e is not None and e != g for e, g in zip(shape, got, strict=True)):
            raise DataError(
                f"{runner}: input {name!r}: expected shape {format_shape(shape)}, got {format_shape(got)}"
            )
    raise DataError(f"{runner}: invalid feed")  # unreachable: the fast path found a defect


class Runner:
    """Base class: subclasses implement ``_activate``, ``_deactivate``, ``_input_metadata`` and ``_infer``."""

    _counts = itertools.count()

    def __init__(self, name: str | None = None, prefix: str = "runner") -> None:
        self.name = name or f"{prefix}-{next(Runner._counts)}"
        self.is_active = False
        self.last_inference_time_s: float | None = None
        self._metadata: dict[str, TensorMeta] | None = None
        self._accepted_shapes: dict[str, tuple[int, ...]] = {}

    # -------------------------------------------------------------- lifecycle
    def __enter__(self) -> Runner:
        self.activate()
        return self

    def __exit__(self, *exc: object) -> None:
        self.deactivate()

    def activate(self) -> None:
        """Allocate what inference needs; a second call while active does nothing."""
        if self.is_active:
            return
        self._activate()
        self.is_active = True
        self._metadata = None
        self._accepted_shapes = {}

    def deactivate(self) -> None:
        """Free what :meth:`activate` allocated; a call while inactive does nothing."""
        if not self.is_active:
            return
        try:
            self._deactivate()
        finally:
            self.is_active = False
            self._metadata = None
            self._accepted_shapes = {}
            self.last_inference_time_s = None

    # -------------------------------------------------------------- queries
    def _require_active(self, what: str) -> None:
        if not self.is_active:
            raise AeforgeError(f"{self.name}: activate the runner (or use 'with runner:') before {what}")

    def input_metadata(self) -> dict[str, TensorMeta]:
        """Input name -> :class:`TensorMeta` (dtype, shape with ``None`` for dynamic dimensions)."""
        self._require_active("input_metadata()")
        if self._metadata is None:
            self._metadata = dict(self._input_metadata())
        return dict(self._metadata)

    def infer(self, feed: Mapping[str, np.ndarray], check_inputs: bool = True) -> dict[str, np.ndarray]:
        """Run one inference; outputs by name. Sets :attr:`last_inference_time_s` (the backend call only)."""
        if not self.is_active:
            self._require_active("infer()")
        if check_inputs:
            if self._metadata is None:
                self._metadata = dict(self._input_metadata())
            check_feed(feed, self._metadata, self.name, self._accepted_shapes)
        return self._infer(feed)

    # -------------------------------------------------------------- to implement
    def _activate(self) -> None:
        raise NotImplementedError

    def _deactivate(self) -> None:
        raise NotImplementedError

    def _input_metadata(self) -> Mapping[str, TensorMeta]:
        raise NotImplementedError

    def _infer(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the backend and set ``self.last_inference_time_s`` around the backend call."""
        raise NotImplementedError

