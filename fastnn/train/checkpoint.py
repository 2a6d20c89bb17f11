"""Checkpoints: a model, its optimizer and its scheduler in one versioned .npz.

The file is a plain (uncompressed) NumPy zip archive, written without pickle
and read with ``allow_pickle=False``, so loading a file cannot run code:

    fastnn/format        "fastnn-checkpoint"
    fastnn/version       format version (int)
    fastnn/library       the fastnn version that wrote it
    architecture         JSON: dtype + a description of every layer
    model/<key>          the weights, under the model's state-dict keys
    optimizer            JSON: type, parameter names, param_groups, steps
    optim/<i>/<name>     optimizer state arrays (exp_avg, momentum_buffer, ...)
    scheduler            JSON: type + the scheduler's (JSON-safe) state_dict
    rng                  JSON: fastnn's random generator state

``save`` writes a temporary file next to the target, fsyncs it and renames it
over the target, so a crash leaves either the old file or the new one.
``load`` reads and checks everything (format, version, architecture, keys,
shapes, dtypes, finiteness) before it writes anything; a file it rejects leaves
model, optimizer and scheduler exactly as they were.
"""
import inspect
import json
import os

import numpy as np

from .. import _random
from .._atomic import atomic_write
from .. import nn  # noqa: F401 - registers the built-in layers a checkpoint rebuilds
from ..nn.module import Module
from ..nn.sequential import Sequential
from ..optim.optimizers import Optimizer
from ..optim.schedulers import LRScheduler

__all__ = ["save", "load", "FORMAT_VERSION"]

FORMAT_VERSION = 1
_MAGIC = "fastnn-checkpoint"


# --------------------------------------------------------------------------- architecture

def _describe(m):
    if type(m) is Sequential:
        return {"type": "Sequential", "layers": [_describe(c) for c in m._modules.values()]}
    fields = m.config() if Module.builtin_layers.get(type(m).__name__) is type(m) else None
    if fields is None:  # a user-defined module: recorded, compared, but not rebuildable
        return {"type": f"{type(m).__module__}.{type(m).__qualname__}", "custom": True}
    return {"type": type(m).__name__, **fields}


def describe(model):
    """The architecture description stored in a checkpoint (JSON-safe)."""
    return {"dtype": str(np.dtype(model.dtype)), "model": _describe(model)}


def _build(d, dtype):
    if not isinstance(d, dict) or not isinstance(d.get("type"), str):
        raise ValueError(f"bad layer description {d!r}")
    kind = d["type"]
    if kind == "Sequential":
        layers = d.get("layers")
        if not isinstance(layers, list):
            raise ValueError(f"bad Sequential description {d!r}")
        return Sequential(*[_build(x, dtype) for x in layers], dtype=dtype)
    if d.get("custom"):
        raise ValueError(f"the model contains a custom module {kind!r}, which cannot be rebuilt "
                         "from the file: construct the model and pass it as load(path, model)")
    cls = Module.builtin_layers.get(kind)
    if cls is None:
        raise ValueError(f"unknown layer type {kind!r}")
    kwargs = {k: v for k, v in d.items() if k != "type"}
    if "dtype" in inspect.signature(cls.__init__).parameters:
        kwargs["dtype"] = dtype
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise ValueError(f"layer description {d!r} does not fit {kind}: {exc}") from None


def _fmt_layer(d):
    if not isinstance(d, dict):
        return repr(d)
    args = ", ".join(f"{k}={v!r}" for k, v in d.items() if k not in ("type", "layers", "custom"))
    if d.get("type") == "Sequential" and isinstance(d.get("layers"), list):
        return f"Sequential({len(d['layers'])} layers)"
    return f"{d.get('type')}({args})"


def _arch_diff(saved, have, where="model"):
    """A human-readable description of the first difference, or None."""
    if saved == have:
        return None
    if (isinstance(saved, dict) and isinstance(have, dict)
            and saved.get("type") == have.get("type") == "Sequential"):
        a, b = saved.get("layers") or [], have.get("layers") or []
        count = (f" (the file has {len(a)} layers, the model has {len(b)})"
                 if len(a) != len(b) else "")
        for i, (x, y) in enumerate(zip(a, b)):
            diff = _arch_diff(x, y, f"{where}[{i}]")
            if diff:
                return diff + count
        return f"{where}: the file has {len(a)} layers, the model has {len(b)}"
    return f"{where}: the file has {_fmt_layer(saved)}, the model has {_fmt_layer(have)}"


