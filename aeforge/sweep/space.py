"""Sweep files: a YAML spec read into a validated :class:`SweepSpec` (search space, sampler, cost, resources).

A sweep file names a base experiment, overrides applied to every trial, and the dimensions to search::

    name: econt-bits
    base: econt.yaml                # experiment file: relative to this file, else a packaged config; its
                                    # model.family (econt, autoencoder) picks the keys, trainer and metrics
    set:                            # dotted config keys applied to every trial (e.g. shorter training)
      train.float_epochs: 20
      data.synthetic.n_events: 20000
    space:                          # dotted config key -> list of values, or {low, high[, step][, log]}
      quant.weight.bits: [4, 5, 6, 8]   # `.bits` / `.int_bits` / ... of a fixed-point type: only that field
      quant.latent.bits: [3, 5, 7, 9]   # (ap_ufixed<9,1> -> ap_ufixed<3,1>: the integer bits are kept)
      model.filters: {low: 4, high: 16, step: 4}
    sampler: {name: grid, n_trials: 16, seed: 0}      # grid | random | tpe | nsga2 (Optuna's samplers)
    objectives: [emd, lut, energy_j, bytes]           # the Pareto front is over these (auc is maximised)
    cost: {synth: auto, energy: auto, node_nm: 65, pipeline_stages: null, verify_n: 1000, rtl: true}
                                                      # rtl: false -> tool-free estimate of the model, no RTL
    quality: {max_events: 5000}                       # ECON-T: events the EMD is averaged over
    resources: {num_cpus: 1, num_gpus: 0, memory_mb: null, max_retries: 2, timeout_s: null}

Every key is checked before anything runs: an unknown key, an empty list, a value of the wrong type or one the
experiment config rejects raises :class:`~aeforge.errors.ConfigError` naming the sweep file, line and field,
e.g. ``sweep.yaml:9: space.quant.weigth.bits: unknown config key (did you mean 'weight'?)``.

The family-specific parts (config dataclass, trainer, quality objectives such as ECON-T's ``emd`` or the
autoencoder's ``mse`` and ``auc``) come from the family's adapter in :mod:`aeforge.sweep.families`. For a base with
``model.family: autoencoder`` the keys are those of :class:`~aeforge.quantize.autoencoder.AutoencoderConfig`
(``quant.weight.bits``, ``quant.activation.bits``, ``model.input_type.bits``, ``train.*``, ``data.*``, ...) and
the objectives ``mse``, ``auc`` (maximised; needs labelled generated data), ``val_loss`` and the hardware ones.

This module needs only PyYAML and the config modules (an autoencoder base also loads Brevitas, which checks its
layer types); Optuna is imported when distributions are made.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import difflib
import hashlib
import json
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aeforge.config import compose_located, read_yaml_text
from aeforge.errors import ConfigError, QuantizationError
from aeforge.fixedpoint import FixedPoint
from aeforge.sweep.families import SweepFamily, family_of, get_family

SAMPLERS = ("grid", "random", "tpe", "nsga2")
SYNTH_TARGETS = ("auto", "none", "xc7", "ecp5", "ice40")
ENERGY_METHODS = ("auto", "netlist", "mac")
FIXED_POINT_FIELDS = ("bits", "int_bits", "signed", "rounding", "overflow")
_TOP_KEYS = ("name", "base", "set", "space", "sampler", "objectives", "cost", "quality", "resources")
_SCALAR = (bool, int, float, str, type(None))
PACKAGED_CONFIGS = Path(__file__).resolve().parents[1] / "configs"


@dataclass(frozen=True)
class Dimension:
    """One searched config key: a list of values (categorical) or a numeric range."""

    key: str
    values: tuple[Any, ...] | None = None
    low: float | None = None
    high: float | None = None
    step: float | None = None
    log: bool = False
    integer: bool = False

    def distribution(self) -> Any:
        """The Optuna distribution of this dimension."""
        from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

        if self.values is not None:
            return CategoricalDistribution(list(self.values))
        if self.integer:
            return IntDistribution(int(self.low), int(self.high), step=int(self.step or 1), log=self.log)
        return FloatDistribution(float(self.low), float(self.high), step=self.step, log=self.log)

    def grid_values(self) -> list[Any] | None:
        """Every value of a finite dimension (None for a continuous range)."""
        if self.values is not None:
            return list(self.values)
        if self.integer:
            return list(range(int(self.low), int(self.high) + 1, int(self.step or 1)))
        if self.step is None:
            return None
        count = math.floor((self.high - self.low) / self.step + 1e-9) + 1
        return [round(self.low + i * self.step, 12) for i in range(count)]


@dataclass(frozen=True)
class SamplerSpec:
    name: str = "grid"
    n_trials: int = 0  # resolved: the grid size for grid, required for the others
    seed: int = 0


@dataclass(frozen=True)
class CostSpec:
    """How a trial's hardware cost is measured (``auto`` is resolved once per sweep by the driver)."""

    synth: str = "auto"  # Yosys target for LUT/FF, or "none": the tool-free estimate
    energy: str = "auto"  # "netlist" (Yosys generic gates) or "mac" (programmable-MAC model)
    node_nm: float = 65.0
    pipeline_stages: int | None = None
    verify_n: int = 1000
    rtl: bool = True  # False: no RTL is generated; LUT/FF/latency from the tool-free estimate of the model

    def resolved(self, yosys_available: bool) -> CostSpec:
        tools = yosys_available and self.rtl
        synth = ("xc7" if tools else "none") if self.synth == "auto" else self.synth
        energy = ("netlist" if tools else "mac") if self.energy == "auto" else self.energy
        return dataclasses.replace(self, synth=synth, energy=energy)

    def identity(self) -> dict[str, Any]:
        """The fields that define trials (``rtl`` only when off, so sweeps made before it existed resume)."""
        out = dataclasses.asdict(self)
        if out["rtl"]:
            del out["rtl"]
        return out


