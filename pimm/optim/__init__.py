"""Optimizers: timm-compatible factory, RMSprop (TF and PyTorch flavours), resumable state."""
from .optim_factory import OPTIMIZER_NAMES, add_weight_decay, create_optimizer
from .rmsprop import RMSprop, RMSpropTF
from .state import load_optimizer_state, materialize_optimizer_state

__all__ = [
    "OPTIMIZER_NAMES",
    "add_weight_decay",
    "create_optimizer",
    "RMSprop",
    "RMSpropTF",
    "load_optimizer_state",
    "materialize_optimizer_state",
]
