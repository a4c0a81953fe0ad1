"""Export of pruned networks and loading them back.

Two ways to keep a pruned network, with different trust:
- `pruned_state.pt` (written by `save_pruned_state`; also any Lightning checkpoint of the callback) holds only
  tensors and plain containers: the weights, the channels kept per group and the architecture signature.
  `load_pruned(build_dense_network(), path)` applies it to a freshly built dense network. It is read with
  `torch.load(weights_only=True)`, so a file from someone else cannot run code (it can still hold bad weights).
- `model.pt` (written by `save_module`) is the pickled `nn.Module`: loading it runs code named in the file,
  like importing a Python module. Load only files you wrote yourself or trust as you would trust code.
"""
from __future__ import annotations

import copy
import pickle
import warnings
from pathlib import Path

import torch

from lightning_mcuprune.io import atomic_path

PRUNED_STATE_FORMAT = "lightning-mcuprune/pruned-state"
PRUNED_STATE_VERSION = 1


def export_onnx(module: torch.nn.Module, example: torch.Tensor, path: "str | Path", opset: int = 17) -> Path:
    """Write `module` (in eval mode, batch dimension dynamic) as ONNX at `path`, atomically."""
    model = copy.deepcopy(module).eval()
    for m in model.modules():  # forward hooks of the pruning state are not part of the model
        m._forward_hooks.clear()
    with atomic_path(path) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (example,), tmp, dynamo=False, opset_version=opset, input_names=["input"],
                          output_names=["output"], dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}})
    return Path(path)


def _clean_copy(module: torch.nn.Module) -> torch.nn.Module:
    """A copy of `module` in eval mode without the pruning hooks."""
    model = copy.deepcopy(module).eval()
    for m in model.modules():
        m._forward_hooks.clear()
        m._forward_pre_hooks.clear()
    if hasattr(model, "_trainer"):
        model._trainer = None
    return model


def save_module(module: torch.nn.Module, path: "str | Path") -> Path:
    """Pickle the (pruned) network itself, without the pruning hooks, atomically; `load_module` reads it back.

    The file is code, not data: loading it imports and runs what it names (any pickled torch module is).
    Loading needs the network's classes importable. For a file others may load, give them
    `pruned_state.pt` (`save_pruned_state`) and the code of the dense network instead."""
    model = _clean_copy(module)
    with atomic_path(path) as tmp:
        torch.save(model, tmp)
    return Path(path)


def load_module(path: "str | Path") -> torch.nn.Module:
    """The network saved by `save_module` (e.g. an export directory's model.pt), in eval mode.

    UNSAFE for files you did not write: this unpickles (`weights_only=False`), which runs any code the
    file names. For files from elsewhere use `load_pruned(dense_network, "pruned_state.pt")`."""
    return torch.load(path, map_location="cpu", weights_only=False).eval()


def save_pruned_state(root: torch.nn.Module, path: "str | Path", *, module: str | None, example_shape: "tuple | list",
                      signature: dict, present: list, exclude: "tuple | list" = (), board: str = "", budgets: dict | None = None,
                      architecture: str = "") -> Path:
    """Write the pruned network as data only: its weights (`state_dict`, keys relative to `root`), the dense
    channel indices kept per prunable group (`present`) and the architecture signature, atomically.
    `load_pruned(dense_module, path)` rebuilds the network from a freshly built dense module; the file loads
    with `torch.load(weights_only=True)`."""
    data = {"format": PRUNED_STATE_FORMAT, "version": PRUNED_STATE_VERSION, "module": module,
            "example_shape": [int(v) for v in example_shape], "signature": {k: list(v) for k, v in signature.items()},
            "exclude": list(exclude), "phase": "finetune", "board": board, "budgets": dict(budgets or {}),
            "architecture": architecture, "state": {"present": [torch.as_tensor(p).clone() for p in present]},
            "state_dict": {k: v.detach().cpu().clone() for k, v in _clean_copy(root).state_dict().items()}}
    with atomic_path(path) as tmp:
        torch.save(data, tmp)
    return Path(path)


def _read(path: Path, map_location, unsafe_pickle: bool) -> dict:
    try:
        data = torch.load(path, map_location=map_location, weights_only=not unsafe_pickle)
    except pickle.UnpicklingError as e:
        why = [ln.strip() for ln in str(e).splitlines() if "Unsupported global" in ln or "Unsupported class" in ln]
        if why:  # a pickled object that is not plain data: it would run code when loaded
            raise ValueError(
                f"{path}: the file holds Python objects other than tensors and plain containers ({why[0][:200]}), "
                "and load_pruned reads files weights-only so that nothing in them runs. A checkpoint of "
                "MCUPruneCallback loads that way unless the LightningModule saved such objects (e.g. in its "
                "hyperparameters). Only for a file you trust like code: load_pruned(..., unsafe_pickle=True)") from None
        raise ValueError(f"{path}: not a torch checkpoint (it does not unpickle as tensors and plain containers)") from None
    except (RuntimeError, EOFError, OSError) as e:
        raise ValueError(f"{path}: not a torch checkpoint ({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: not a Lightning checkpoint or pruned_state.pt (it holds a {type(data).__name__})")
    return data