@dataclass(frozen=True)
class ResourceSpec:
    """What one trial asks for (Ray resource requests; ``num_cpus`` also sets torch's threads)."""

    num_cpus: float = 1.0
    num_gpus: float = 0.0
    memory_mb: int | None = None
    max_retries: int = 2
    timeout_s: float | None = None


@dataclass(frozen=True)
class SweepSpec:
    """A validated sweep file."""

    name: str
    source: str
    base: Path | None
    base_raw: dict[str, Any] = field(repr=False)  # base experiment + ``set``, as plain config values
    overrides: dict[str, Any]
    dimensions: tuple[Dimension, ...]
    sampler: SamplerSpec
    objectives: tuple[str, ...]
    cost: CostSpec
    max_events: int
    resources: ResourceSpec
    text: str = field(repr=False, default="")
    family: str = "econt"  # model.family of the base experiment

    @property
    def adapter(self) -> SweepFamily:
        """The family's sweep adapter (config class, trainer, quality metrics)."""
        return get_family(self.family)

    @property
    def directions(self) -> tuple[str, ...]:
        """``"min"`` or ``"max"`` for each objective."""
        known = self.adapter.objectives
        return tuple(known[name].direction for name in self.objectives)

    @property
    def keys(self) -> list[str]:
        return [d.key for d in self.dimensions]

    def distributions(self) -> dict[str, Any]:
        return {d.key: d.distribution() for d in self.dimensions}

    def grid(self) -> dict[str, list[Any]]:
        return {d.key: d.grid_values() or [] for d in self.dimensions}

    def grid_size(self) -> int | None:
        size = 1
        for dimension in self.dimensions:
            values = dimension.grid_values()
            if values is None:
                return None
            size *= len(values)
        return size

    def identity(self) -> str:
        """Hash of what defines the trials (not ``n_trials`` or resources): a resume must match it."""
        payload = {
            "base_raw": self.base_raw, "space": [dataclasses.asdict(d) for d in self.dimensions],
            "sampler": [self.sampler.name, self.sampler.seed], "objectives": self.objectives,
            "cost": self.cost.identity(), "max_events": self.max_events,
        }
        return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]

    def trial_config(self, params: dict[str, Any]) -> dict[str, Any]:
        """The plain experiment config of one trial (base, ``set``, then the sampled values)."""
        raw = copy.deepcopy(self.base_raw)
        for key, value in params.items():
            _apply(raw, key, value, self.adapter.config_class)
        return raw

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "source": self.source, "family": self.family,
            "base": str(self.base) if self.base else None,
            "set": self.overrides,
            "space": {d.key: (list(d.values) if d.values is not None else
                              {"low": d.low, "high": d.high, "step": d.step, "log": d.log}) for d in self.dimensions},
            "sampler": dataclasses.asdict(self.sampler), "objectives": list(self.objectives),
            "cost": dataclasses.asdict(self.cost), "quality": {"max_events": self.max_events},
            "resources": dataclasses.asdict(self.resources),
        }


