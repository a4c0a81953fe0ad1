"""ImageClassifier: a LightningModule around any classifier network (cross-entropy, Adam, cosine LR)."""
from __future__ import annotations

import lightning.pytorch as pl
import torch
import torch.nn as nn
import torch.nn.functional as F
from torchmetrics.classification import MulticlassAccuracy


class ImageClassifier(pl.LightningModule):
    """Train `net` with cross-entropy and Adam under a cosine LR schedule over the whole run.

    Logs `train_loss`, `val_loss`, `val_acc`, `test_acc` (micro-averaged accuracy).

    Args:
        net: any nn.Module mapping images to class logits.
        num_classes: number of classes.
        lr, weight_decay: Adam's.
        input_shape: (C, H, W) or (N, C, H, W): sets `example_input_array` (zeros) for summaries and MCUPruneCallback.
    """

    def __init__(self, net: nn.Module, num_classes: int = 10, lr: float = 1e-3, weight_decay: float = 0.0,
                 input_shape: tuple[int, ...] | None = None):
        super().__init__()
        self.net = net
        self.lr, self.weight_decay = float(lr), float(weight_decay)
        self.val_acc = MulticlassAccuracy(num_classes=num_classes, average="micro")
        self.test_acc = MulticlassAccuracy(num_classes=num_classes, average="micro")
        if input_shape is not None:
            self.set_input_shape(input_shape)

    def set_input_shape(self, shape: "tuple[int, ...]") -> None:
        """Set `example_input_array` to zeros of `shape` ((C, H, W) gets batch 1)."""
        shape = tuple(int(s) for s in shape)
        self.example_input_array = torch.zeros(shape if len(shape) == 4 else (1, *shape))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch: "tuple[torch.Tensor, torch.Tensor]", batch_idx: int) -> torch.Tensor:
        x, y = batch
        loss = F.cross_entropy(self(x), y)
        self.log("train_loss", loss, prog_bar=True)
        return loss

    def validation_step(self, batch: "tuple[torch.Tensor, torch.Tensor]", batch_idx: int) -> None:
        x, y = batch
        logits = self(x)
        self.val_acc.update(logits, y)
        self.log("val_loss", F.cross_entropy(logits, y), prog_bar=False)
        self.log("val_acc", self.val_acc, prog_bar=True)

    def test_step(self, batch: "tuple[torch.Tensor, torch.Tensor]", batch_idx: int) -> None:
        x, y = batch
        self.test_acc.update(self(x), y)
        self.log("test_acc", self.test_acc)

    def configure_optimizers(self) -> dict:
        opt = torch.optim.Adam(self.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        total = self.trainer.estimated_stepping_batches if self._trainer is not None else 1
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, int(total)))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