# --------------------------------------------------------------------------- save

def _json(value, what):
    def default(o):
        if isinstance(o, np.generic):
            return o.item()
        raise TypeError(f"{what}: {o!r} ({type(o).__name__}) cannot be stored in a checkpoint")
    return np.array(json.dumps(value, default=default))


def _param_names(model, optimizer):
    names = {id(p): name for name, p in model.named_parameters()}
    out = []
    for gi, group in enumerate(optimizer.param_groups):
        row = []
        for p in group["params"]:
            if id(p) not in names:
                raise ValueError(f"optimizer param group {gi} holds a parameter {p!r} that is "
                                 "not one of the model's: build the optimizer on model.parameters()")
            row.append(names[id(p)])
        out.append(row)
    return out


def _check_objects(model, optimizer, scheduler):
    if not isinstance(model, Module):
        raise TypeError(f"model must be a fastnn Module, got {type(model).__name__}")
    if optimizer is not None and not isinstance(optimizer, Optimizer):
        raise TypeError(f"optimizer must be a fastnn optimizer or None, got {type(optimizer).__name__}")
    if scheduler is not None:
        if not isinstance(scheduler, LRScheduler):
            raise TypeError(f"scheduler must be a fastnn scheduler or None, "
                            f"got {type(scheduler).__name__}")
        if optimizer is None or scheduler.optimizer is not optimizer:
            raise ValueError("scheduler must be passed together with the optimizer it schedules")


def _checkpoint_arrays(model, optimizer, scheduler):
    arrays = {
        "fastnn/format": np.array(_MAGIC),
        "fastnn/version": np.array(FORMAT_VERSION, dtype=np.int64),
        "fastnn/library": np.array(_library_version()),
        "architecture": _json(describe(model), "architecture"),
        "rng": _json(_random.generator().bit_generator.state, "rng"),
    }
    for key, value in model.state_dict().items():
        arrays[f"model/{key}"] = value
    if optimizer is not None:
        names = _param_names(model, optimizer)
        sd = optimizer.state_dict()
        state = {}
        for index, entry in sd["state"].items():
            buffers = sorted(k for k in entry if k != "step")
            state[str(index)] = {"step": entry.get("step", 0), "buffers": buffers}
            for name in buffers:
                arrays[f"optim/{index}/{name}"] = np.asarray(entry[name])
        meta = {"type": type(optimizer).__name__, "param_names": names,
                "param_groups": sd["param_groups"], "state": state}
        arrays["optimizer"] = _json(meta, "optimizer hyperparameters")
    if scheduler is not None:
        arrays["scheduler"] = _json({"type": type(scheduler).__name__,
                                     "state": scheduler.state_dict()}, "scheduler state")
    return arrays


def _library_version():
    from .._version import __version__
    return __version__


def save(path, model, optimizer=None, scheduler=None):
    """Write ``model`` (architecture + weights), and optionally the optimizer's
    and scheduler's state, to ``path`` atomically. The path is used as given
    (no ``.npz`` is appended)."""
    _check_objects(model, optimizer, scheduler)
    # load refuses non-finite weights, so save does too: a file that cannot be
    # loaded back is worse than a clear error now.
    for name, p in model.named_parameters():
        if not np.isfinite(p.data).all():
            raise ValueError(f"save: parameter {name!r} contains NaN or inf (did training "
                             "diverge?); nothing was written")
    arrays = _checkpoint_arrays(model, optimizer, scheduler)
    with atomic_write(path) as f:
        np.savez(f, allow_pickle=False, **arrays)


# --------------------------------------------------------------------------- load

