"""What Catalyst 20.x's registry names are in stagegraph: torch classes by dotted path.

Catalyst named components by their registry name (``criterion: CrossEntropyLoss``,
``optimizer: Adam``); the ones torch defines are listed here, so the converter writes their import
path without importing torch. Any other name was registered by the user's code (the ``expdir``
module) or by Catalyst's contrib package.
"""

from __future__ import annotations

LOSSES = (
    "BCELoss", "BCEWithLogitsLoss", "CTCLoss", "CosineEmbeddingLoss", "CrossEntropyLoss",
    "GaussianNLLLoss", "HingeEmbeddingLoss", "HuberLoss", "KLDivLoss", "L1Loss",
    "MSELoss", "MarginRankingLoss", "MultiLabelMarginLoss", "MultiLabelSoftMarginLoss",
    "MultiMarginLoss", "NLLLoss", "PoissonNLLLoss", "SmoothL1Loss", "SoftMarginLoss",
    "TripletMarginLoss", "TripletMarginWithDistanceLoss",
)
OPTIMIZERS = (
    "ASGD", "Adadelta", "Adafactor", "Adagrad", "Adam", "AdamW", "Adamax", "LBFGS", "NAdam",
    "RAdam", "RMSprop", "Rprop", "SGD", "SparseAdam",
)
SCHEDULERS = (
    "ChainedScheduler", "ConstantLR", "CosineAnnealingLR", "CosineAnnealingWarmRestarts",
    "CyclicLR", "ExponentialLR", "LambdaLR", "LinearLR", "MultiStepLR", "MultiplicativeLR",
    "OneCycleLR", "PolynomialLR", "ReduceLROnPlateau", "SequentialLR", "StepLR",
)

#: The torch module of each component kind's classes.
MODULES = {"criterion": ("torch.nn", LOSSES), "optimizer": ("torch.optim", OPTIMIZERS),
           "scheduler": ("torch.optim.lr_scheduler", SCHEDULERS)}


def torch_path(kind: str, name: str) -> str | None:
    """The import path of torch's class ``name`` of ``kind`` (``None``: torch has none)."""
    module, names = MODULES.get(kind, ("", ()))
    return f"{module}.{name}" if name in names else None


def module_of(expdir: str) -> str:
    """The module an ``expdir`` folder is imported as: ``./examples/mnist/src/`` ->
    ``examples.mnist.src``."""
    parts = [p for p in expdir.replace("\\", "/").split("/") if p not in ("", ".")]
    return ".".join(parts)
