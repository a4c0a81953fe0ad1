"""Run by test_lightning_integration.py: prune with DDP on 2 CPU processes (gloo), once per configuration
(with and without a logger, with and without checkpointing; export on), all in one launch (DDP start-up is
the slow part). Each rank writes what it ended with; rank 0 also reloads last.ckpt with load_pruned."""
import json
import sys
import warnings

import lightning.pytorch as pl
import torch
from lightning.pytorch.loggers import CSVLogger

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from lit import Classifier, random_loader  # noqa: E402

from lightning_mcuprune import MCUPruneCallback, analyze, load_pruned  # noqa: E402
from lightning_mcuprune.examples import zoo  # noqa: E402

warnings.simplefilter("ignore")
out = sys.argv[1]
CONFIGS = [(False, False), (True, True), (False, True), (True, False)]  # (logger, checkpointing)
for logger, ckpt in CONFIGS:
    tag = f"logger{int(logger)}_ckpt{int(ckpt)}"
    root = f"{out}/{tag}"
    pl.seed_everything(0, workers=True)
    model = Classifier(zoo.reference_cnn(width=0.5))
    cb = MCUPruneCallback("mps2-an386", {"sram": "3KiB"}, verbose=False)
    trainer = pl.Trainer(strategy="ddp", accelerator="cpu", devices=2, max_steps=20, callbacks=[cb],
                         logger=CSVLogger(root) if logger else False, default_root_dir=root,
                         enable_checkpointing=ckpt, enable_progress_bar=False, enable_model_summary=False,
                         num_sanity_val_steps=0)
    trainer.fit(model, random_loader((1, 12, 12), n=64, batch=8))
    rep = analyze(model.net, torch.zeros(1, 1, 12, 12), board="mps2-an386")
    x = torch.randn(3, 1, 12, 12, generator=torch.Generator().manual_seed(1))
    res = {"hash": cb.architecture_hash(), "sram": rep.peak_sram_bytes, "budget": cb.budgets["sram"],
           "channels": [m.out_channels for m in model.net.modules() if isinstance(m, torch.nn.Conv2d)],
           "pi": cb.state.pi.tolist(), "export_dir": str(cb.export_dir)}
    if ckpt and trainer.is_global_zero:
        last = trainer.checkpoint_callback.last_model_path
        fresh = load_pruned(Classifier(zoo.reference_cnn(width=0.5)), last)
        res.update(last=last, reload_max_diff=float((fresh(x) - model.eval()(x)).abs().max()),
                   reload_sram=analyze(fresh.net, torch.zeros(1, 1, 12, 12), board="mps2-an386").peak_sram_bytes)
    with open(f"{out}/{tag}.rank{trainer.global_rank}.json", "w") as f:
        json.dump(res, f)