def build_config(raw: dict[str, Any], source: str = "<trial>") -> Any:
    """The validated config of a plain trial config, by its ``model.family`` (``source`` prefixes errors)."""
    return get_family(family_of(raw)).build(raw, source)


# ------------------------------------------------------------------------------------ parsing
class _Located:
    """YAML values with the line of every mapping key and sequence item (``lines[dotted] = line``)."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.lines: dict[str, int] = {}

    def where(self, dotted: str) -> str:
        probe = dotted
        while probe and probe not in self.lines:
            probe = probe.rsplit(".", 1)[0] if "." in probe else ""
        line = self.lines.get(probe)
        location = f"{self.source}:{line}" if line else self.source
        return f"{location}: {dotted}" if dotted else location

    def error(self, dotted: str, message: str) -> ConfigError:
        return ConfigError(f"{self.where(dotted)}: {message}")



def load_sweep(path: str | Path) -> SweepSpec:
    """Read and validate a sweep file (see the module docstring)."""
    path = Path(path)
    return parse_sweep(read_yaml_text(path, "sweep file"), source=str(path), base_dir=path.resolve().parent)


def parse_sweep(text: str, source: str = "<sweep>", base_dir: Path | None = None) -> SweepSpec:
    """Parse sweep YAML text; ``base`` paths are relative to ``base_dir`` (default: the working directory)."""
    doc = _Located(source)
    raw, doc.lines = compose_located(text, source)
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}:1: a sweep file must be a mapping (keys: {', '.join(_TOP_KEYS)})")
    for key in raw:
        if key not in _TOP_KEYS:
            raise doc.error(str(key), f"unknown key{_suggest(str(key), _TOP_KEYS)}")
    name = _typed(doc, raw, "name", str, Path(source).stem if source != "<sweep>" else "sweep")
    family, base, base_raw = _base(doc, raw.get("base"), base_dir or Path.cwd())
    overrides = _mapping(doc, raw, "set")
    for key, value in overrides.items():
        dotted = f"set.{key}"
        _check_key(doc, dotted, key, family.config_class)
        _check_value(doc, dotted, value)
        try:
            _apply(base_raw, key, value, family.config_class)
            family.build(base_raw, source="")
        except ConfigError as error:
            raise doc.error(dotted, f"invalid value {value!r}: {str(error).removeprefix(': ')}") from None
    dimensions = _dimensions(doc, raw, base_raw, overrides, family)
    sampler = _sampler(doc, raw, dimensions)
    objectives = _objectives(doc, raw, family, base_raw)
    cost = _cost(doc, raw)
    quality = _mapping(doc, raw, "quality")
    _known(doc, "quality", quality, ("max_events",))
    max_events = _typed(doc, quality, "max_events", int, 5000, prefix="quality", minimum=1)
    resources = _resources(doc, raw)
    return SweepSpec(name=name, source=source, base=base, base_raw=base_raw, overrides=overrides,
                     dimensions=dimensions, sampler=sampler, objectives=objectives, cost=cost, max_events=max_events,
                     resources=resources, text=text, family=family.name)


def _suggest(key: str, known: typing.Iterable[str]) -> str:
    known = list(known)
    close = difflib.get_close_matches(key, known, n=1)
    return f" (did you mean {close[0]!r}?)" if close else f"; known keys: {', '.join(known)}"


def _known(doc: _Located, section: str, mapping: dict[str, Any], known: tuple[str, ...]) -> None:
    for key in mapping:
        if key not in known:
            raise doc.error(f"{section}.{key}", f"unknown key{_suggest(str(key), known)}")


def _mapping(doc: _Located, raw: dict[str, Any], key: str) -> dict[str, Any]:
    value = raw.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise doc.error(key, f"expected a mapping, got {type(value).__name__}")
    return dict(value)


def _typed(doc: _Located, raw: dict[str, Any], key: str, kind: type, default: Any, prefix: str = "",
           minimum: float | None = None, optional: bool = False) -> Any:
    dotted = f"{prefix}.{key}" if prefix else key
    value = raw.get(key, default)
    if value is None and (optional or default is None):
        return None
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if kind is float and isinstance(value, str):
        with contextlib.suppress(ValueError):
            value = float(value)
    if (isinstance(value, bool) and kind is not bool) or not isinstance(value, kind):
        names = {int: "an integer", float: "a number", str: "a string", bool: "true/false"}
        raise doc.error(dotted, f"expected {names.get(kind, kind.__name__)}, got {value!r}")
    if kind is float and not math.isfinite(value):
        raise doc.error(dotted, f"expected a finite number, got {value!r}")
    if minimum is not None and value < minimum:
        raise doc.error(dotted, f"must be >= {minimum:g}, got {value!r}")
    return value


def _base(doc: _Located, value: Any, base_dir: Path) -> tuple[SweepFamily, Path | None, dict[str, Any]]:
    """The base experiment's family adapter, path and plain config (ECON-T defaults without ``base``)."""
    if value is None:
        family = get_family("econt")
        return family, None, family.default_raw()
    if not isinstance(value, str) or not value:
        raise doc.error("base", f"expected the path of an experiment YAML file, got {value!r}")
    candidates = [Path(value)] if Path(value).is_absolute() else [base_dir / value, PACKAGED_CONFIGS / value]
    path = next((c for c in candidates if c.is_file()), None)
    if path is None:
        raise doc.error("base", f"experiment file {value!r} not found (looked in {base_dir} and {PACKAGED_CONFIGS})")
    from aeforge.edge.split.config import config_family

    try:
        family = get_family(config_family(path))
        base_raw = family.load_base(path)
    except ConfigError as error:
        raise doc.error("base", f"invalid base experiment: {error}") from None
    return family, path.resolve(), base_raw