def _pruning_state(checkpoint: dict, path) -> dict:
    for key, value in checkpoint.get("callbacks", {}).items():
        if key.split("{")[0].endswith("MCUPruneCallback") and isinstance(value, dict) and "state" in value:
            return value
    raise ValueError(f"{path}: the checkpoint holds no pruning state (no MCUPruneCallback state with a pruned "
                     "structure); was it saved by a Trainer with MCUPruneCallback after pruning began?")


def _key_prefix(module: torch.nn.Module, weights: dict) -> str | None:
    """The prefix P such that P + key is in `weights` for every key of `module.state_dict()`, or None."""
    keys = list(module.state_dict())
    if not keys:
        return ""
    first = keys[0]
    candidates = [w[: len(w) - len(first)] for w in weights if w == first or w.endswith("." + first)]
    for p in sorted(candidates, key=len):
        if all(p + k in weights for k in keys):
            return p
    return None


def load_pruned(module: torch.nn.Module, checkpoint_path: "str | Path", map_location: "str | torch.device" = "cpu", *, unsafe_pickle: bool = False,
                allow_unfinished: bool = False) -> torch.nn.Module:
    """Prune a freshly built dense `module` the way a run of MCUPruneCallback did, then load its weights.

    `checkpoint_path`: a Lightning checkpoint written by a Trainer with the callback (e.g. last.ckpt), or the
    `pruned_state.pt` of the callback's export. Both are read with `torch.load(weights_only=True)`: nothing in
    the file runs. `unsafe_pickle=True` unpickles instead (runs code the file names): only for a file you trust.
    `module`: the LightningModule the run trained, the network it pruned (the callback's `module=`), or that
    network alone when the callback pruned the whole LightningModule (the `net.` prefix is found by itself).
    A checkpoint saved before hardening (warm-up or pruning phase) is refused, because its network does not
    meet the budgets yet; `allow_unfinished=True` gives the network as it computed at that step.
    Returns `module`, pruned in place, in eval mode.
    """
    from lightning_mcuprune.pruning.plan import apply_present, check_signature, make_plan
    from lightning_mcuprune.pruning.removal import remove_channels
    path = Path(checkpoint_path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    data = _read(path, map_location, unsafe_pickle)
    sub = ""
    if data.get("format") == PRUNED_STATE_FORMAT:
        saved = data
        sub = saved.get("module") or ""
        weights = {(sub + "." if sub else "") + k: v for k, v in data["state_dict"].items()}
    else:
        saved = _pruning_state(data, path)
        sub = saved.get("module") or ""
        weights = data.get("state_dict", {})
    phase = saved.get("phase")
    if phase in ("warmup", "pruning") and not allow_unfinished:
        raise ValueError(f"{path}: saved during the {phase} phase, before hardening: its network does not meet the "
                         "budgets yet. Load the checkpoint written after the run (e.g. last.ckpt of a finished run), "
                         "or pass allow_unfinished=True for the network as it computed at that step")
    # where the pruned network sits in `module`, and the prefix P of `module`'s weights among the file's keys
    # (the file's keys and group names are paths in the LightningModule; the callback pruned its `sub`)
    lm_prefix = sub + "." if sub else ""
    root = None
    if sub:
        try:
            root, prefix = module.get_submodule(sub), ""  # `module` is the LightningModule
        except AttributeError:
            pass
    if root is None:  # `module` is the pruned network itself, or the network inside a pruned LightningModule
        root = module
        prefix = _key_prefix(module, weights)
        prefix = lm_prefix if prefix is None else prefix
        weights = {k[len(prefix):]: v for k, v in weights.items() if k.startswith(prefix)}

    def rel(name: str) -> str:  # a path inside the pruned network -> a path inside `root`
        full = lm_prefix + name
        return full[len(prefix):] if root is module and full.startswith(prefix) else name
    signature = {"producers": [rel(n) for n in saved["signature"]["producers"]], "dense": saved["signature"]["dense"]}
    example = torch.zeros(saved["example_shape"])
    plan = make_plan(root, example, tuple(rel(e) for e in saved.get("exclude", ())))
    try:
        check_signature(plan, signature)
    except ValueError as e:
        where = f" (the file's network is {'`' + sub + '` in ' if sub else ''}the LightningModule; pass that module, or the network alone)"
        raise ValueError(f"{path}: {e}{where}") from None
    state = saved["state"]
    apply_present(root, example, plan, state["present"])
    target = module
    if root is not module and data.get("format") == PRUNED_STATE_FORMAT:  # holds the pruned network's weights only
        target, weights = root, {k[len(lm_prefix):]: v for k, v in weights.items()}
    try:
        target.load_state_dict(weights)
    except RuntimeError as e:
        raise ValueError(f"{path}: the pruned weights do not fit this module: {e}") from None
    masked = {name: (~k.bool()).nonzero().flatten().tolist() for name, k in zip(plan.producers, state.get("keep", []))}
    if any(masked.values()):  # masked but still present (under DDP, or before hardening): removal is exact
        remove_channels(root, example, masked)
    return module.eval()
