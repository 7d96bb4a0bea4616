"""Reading QKeras model files without TensorFlow: Keras model JSON and Keras 2 HDF5 weights.

:func:`read_model_config` reads the architecture (``model.to_json()``, or the ``model_config``
attribute of a full-model ``.h5``), :func:`ordered_layers` puts a Sequential or linear-chain
Functional model's layers in execution order, :func:`read_keras_weights` reads the weights
(``model.save_weights('w.h5')`` or the ``model_weights`` group of ``model.save('m.h5')``).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from aeforge.errors import ConfigError, DataError, ToolUnavailableError

if TYPE_CHECKING:
    import h5py


@dataclass(frozen=True)
class KerasLayer:
    """One Keras layer entry: its name, class (without a ``Package>`` prefix) and config."""

    name: str
    class_name: str
    config: dict[str, Any]


def read_model_config(model_json: Path | None, weights_h5: Path) -> tuple[dict[str, Any], str]:
    """The Keras model config and the file it came from (the JSON, or the full-model ``.h5``)."""
    if model_json is None:
        return _read_h5_model_config(weights_h5), str(weights_h5)
    return _read_json(model_json), str(model_json)


# ------------------------------------------------------------------------------------------- JSON
def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"{path}: model JSON not found")
    try:
        text = path.read_text(encoding="utf-8")
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise ConfigError(f"{path}:{error.lineno}:{error.colno}: invalid JSON: {error.msg}") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path}: cannot read model JSON: {error}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: not a Keras model JSON (expected an object with 'class_name' and 'config')")
    return data


def _read_h5_model_config(path: Path) -> dict[str, Any]:
    with _open_h5(path) as handle:
        raw = handle.attrs.get("model_config")
    if raw is None:
        raise ConfigError(f"{path}: no 'model_config' attribute (a weights-only file); give the model JSON as well")
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8")
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as error:
        raise ConfigError(f"{path}: model_config attribute is not valid JSON: {error.msg}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: model_config attribute is not a Keras model config")
    return data


def _layer_entry(raw: Any, index: int, source: str) -> tuple[KerasLayer, Any]:
    if not isinstance(raw, Mapping) or not isinstance(raw.get("class_name"), str):
        raise ConfigError(f"{source}: layers[{index}] is not a Keras layer entry (no 'class_name')")
    config = raw.get("config") or {}
    if not isinstance(config, Mapping):
        raise ConfigError(f"{source}: layers[{index}] ({raw['class_name']}): 'config' is not a mapping")
    name = config.get("name", raw.get("name"))
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{source}: layers[{index}] ({raw['class_name']}) has no name")
    class_name = raw["class_name"].rsplit(">", 1)[-1]  # "Package>Class" of registered objects
    return KerasLayer(name, class_name, dict(config)), raw.get("inbound_nodes")


def ordered_layers(model: Mapping[str, Any], source: str) -> list[KerasLayer]:
    """The model's layers in execution order; a Functional model must be a linear chain."""
    class_name = model.get("class_name")
    config = model.get("config")
    if class_name == "Sequential":
        raw_layers = config.get("layers") if isinstance(config, Mapping) else config
        if not isinstance(raw_layers, list):
            raise ConfigError(f"{source}: Sequential model without a 'layers' list")
        return [_layer_entry(raw, i, source)[0] for i, raw in enumerate(raw_layers)]
    if class_name not in ("Functional", "Model"):
        raise ConfigError(
            f"{source}: unsupported Keras model class {class_name!r}; expected 'Sequential' or 'Functional'"
        )
    if not isinstance(config, Mapping) or not isinstance(config.get("layers"), list):
        raise ConfigError(f"{source}: {class_name} model without a 'layers' list")
    layers: dict[str, KerasLayer] = {}
    inbound: dict[str, list[str]] = {}
    for index, raw in enumerate(config["layers"]):
        layer, nodes = _layer_entry(raw, index, source)
        if layer.name in layers:
            raise ConfigError(f"{source}: duplicate layer name {layer.name!r}")
        layers[layer.name] = layer
        inbound[layer.name] = _inbound_layers(nodes, layer, source)
    consumers: dict[str, list[str]] = {name: [] for name in layers}
    for name, sources in inbound.items():
        for parent in sources:
            if parent not in layers:
                raise ConfigError(f"{source}: layer {name!r} takes its input from unknown layer {parent!r}")
            consumers[parent].append(name)
    roots = [name for name, sources in inbound.items() if not sources]
    if len(roots) != 1:
        raise ConfigError(f"{source}: expected one model input, found {len(roots)}: {roots}")
    order = [roots[0]]
    while consumers[order[-1]]:
        following = consumers[order[-1]]
        if len(following) > 1:
            raise ConfigError(
                f"{source}: layer {order[-1]!r} feeds {len(following)} layers {following}; "
                "branches are not supported (only a linear chain of layers)"
            )
        order.append(following[0])
    unreached = [name for name in layers if name not in order]
    if unreached:
        raise ConfigError(f"{source}: layer(s) {unreached} are not on the chain from the input to the output")
    outputs = config.get("output_layers")
    if outputs and isinstance(outputs[0], str):  # Keras 3 writes a single output as a flat list
        outputs = [outputs]
    if outputs:
        names = [entry[0] for entry in outputs if isinstance(entry, list) and entry]
        if names != [order[-1]]:
            raise ConfigError(f"{source}: model outputs {names} are not the end of the chain {order[-1]!r}")
    return [layers[name] for name in order]