def _field_hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _unwrap(hint: Any) -> Any:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        options = [o for o in typing.get_args(hint) if o is not type(None)]
        return options[0] if options else hint
    return hint


def _check_key(doc: _Located, dotted: str, key: str, root: type) -> None:
    """Raise unless ``key`` names a field of config class ``root`` (or a field of a fixed-point type)."""
    if not isinstance(key, str) or not key or any(not part for part in key.split(".")):
        raise doc.error(dotted, "expected a dotted config key such as quant.weight.bits")
    cls: Any = root
    parts = key.split(".")
    for index, part in enumerate(parts):
        if cls is FixedPoint:
            if part not in FIXED_POINT_FIELDS or index != len(parts) - 1:
                raise doc.error(dotted, f"a fixed-point type has the fields {', '.join(FIXED_POINT_FIELDS)}"
                                f"{_suggest(part, FIXED_POINT_FIELDS) if part not in FIXED_POINT_FIELDS else ''}")
            return
        if not dataclasses.is_dataclass(cls):
            raise doc.error(dotted, f"unknown config key: {'.'.join(parts[:index])} is a value, not a section")
        hints = _field_hints(cls)
        if part not in hints:
            raise doc.error(dotted, f"unknown config key{_suggest(part, hints)}")
        cls = _unwrap(hints[part])
    if dataclasses.is_dataclass(cls):
        raise doc.error(dotted, f"{key} is a section; name one of its keys ({', '.join(_field_hints(cls))})")


def _check_value(doc: _Located, dotted: str, value: Any) -> None:
    if not isinstance(value, _SCALAR):
        raise doc.error(dotted, f"expected a single value (number, string, true/false), got {type(value).__name__}")


def _apply(raw: dict[str, Any], key: str, value: Any, root: type) -> None:
    """Set dotted ``key`` in a plain config of class ``root``; ``section.type.bits`` rewrites one field of a
    fixed-point type."""
    parts = key.split(".")
    cls: Any = root
    target = raw
    for part in parts[:-1]:
        hint = _unwrap(_field_hints(cls)[part]) if dataclasses.is_dataclass(cls) else None
        if hint is FixedPoint:
            current = target.get(part)
            try:
                spec = FixedPoint.from_config(current, where="")
                target[part] = dataclasses.replace(spec, **{parts[-1]: value}).ap_type()
            except (QuantizationError, TypeError) as error:
                raise ConfigError(f"{key} = {value!r}: {error}") from None
            return
        cls = hint
        target = target.setdefault(part, {})
        if target is None:
            target = {}
    target[parts[-1]] = value


