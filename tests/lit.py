"""A small LightningModule around any classifier, and tiny random data, for the callback tests."""
import lightning.pytorch as pl
import torch
import torch.nn as nn
from torch.utils.data import DataLoader, TensorDataset

from lightning_mcuprune.examples.classifier import ImageClassifier


class Classifier(ImageClassifier):
    """The library's ImageClassifier with a fixed learning rate and a choice of optimiser (SGD with momentum
    exercises the optimiser-state surgery of channel removal)."""

    def __init__(self, net: nn.Module, lr: float = 1e-3, optimizer: str = "adam"):
        super().__init__(net, lr=lr)
        self.optimizer = optimizer

    def configure_optimizers(self):
        if self.optimizer == "sgd":
            return torch.optim.SGD(self.parameters(), lr=self.lr, momentum=0.9)
        return torch.optim.Adam(self.parameters(), lr=self.lr)


def random_loader(shape, classes=10, n=64, batch=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, *shape, generator=g)
    y = torch.randint(0, classes, (n,), generator=g)
    return DataLoader(TensorDataset(x, y), batch_size=batch, shuffle=False)


def trainer(callbacks, max_steps=None, max_epochs=None, **kw):
    return pl.Trainer(max_steps=max_steps or -1, max_epochs=max_epochs, accelerator="cpu", devices=1,
                      callbacks=callbacks, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                      enable_model_summary=False, num_sanity_val_steps=0, deterministic=True, **kw)


def fit_pruned(factory, shape, budgets, board, seed=0, steps=20, **kw):
    """A Classifier around factory() pruned by MCUPruneCallback(board, budgets, **kw) for `steps` steps on
    random data of `shape`; returns (model, callback)."""
    import warnings

    from lightning_mcuprune.callback import MCUPruneCallback
    torch.manual_seed(seed)
    model = Classifier(factory())
    cb = MCUPruneCallback(board, budgets, verbose=False, export=False, **kw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer([cb], max_steps=steps).fit(model, random_loader(shape, n=40, batch=8, seed=seed))
    return model, cb
