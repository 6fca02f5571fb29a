"""Methods: one module per method, each a LightningModule registered under its config name."""

from lit_knowledge.registry import Registry

METHODS: Registry = Registry("method")

# Importing the method modules registers them.
from lit_knowledge.methods import baselines, oedit, pretrain, selfparam  # noqa: E402, F401