def _read(path):
    """Every array of the archive, read eagerly (so CRC errors surface here)."""
    try:
        with open(path, "rb") as f:
            head = f.read(4)
        if head[:2] != b"PK":   # np.load would try pickle on it and say so: be plainer
            kind = "a single .npy array" if head[:1] == b"\x93" else "not a .npz archive"
            raise ValueError(f"{path!r} is not a fastnn checkpoint ({kind})")
        with np.load(path, allow_pickle=False) as f:
            arrays = {key: f[key] for key in f.files}
        for key, value in arrays.items():
            if not isinstance(value, np.ndarray):   # a zip member that is not a .npy
                raise ValueError(f"{path!r} is not a fastnn checkpoint "
                                 f"(member {key!r} is not a NumPy array)")
        return arrays
    except FileNotFoundError:
        raise
    except ValueError as exc:
        if str(exc).startswith(repr(path)):
            raise
        raise ValueError(f"{path!r} is not a readable fastnn checkpoint ({exc})") from exc
    except Exception as exc:  # zipfile.BadZipFile, OSError, EOFError, zlib.error, ...
        raise ValueError(f"{path!r} is not a readable fastnn checkpoint "
                         f"({type(exc).__name__}: {exc})") from exc


def _text(arrays, key, path):
    a = arrays[key]
    if a.ndim != 0 or a.dtype.kind != "U":
        raise ValueError(f"{path!r}: entry {key!r} should be text, got {a.dtype} {a.shape}")
    return str(a[()])


def _parse_json(arrays, key, path):
    try:
        return json.loads(_text(arrays, key, path))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path!r}: entry {key!r} is not valid JSON ({exc})") from None


def _check_header(arrays, path):
    if "fastnn/format" not in arrays or "fastnn/version" not in arrays:
        raise ValueError(f"{path!r} is not a fastnn checkpoint (no format marker; "
                         f"it holds {sorted(arrays)[:8]})")
    if _text(arrays, "fastnn/format", path) != _MAGIC:
        raise ValueError(f"{path!r} is not a fastnn checkpoint (format marker "
                         f"{_text(arrays, 'fastnn/format', path)!r})")
    v = arrays["fastnn/version"]
    if v.ndim != 0 or v.dtype.kind not in "iu":
        raise ValueError(f"{path!r}: bad format version entry ({v.dtype} {v.shape})")
    version = int(v)
    if version > FORMAT_VERSION:
        raise ValueError(f"{path!r} has checkpoint format version {version}, newer than this "
                         f"fastnn reads (<= {FORMAT_VERSION}): upgrade fastnn")
    if version < 1:
        raise ValueError(f"{path!r} has an invalid checkpoint format version {version}")
    if "architecture" not in arrays:
        raise ValueError(f"{path!r}: the checkpoint has no architecture entry")


def _checked_array(arrays, key, shape, dtype, path, what):
    if key not in arrays:
        raise ValueError(f"{path!r}: {what} is missing from the file")
    a = arrays[key]
    if a.shape != tuple(shape):
        raise ValueError(f"{path!r}: {what} has shape {a.shape} in the file, expected {tuple(shape)}")
    if a.dtype != dtype:
        raise ValueError(f"{path!r}: {what} has dtype {a.dtype} in the file, expected {dtype}")
    if not np.isfinite(a).all():
        raise ValueError(f"{path!r}: {what} contains NaN or inf")
    return a


def _stage_model(arrays, model, path):
    params = dict(model.named_parameters())
    saved = {k[len("model/"):] for k in arrays if k.startswith("model/")}
    missing, unexpected = sorted(set(params) - saved), sorted(saved - set(params))
    if missing or unexpected:
        raise ValueError(f"{path!r}: weights do not match the model: missing {missing}, "
                         f"unexpected {unexpected}")
    return {name: _checked_array(arrays, f"model/{name}", p.shape, p.dtype, path, f"weight {name!r}")
            for name, p in params.items()}