def _dimensions(doc: _Located, raw: dict[str, Any], base_raw: dict[str, Any],
                overrides: dict[str, Any], family: SweepFamily) -> tuple[Dimension, ...]:
    space = raw.get("space")
    if space is None or space == {}:
        raise doc.error("space", "the sweep needs at least one dimension (config key: list of values)")
    if not isinstance(space, dict):
        raise doc.error("space", f"expected a mapping of config keys to value lists, got {type(space).__name__}")
    dimensions = []
    for key, spec in space.items():
        dotted = f"space.{key}"
        _check_key(doc, dotted, key, family.config_class)
        for other in [*overrides, *(d.key for d in dimensions)]:
            if key == other or key.startswith(other + ".") or other.startswith(key + "."):
                where = "set" if other in overrides else "space"
                raise doc.error(dotted, f"overlaps {where}.{other}; give each config key once")
        if isinstance(spec, list):
            dimension = _categorical(doc, dotted, key, spec)
        elif isinstance(spec, dict):
            dimension = _range(doc, dotted, key, spec)
        else:
            raise doc.error(dotted, f"expected a list of values or {{low, high[, step][, log]}}, got {spec!r}")
        probes = list(dimension.values) if dimension.values is not None else [dimension.low, dimension.high]
        for index, value in enumerate(probes):
            item = f"{dotted}[{index}]" if dimension.values is not None else dotted
            trial = copy.deepcopy(base_raw)
            try:
                _apply(trial, key, value, family.config_class)
                family.build(trial, source="")
            except ConfigError as error:
                message = str(error).removeprefix(": ")
                raise doc.error(item, f"value {value!r} is not a valid config: {message}") from None
        dimensions.append(dimension)
    return tuple(dimensions)


def _categorical(doc: _Located, dotted: str, key: str, values: list[Any]) -> Dimension:
    if not values:
        raise doc.error(dotted, "empty list of values; give at least one")
    seen: list[Any] = []
    for index, value in enumerate(values):
        _check_value(doc, f"{dotted}[{index}]", value)
        if any(value == s and type(value) is type(s) for s in seen):
            raise doc.error(f"{dotted}[{index}]", f"duplicate value {value!r}")
        seen.append(value)
    return Dimension(key=key, values=tuple(values))


def _range(doc: _Located, dotted: str, key: str, spec: dict[str, Any]) -> Dimension:
    _known(doc, dotted, spec, ("low", "high", "step", "log"))
    for required in ("low", "high"):
        if required not in spec:
            raise doc.error(dotted, f"a range needs '{required}' (or give a list of values)")
    low = _typed(doc, spec, "low", float, None, prefix=dotted)
    high = _typed(doc, spec, "high", float, None, prefix=dotted)
    step = _typed(doc, spec, "step", float, None, prefix=dotted, optional=True)
    log = _typed(doc, spec, "log", bool, False, prefix=dotted)
    if not low < high:
        raise doc.error(dotted, f"low must be below high, got low {low:g}, high {high:g}")
    if step is not None and step <= 0:
        raise doc.error(f"{dotted}.step", f"must be > 0, got {step:g}")
    if log and (step is not None or low <= 0):
        raise doc.error(f"{dotted}.log", "a log range needs low > 0 and no step")
    def is_int(name: str) -> bool:
        return isinstance(spec.get(name), int) and not isinstance(spec.get(name), bool)

    integer = is_int("low") and is_int("high") and (step is None or is_int("step"))
    if integer:
        return Dimension(key=key, low=int(low), high=int(high), step=int(step) if step else None, log=log, integer=True)
    return Dimension(key=key, low=low, high=high, step=step, log=log)


def _sampler(doc: _Located, raw: dict[str, Any], dimensions: tuple[Dimension, ...]) -> SamplerSpec:
    value = raw.get("sampler", "grid")
    spec = {"name": value} if isinstance(value, str) else value
    if not isinstance(spec, dict):
        raise doc.error("sampler", f"expected a sampler name or a mapping, got {value!r}")
    _known(doc, "sampler", spec, ("name", "n_trials", "seed"))
    name = _typed(doc, spec, "name", str, "grid", prefix="sampler")
    if name not in SAMPLERS:
        raise doc.error("sampler.name" if isinstance(value, dict) else "sampler",
                        f"unknown sampler {name!r}{_suggest(name, SAMPLERS).replace('known keys', 'available')}")
    seed = _typed(doc, spec, "seed", int, 0, prefix="sampler", minimum=0)
    n_trials = _typed(doc, spec, "n_trials", int, None, prefix="sampler", minimum=1, optional=True)
    if name == "grid":
        size = 1
        for dimension in dimensions:
            values = dimension.grid_values()
            if values is None:
                raise doc.error(f"space.{dimension.key}", "a grid needs a list of values or a range with a step")
            size *= len(values)
        if n_trials is not None and n_trials > size:
            raise doc.error("sampler.n_trials", f"{n_trials} trials asked but the grid has only {size} points")
        n_trials = n_trials or size
    elif n_trials is None:
        raise doc.error("sampler", f"the {name} sampler needs n_trials")
    return SamplerSpec(name=name, n_trials=n_trials, seed=seed)


