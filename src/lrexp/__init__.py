"""lrexp: logistic-regression experiments on PyTorch Lightning and Hydra."""

__version__ = "0.1.0"