def _stage_optimizer(arrays, model, optimizer, path):
    if "optimizer" not in arrays:
        raise ValueError(f"{path!r} holds no optimizer state (it was saved without an optimizer)")
    meta = _parse_json(arrays, "optimizer", path)
    try:
        kind, names, groups, state = (meta["type"], meta["param_names"], meta["param_groups"],
                                      meta["state"])
    except (TypeError, KeyError):
        raise ValueError(f"{path!r}: malformed optimizer entry") from None
    if kind != type(optimizer).__name__:
        raise ValueError(f"{path!r} holds {kind} state, but the optimizer is "
                         f"{type(optimizer).__name__}")
    have = _param_names(model, optimizer)
    if names != have:
        raise ValueError(f"{path!r}: the optimizer's parameters do not match: the file has "
                         f"{names}, the optimizer has {have}")
    if not isinstance(groups, list) or len(groups) != len(optimizer.param_groups):
        raise ValueError(f"{path!r}: the file has {len(groups) if isinstance(groups, list) else '?'} "
                         f"param groups, the optimizer has {len(optimizer.param_groups)}")
    params = [p for g in optimizer.param_groups for p in g["params"]]
    sd_groups = []
    for gi, (saved, group) in enumerate(zip(groups, optimizer.param_groups)):
        if not isinstance(saved, dict) or not isinstance(saved.get("params"), list):
            raise ValueError(f"{path!r}: malformed param group {gi}")
        lacking = sorted(k for k in optimizer.defaults if k not in saved)
        if lacking:
            raise ValueError(f"{path!r}: param group {gi} lacks hyperparameters {lacking}")
        # JSON turned tuples (betas) into lists; give them their original type back
        sd_groups.append({k: tuple(v) if isinstance(v, list) and isinstance(group.get(k), tuple)
                          else v for k, v in saved.items()})
    if not isinstance(state, dict):
        raise ValueError(f"{path!r}: malformed optimizer state")
    sd_state = {}
    for index, entry in state.items():
        try:
            i = int(index)
            if i < 0:
                raise IndexError(i)
            p = params[i]
            step, buffers = entry["step"], entry["buffers"]
        except (ValueError, IndexError, TypeError, KeyError):
            raise ValueError(f"{path!r}: malformed optimizer state entry {index!r}") from None
        if isinstance(step, bool) or not isinstance(step, (int, float)) or step < 0:
            raise ValueError(f"{path!r}: optimizer state {index}: bad step {step!r}")
        if not isinstance(buffers, list) or not all(isinstance(b, str) for b in buffers):
            raise ValueError(f"{path!r}: malformed optimizer state entry {index!r}")
        sd_state[i] = {"step": float(step),
                       **{name: _checked_array(arrays, f"optim/{i}/{name}", p.shape, p.dtype, path,
                                               f"optimizer state {name!r} of parameter {i}")
                          for name in buffers}}
    try:  # the optimizer checks its own hyperparameters and state
        return optimizer._stage({"state": sd_state, "param_groups": sd_groups})
    except (ValueError, TypeError, KeyError) as exc:
        raise ValueError(f"{path!r}: optimizer state rejected: {exc}") from None


def _stage_scheduler(arrays, scheduler, path):
    if "scheduler" not in arrays:
        raise ValueError(f"{path!r} holds no scheduler state (it was saved without a scheduler)")
    meta = _parse_json(arrays, "scheduler", path)
    if not isinstance(meta, dict) or "type" not in meta or "state" not in meta:
        raise ValueError(f"{path!r}: malformed scheduler entry")
    if meta["type"] != type(scheduler).__name__:
        raise ValueError(f"{path!r} holds {meta['type']} state, but the scheduler is "
                         f"{type(scheduler).__name__}")
    try:
        scheduler._validate_state(meta["state"])
    except (ValueError, TypeError, KeyError) as exc:
        raise ValueError(f"{path!r}: scheduler state rejected: {exc}") from None
    return meta["state"]


def _stage_rng(arrays, path):
    if "rng" not in arrays:
        raise ValueError(f"{path!r} holds no random-generator state")
    state = _parse_json(arrays, "rng", path)
    probe = np.random.default_rng()
    try:
        probe.bit_generator.state = state
    except (ValueError, TypeError, KeyError) as exc:
        raise ValueError(f"{path!r}: bad random-generator state ({exc})") from None
    return state