def _objectives(doc: _Located, raw: dict[str, Any], family: SweepFamily, base_raw: dict[str, Any]) -> tuple[str, ...]:
    known = family.objectives
    value = raw.get("objectives", list(family.default_objectives))
    if not isinstance(value, list) or not value:
        raise doc.error("objectives", f"expected a non-empty list of metric names ({', '.join(known)})")
    for index, name in enumerate(value):
        if not isinstance(name, str) or name not in known:
            close = difflib.get_close_matches(str(name), known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise doc.error(f"objectives[{index}]", f"unknown objective {name!r} for the {family.name} family{hint}; "
                            f"available: {', '.join(known)}")
        if name in value[:index]:
            raise doc.error(f"objectives[{index}]", f"duplicate objective {name!r}")
    problem = family.check_objectives(base_raw, tuple(value))
    if problem is not None:
        raise doc.error(f"objectives[{value.index(problem[0])}]", f"objective {problem[0]!r} {problem[1]}")
    return tuple(value)


def _cost(doc: _Located, raw: dict[str, Any]) -> CostSpec:
    spec = _mapping(doc, raw, "cost")
    _known(doc, "cost", spec, ("synth", "energy", "node_nm", "pipeline_stages", "verify_n", "rtl"))
    synth = _typed(doc, spec, "synth", str, "auto", prefix="cost")
    if synth not in SYNTH_TARGETS:
        raise doc.error("cost.synth", f"expected one of {', '.join(SYNTH_TARGETS)}, got {synth!r}")
    energy = _typed(doc, spec, "energy", str, "auto", prefix="cost")
    if energy not in ENERGY_METHODS:
        raise doc.error("cost.energy", f"expected one of {', '.join(ENERGY_METHODS)}, got {energy!r}")
    node_nm = _typed(doc, spec, "node_nm", float, 65.0, prefix="cost", minimum=1)
    stages = _typed(doc, spec, "pipeline_stages", int, None, prefix="cost", minimum=1, optional=True)
    verify_n = _typed(doc, spec, "verify_n", int, 1000, prefix="cost", minimum=1)
    rtl = _typed(doc, spec, "rtl", bool, True, prefix="cost")
    if not rtl and synth not in ("auto", "none"):
        raise doc.error("cost.synth", f"{synth} synthesizes the RTL, and cost.rtl is false; use none or auto")
    if not rtl and energy == "netlist":
        raise doc.error("cost.energy", "netlist synthesizes the RTL, and cost.rtl is false; use mac or auto")
    return CostSpec(synth=synth, energy=energy, node_nm=node_nm, pipeline_stages=stages, verify_n=verify_n, rtl=rtl)


def _resources(doc: _Located, raw: dict[str, Any]) -> ResourceSpec:
    spec = _mapping(doc, raw, "resources")
    _known(doc, "resources", spec, ("num_cpus", "num_gpus", "memory_mb", "max_retries", "timeout_s"))
    num_cpus = _typed(doc, spec, "num_cpus", float, 1.0, prefix="resources", minimum=0)
    num_gpus = _typed(doc, spec, "num_gpus", float, 0.0, prefix="resources", minimum=0)
    memory_mb = _typed(doc, spec, "memory_mb", int, None, prefix="resources", minimum=1, optional=True)
    max_retries = _typed(doc, spec, "max_retries", int, 2, prefix="resources", minimum=0)
    timeout_s = _typed(doc, spec, "timeout_s", float, None, prefix="resources", minimum=0, optional=True)
    if timeout_s is not None and timeout_s <= 0:
        raise doc.error("resources.timeout_s", f"must be > 0, got {timeout_s:g}")
    return ResourceSpec(num_cpus=num_cpus, num_gpus=num_gpus, memory_mb=memory_mb, max_retries=max_retries,
                        timeout_s=timeout_s)
