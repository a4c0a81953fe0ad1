"""Examples built on the library: a model zoo, a LightningModule classifier, the `mcuprune demo`."""
