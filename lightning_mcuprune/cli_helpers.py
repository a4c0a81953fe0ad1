"""Helpers shared by the `mcuprune` subcommands: naming a network on the command line and its input shape.

- ``PKG.MODULE:CALLABLE`` (``load_callable``), resolved against the working directory first;
- an export directory written by ``MCUPruneCallback.export`` (``load_export``, ``load_model``);
- input shapes without the batch, ``1,28,28`` and ``1x28x28`` alike (``parse_shape``).
"""
from __future__ import annotations

import importlib
import json
import os
from pathlib import Path
from typing import Optional

import torch


def load_callable(spec: str) -> object:
    """Resolve "PKG.MODULE:CALLABLE" to the object it names (the CLI puts the working directory on the
    import path first, as `python -m` does)."""
    if ":" not in spec:
        raise ValueError(f"model {spec!r} must be given as PKG.MODULE:CALLABLE, e.g. lightning_mcuprune.examples.zoo:ds_cnn")
    mod_name, attr = spec.split(":", 1)
    try:
        mod = importlib.import_module(mod_name)
    except ModuleNotFoundError as e:
        if e.name and mod_name != e.name and not mod_name.startswith(e.name + "."):
            raise ValueError(f"importing {mod_name!r} of model {spec!r} failed: it imports {e.name!r}, which is not "
                             "installed") from None
        raise ValueError(
            f"cannot import module {mod_name!r} of model {spec!r}: {e}. It is looked up in the working directory "
            f"({os.getcwd()}) and on the Python path: run from the folder that holds {mod_name.split('.')[0]}.py "
            f"(or the package folder), or set PYTHONPATH to it") from None
    except Exception as e:  # noqa: BLE001 - the user's module failed while importing: one clear line
        raise ValueError(f"importing {mod_name!r} of model {spec!r} failed: {type(e).__name__}: {e}") from None
    obj = mod
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ValueError(f"module {mod_name!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    return obj


def parse_shape(text: str) -> tuple:
    """An input shape without the batch, given as "1,28,28" or "1x28x28" (C,H,W; or C,L for 1-d inputs).

    >>> parse_shape("1,28,28") == parse_shape("1x28x28") == (1, 28, 28)
    True
    >>> parse_shape("1,x")
    Traceback (most recent call last):
    ValueError: bad --input-shape '1,x': give the input without the batch, e.g. 1,28,28 (C,H,W)
    """
    parts = [p.strip() for p in text.lower().replace("x", ",").split(",")]
    shape = tuple(int(p) for p in parts) if all(p.isdigit() for p in parts) else ()
    if not shape or any(d <= 0 for d in shape):
        raise ValueError(f"bad --input-shape {text!r}: give the input without the batch, e.g. 1,28,28 (C,H,W)")
    return shape


def build_module(spec: str) -> torch.nn.Module:
    """The nn.Module that PKG.MODULE:CALLABLE names: the object itself, or what calling it returns."""
    factory = load_callable(spec)
    if callable(factory) and not isinstance(factory, torch.nn.Module):
        try:
            model = factory()
        except Exception as e:  # noqa: BLE001 - the user's factory failed: one clear line
            raise ValueError(f"calling {spec}() failed: {type(e).__name__}: {e}") from None
    else:
        model = factory
    if not isinstance(model, torch.nn.Module):
        raise ValueError(f"{spec} gave a {type(model).__name__}, not a torch.nn.Module")
    return model


def load_export(directory: Path, network: Optional[str] = None, unsafe_pickle: bool = False) -> tuple:
    """The network and input shape (C, H, W) of an export directory written by MCUPruneCallback.

    network (PKG.MODULE:CALLABLE building the dense network): the directory's pruned_state.pt is applied to it
    with load_pruned, weights-only (nothing in the directory runs). unsafe_pickle: read model.pt instead, a
    pickled module: loading it runs code named in the file, so only for directories you wrote or trust like code.
    Neither given: a ValueError that says which option to use."""
    from lightning_mcuprune.export import load_module
    if network:
        if not (directory / "pruned_state.pt").is_file():
            raise ValueError(f"MODEL {str(directory)!r}: no pruned_state.pt in it; give the directory "
                             "MCUPruneCallback.export wrote (e.g. lightning_logs/version_0/mcuprune)")
        net = load_model(network, str(directory / "pruned_state.pt"))
    elif not unsafe_pickle:
        raise ValueError(f"MODEL {str(directory)!r}: give --network PKG.MODULE:CALLABLE (the function building the "
                         "dense network) to apply its pruned_state.pt weights-only, or --unsafe-pickle to load its "
                         "model.pt (a pickle: loading it runs code named in the file; only for directories you "
                         "wrote or trust like code)")
    elif not (directory / "model.pt").is_file():
        raise ValueError(f"MODEL {str(directory)!r}: no model.pt in it; give the directory MCUPruneCallback.export "
                         "wrote (e.g. lightning_logs/version_0/mcuprune), or --network PKG.MODULE:CALLABLE")
    else:
        net = load_module(directory / "model.pt")
        if hasattr(net, "net") and isinstance(net.net, torch.nn.Module):
            net = net.net
    shape = None
    if (directory / "report.json").is_file():
        shape = tuple(json.loads((directory / "report.json").read_text()).get("example_shape", [])[1:]) or None
    return net, shape


def load_model(spec: str, checkpoint: Optional[str], network: Optional[str] = None, unsafe_pickle: bool = False
               ) -> torch.nn.Module:
    """The network a CLI MODEL argument names: an export directory (see load_export), or PKG.MODULE:CALLABLE
    building the dense network, pruned by `checkpoint` (read weights-only) if given."""
    if ":" not in spec:
        p = Path(spec)
        if p.is_dir():
            return load_export(p, network, unsafe_pickle)[0]
        raise ValueError(f"MODEL {spec!r}: give the callback's export directory, or PKG.MODULE:CALLABLE (the network "
                         "factory) with --checkpoint and --input-shape")
    if network or unsafe_pickle:
        raise ValueError(f"--network and --unsafe-pickle go with an export directory as MODEL, not {spec!r}")
    net = load_callable(spec)()
    if checkpoint:
        from lightning_mcuprune.export import load_pruned
        net = load_pruned(net, checkpoint)
        if hasattr(net, "net") and isinstance(net.net, torch.nn.Module) and not hasattr(net, "weight"):
            net = getattr(net, "net", net)
    return net


__all__ = ["load_callable", "parse_shape", "build_module", "load_export", "load_model"]