def _inbound_layers(nodes: Any, layer: KerasLayer, source: str) -> list[str]:
    """Names of the layers feeding ``layer`` (Keras 2 nested lists or Keras 3 ``keras_history``)."""
    if not nodes:
        return []
    if not isinstance(nodes, list):
        raise ConfigError(f"{source}: layer {layer.name!r}: cannot read 'inbound_nodes'")
    if len(nodes) > 1:
        raise ConfigError(
            f"{source}: layer {layer.name!r} ({layer.class_name}) is called {len(nodes)} times (a shared layer); "
            "only a linear chain of layers is supported"
        )
    node = nodes[0]
    names: list[str] = []
    if isinstance(node, Mapping):  # Keras 3: {"args": [...], "kwargs": {...}}
        _collect_history(node.get("args", []), names)
    elif isinstance(node, list):  # Keras 2: [[name, node_index, tensor_index, kwargs], ...]
        for entry in node:
            if isinstance(entry, list) and entry and isinstance(entry[0], str):
                names.append(entry[0])
            else:
                raise ConfigError(f"{source}: layer {layer.name!r}: cannot read inbound node {entry!r}")
    if len(names) != 1:
        raise ConfigError(
            f"{source}: layer {layer.name!r} ({layer.class_name}) has {len(names)} inputs {names}; "
            "branches and merges are not supported (only a linear chain of layers)"
        )
    return names


def _collect_history(value: Any, names: list[str]) -> None:
    if isinstance(value, Mapping):
        is_tensor = value.get("class_name") == "__keras_tensor__"
        history = value.get("config", {}).get("keras_history") if is_tensor else None
        if history:
            names.append(history[0])
            return
        for item in value.values():
            _collect_history(item, names)
    elif isinstance(value, list):
        for item in value:
            _collect_history(item, names)


# ------------------------------------------------------------------------------------------- HDF5
def _h5py() -> Any:
    try:
        import h5py
    except ImportError:
        raise ToolUnavailableError("reading Keras HDF5 files needs h5py (pip install h5py)") from None
    return h5py


@contextlib.contextmanager
def _open_h5(path: Path) -> Iterator[h5py.File]:
    h5py = _h5py()
    if not path.is_file():
        raise DataError(f"{path}: weights file not found")
    try:
        handle = h5py.File(path, "r")
    except OSError as error:
        raise DataError(f"{path}: not a readable HDF5 file: {error}") from None
    with handle:
        yield handle


def _attr_strings(node: h5py.Group, name: str) -> list[str] | None:
    """A string-list attribute as Keras writes it (possibly chunked as ``name0``, ``name1``, ...)."""
    if name in node.attrs:
        values = list(node.attrs[name])
    elif f"{name}0" in node.attrs:
        values, chunk = [], 0
        while f"{name}{chunk}" in node.attrs:
            values.extend(node.attrs[f"{name}{chunk}"])
            chunk += 1
    else:
        return None
    return [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in values]


def read_keras_weights(path: str | Path) -> dict[str, list[tuple[str, np.ndarray]]]:
    """Keras 2 HDF5 weights: layer name -> ``[(weight name, array), ...]`` in stored order.

    Reads ``model.save_weights('w.h5')`` files and the ``model_weights`` group of
    ``model.save('m.h5')``; refuses other layouts (e.g. Keras 3 ``.weights.h5``) with a DataError.
    """
    path = Path(path)
    h5py = _h5py()
    with _open_h5(path) as handle:
        root = handle.get("model_weights", handle)
        layer_names = _attr_strings(root, "layer_names")
        if layer_names is None:
            layout = " (this looks like a Keras 3 .weights.h5 file)" if "layers" in root or "vars" in root else ""
            raise DataError(
                f"{path}: not a Keras 2 HDF5 weights file: no 'layer_names' attribute{layout}; "
                "save with model.save_weights('weights.h5') under Keras 2 / QKeras"
            )
        weights: dict[str, list[tuple[str, np.ndarray]]] = {}
        for layer in layer_names:
            if layer not in root:
                raise DataError(f"{path}: layer {layer!r} is listed in layer_names but has no group")
            group = root[layer]
            arrays = []
            for weight_name in _attr_strings(group, "weight_names") or []:
                dataset = group.get(weight_name)
                if not isinstance(dataset, h5py.Dataset):
                    raise DataError(f"{path}: layer {layer!r}: weight {weight_name!r} is listed but not stored")
                arrays.append((weight_name, np.asarray(dataset[()])))
            weights[layer] = arrays
    return weights
