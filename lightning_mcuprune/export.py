"""Export of pruned networks (ONNX) and loading a pruned checkpoint into a freshly built dense module."""
from __future__ import annotations

import copy
import warnings
from pathlib import Path

import torch

from lightning_mcuprune.io import atomic_path


def export_onnx(module: torch.nn.Module, example: torch.Tensor, path, opset: int = 17) -> Path:
    """Write `module` (in eval mode, batch dimension dynamic) as ONNX at `path`, atomically."""
    model = copy.deepcopy(module).eval()
    for m in model.modules():  # forward hooks of the pruning state are not part of the model
        m._forward_hooks.clear()
    with atomic_path(path) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (example,), tmp, dynamo=False, opset_version=opset, input_names=["input"],
                          output_names=["output"], dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}})
    return Path(path)


def save_module(module: torch.nn.Module, path) -> Path:
    """Pickle the (pruned) network itself, without the pruning hooks, atomically; `load_module` reads it back.
    Loading needs the network's classes importable, as any pickled torch module does."""
    model = copy.deepcopy(module).eval()
    for m in model.modules():
        m._forward_hooks.clear()
        m._forward_pre_hooks.clear()
    if hasattr(model, "_trainer"):
        model._trainer = None
    for attr in ("on_load_checkpoint", "_mcuprune_wrapped"):  # MCUPruneCallback's wrapper of the module's hook
        model.__dict__.pop(attr, None)
    with atomic_path(path) as tmp:
        torch.save(model, tmp)
    return Path(path)


def load_module(path) -> torch.nn.Module:
    """The network saved by `save_module` (e.g. an export directory's model.pt), in eval mode."""
    return torch.load(path, map_location="cpu", weights_only=False).eval()


def _pruning_state(checkpoint: dict, path) -> dict:
    for key, value in checkpoint.get("callbacks", {}).items():
        if key.split("{")[0].endswith("MCUPruneCallback") and isinstance(value, dict) and "state" in value:
            return value
    raise ValueError(f"{path}: the checkpoint holds no pruning state (no MCUPruneCallback state with a pruned "
                     "structure); was it saved by a Trainer with MCUPruneCallback after pruning began?")


def load_pruned(module: torch.nn.Module, checkpoint_path, map_location="cpu") -> torch.nn.Module:
    """Prune a freshly built dense `module` the way the checkpoint's run did, then load its weights.

    `module`: the LightningModule the checkpoint was trained with, or the network it pruned (the
    `module=` path given to the callback). Returns `module`, pruned in place, in eval mode.
    """
    from lightning_mcuprune.pruning.plan import apply_present, check_signature, make_plan
    path = Path(checkpoint_path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    ckpt = torch.load(path, map_location=map_location, weights_only=False)
    saved = _pruning_state(ckpt, path)
    sub = saved.get("module")
    weights = ckpt["state_dict"]
    root, prefix = module, ""
    if sub:
        try:
            root = module.get_submodule(sub)
        except AttributeError:
            root, prefix = module, sub + "."  # `module` is the network itself
    if prefix:
        weights = {k[len(prefix):]: v for k, v in weights.items() if k.startswith(prefix)}
    example = torch.zeros(saved["example_shape"])
    plan = make_plan(root, example, ())
    check_signature(plan, saved["signature"])
    apply_present(root, example, plan, saved["state"]["present"])
    target = root if prefix else module
    try:
        target.load_state_dict(weights)
    except RuntimeError as e:
        raise ValueError(f"{path}: the pruned weights do not fit this module: {e}") from None
    return module.eval()
