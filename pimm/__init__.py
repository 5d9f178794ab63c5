"""pimm: PaddlePaddle image models, a timm-equivalent toolkit (layers, models, data, optim, ...)."""

__version__ = "0.1.0"