def _stage(path, arrays, model, optimizer, scheduler, restore_rng):
    """Check the whole file against the objects and prepare what to write;
    writes nothing (with model=None it builds and fills a new model)."""
    _check_header(arrays, path)
    arch = _parse_json(arrays, "architecture", path)
    if not isinstance(arch, dict) or "dtype" not in arch or "model" not in arch:
        raise ValueError(f"{path!r}: malformed architecture entry")
    rng_state = _stage_rng(arrays, path) if restore_rng else None

    if model is None:
        gen = _random.generator()
        before = gen.bit_generator.state
        try:
            model = _build(arch["model"], arch["dtype"])
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{path!r}: cannot rebuild the model: {exc}") from None
        finally:
            gen.bit_generator.state = before   # rebuilding must not shift the user's stream
        model.load_state_dict(_stage_model(arrays, model, path))
        return model, rng_state

    diff = _arch_diff(arch["model"], _describe(model))
    if diff:
        raise ValueError(f"{path!r}: architecture mismatch: {diff}")
    if arch["dtype"] != str(np.dtype(model.dtype)):
        raise ValueError(f"{path!r}: the file holds {arch['dtype']} weights, the model is "
                         f"{np.dtype(model.dtype)}")
    weights = _stage_model(arrays, model, path)
    opt_plan = _stage_optimizer(arrays, model, optimizer, path) if optimizer is not None else None
    sched_sd = _stage_scheduler(arrays, scheduler, path) if scheduler is not None else None
    return weights, opt_plan, sched_sd, rng_state


def load(path, model=None, optimizer=None, scheduler=None, restore_rng=False):
    """Load a checkpoint written by :func:`save`; returns the model.

    With ``model=None`` the model is rebuilt from the file's architecture
    description (the library's random stream is not consumed). Otherwise the
    file's architecture must equal the model's. ``optimizer`` and ``scheduler``
    get their saved state (the file must hold it). ``restore_rng=True`` also
    restores fastnn's random generator (shuffling and dropout), which makes a
    resumed run with dropout identical to an uninterrupted one.

    Raises FileNotFoundError for a missing file and ValueError for anything
    unreadable, foreign or mismatched; then nothing has been modified.
    """
    path = os.fspath(path)
    if model is None and (optimizer is not None or scheduler is not None):
        raise ValueError("load: an optimizer or scheduler needs the model it was built on; "
                         "pass model= as well")
    if model is not None:
        _check_objects(model, optimizer, scheduler)
    arrays = _read(path)
    try:
        staged = _stage(path, arrays, model, optimizer, scheduler, restore_rng)
    except (TypeError, KeyError, AttributeError, IndexError) as exc:
        # a well-formed archive with ill-formed content; nothing was written
        raise ValueError(f"{path!r}: malformed fastnn checkpoint "
                         f"({type(exc).__name__}: {exc})") from exc
    if model is None:
        model, rng_state = staged
        if rng_state is not None:
            _random.generator().bit_generator.state = rng_state
        return model
    weights, opt_plan, sched_sd, rng_state = staged

    # Everything is checked; write. Each load_state_dict checks before it writes,
    # and should not fail on what passed above; if one does anyway, the ones
    # before it are undone, so the call stays all-or-nothing.
    undo = _snapshot(model, optimizer, scheduler)
    try:
        if opt_plan is not None:
            optimizer._apply_staged(opt_plan)
        if sched_sd is not None:
            scheduler.load_state_dict(sched_sd)   # after the optimizer: it writes the groups' lr
        model.load_state_dict(weights)
    except BaseException as exc:
        _restore(model, optimizer, scheduler, undo)
        if isinstance(exc, (ValueError, TypeError, KeyError)):
            raise ValueError(f"{path!r}: rejected while loading: {exc}") from exc
        raise
    if rng_state is not None:
        _random.generator().bit_generator.state = rng_state
    return model


def _snapshot(model, optimizer, scheduler):
    return (model.state_dict(),
            None if optimizer is None else (optimizer.state_dict(),
                                            [dict(g) for g in optimizer.param_groups]),
            None if scheduler is None else scheduler.state_dict())


def _restore(model, optimizer, scheduler, undo):
    """Put back what _snapshot took. Each part is restored on its own, through
    the internal loaders where possible, so one failing part cannot stop the rest."""
    weights, opt, sched = undo
    for name, p in model.named_parameters():
        p.data[...] = weights[name]
    if sched is not None:
        try:
            scheduler._load_state(sched)
        except Exception:   # pragma: no cover - a trusted snapshot of its own state
            pass
    if opt is not None:
        sd, groups = opt
        optimizer.load_state_dict(sd)
        for group, saved in zip(optimizer.param_groups, groups):
            group.clear()
            group.update(saved)
