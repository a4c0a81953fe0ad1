"""LightningCLI with MCUPruneCallback, configured from YAML:

    python examples/mcuprune_cli.py fit --config examples/fashion_mnist.yaml
    python examples/mcuprune_cli.py fit --config examples/fashion_mnist.yaml --trainer.max_epochs 2
"""
from lightning.pytorch.cli import LightningCLI

from lightning_mcuprune.examples.classifier import ImageClassifier
from lightning_mcuprune.data.datasets import FashionMNISTDataModule


def main(args=None):
    return LightningCLI(ImageClassifier, FashionMNISTDataModule, args=args, save_config_kwargs={"overwrite": True})


if __name__ == "__main__":
    main()
