"""Run by test_lightning_integration.py: prune with DDP on 2 CPU processes (gloo); each rank writes its hash."""
import json
import sys
import warnings

import lightning.pytorch as pl
import torch

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from lit import Classifier, random_loader  # noqa: E402

from lightning_mcuprune import MCUPruneCallback, analyze, zoo  # noqa: E402

warnings.simplefilter("ignore")
out = sys.argv[1]
pl.seed_everything(0, workers=True)
model = Classifier(zoo.reference_cnn(width=0.5))
cb = MCUPruneCallback("mps2-an386", {"sram": "3KiB"}, verbose=False, export=False)
trainer = pl.Trainer(strategy="ddp", accelerator="cpu", devices=2, max_steps=20, callbacks=[cb], logger=False,
                     enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                     num_sanity_val_steps=0)
trainer.fit(model, random_loader((1, 12, 12), n=64, batch=8))
rep = analyze(model.net, torch.zeros(1, 1, 12, 12), board="mps2-an386")
with open(f"{out}.rank{trainer.global_rank}.json", "w") as f:
    json.dump({"hash": cb.architecture_hash(), "sram": rep.peak_sram_bytes, "budget": cb.budgets["sram"],
               "channels": [m.out_channels for m in model.net.modules() if isinstance(m, torch.nn.Conv2d)],
               "pi": cb.state.pi.tolist()}, f)
