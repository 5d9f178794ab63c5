"""Exponential moving average of a model's weights (timm 0.1.20's ``ModelEma``)."""
from __future__ import annotations

import copy
import logging
from typing import Any, Dict, Mapping, Union

import paddle
from paddle.utils import unique_name

from .paddle_checkpoint import read_paddle_checkpoint

__all__ = ["ModelEma", "unwrap_model"]

_logger = logging.getLogger(__name__)


def unwrap_model(model: Any) -> paddle.nn.Layer:
    """The plain model inside ``paddle.DataParallel`` wrappers or a :class:`ModelEma`."""
    if isinstance(model, ModelEma):
        return model.ema
    while isinstance(model, paddle.DataParallel):
        model = model._layers
    return model


def check_state_fits(layer: paddle.nn.Layer, state: Mapping[str, Any], what: str) -> None:
    """Raise ValueError unless ``state`` has exactly ``layer``'s keys and shapes (Paddle's
    ``set_state_dict`` only warns and skips a mismatch)."""
    own = layer.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    mismatched = [f"{k}: {list(state[k].shape)} vs {list(own[k].shape)}" for k in own
                  if k in state and list(state[k].shape) != list(own[k].shape)]
    problems = [f"{label} {items[:5]}" for label, items in
                (("missing", missing), ("unexpected", unexpected), ("shape mismatch", mismatched))
                if items]
    if problems:
        raise ValueError(f"{what} does not fit {type(layer).__name__}: " + "; ".join(problems)
                         + ". Build the same architecture as the run that saved it.")


class ModelEma:
    """Keeps ``ema = decay * ema + (1 - decay) * model`` for every entry of the state dict:
    parameters *and* buffers, so BatchNorm running mean/variance are averaged too (timm 0.1.20
    does the same). The copy lives in ``self.ema``, in eval mode, without gradients.

    ``resume``: a checkpoint path or an already-loaded checkpoint dict; its ``state_dict_ema``
    becomes the starting average (without one, the average starts from the model, with a
    warning, as in timm).
    """

    def __init__(self, model: paddle.nn.Layer, decay: float = 0.9999,
                 resume: Union[str, Mapping, None] = "") -> None:
        if not 0.0 <= decay <= 1.0:
            raise ValueError(f"ModelEma: decay must be in [0, 1], got {decay}")
        # The copy names its parameters through the unique-name generator; a private guard keeps
        # the caller's counters (and so the names of anything built later) unchanged.
        with unique_name.guard():
            self.ema = copy.deepcopy(unwrap_model(model))
        self.ema.eval()
        for param in self.ema.parameters():
            param.stop_gradient = True
        self.decay = decay
        if resume:
            self.resume(resume)

    def resume(self, checkpoint: Union[str, Mapping]) -> None:
        """Load the average from a checkpoint's ``state_dict_ema`` (path or loaded dict)."""
        source = checkpoint if isinstance(checkpoint, str) else "the given checkpoint"
        if isinstance(checkpoint, str):
            checkpoint = read_paddle_checkpoint(checkpoint)
        if not isinstance(checkpoint, Mapping):
            raise ValueError(f"ModelEma.resume: {source} is not a checkpoint dict")
        if "state_dict_ema" not in checkpoint:
            _logger.warning("ModelEma: %s has no state_dict_ema; the average starts from the "
                            "model's weights", source)
            return
        self.load_state_dict(checkpoint["state_dict_ema"])
        _logger.info("ModelEma: loaded state_dict_ema from %s", source)

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        check_state_fits(self.ema, state, "state_dict_ema")
        self.ema.set_state_dict(dict(state))

    def state_dict(self) -> dict:
        return self.ema.state_dict()

    @paddle.no_grad()
    def update(self, model: paddle.nn.Layer) -> None:
        """Move the average one step towards ``model`` (a DataParallel wrapper is fine)."""
        model_state = unwrap_model(model).state_dict()
        # one in-place lerp per tensor, ema + (1 - decay) * (model - ema): a single kernel
        # instead of scale, multiply and add (a few % of a small net's training step)
        weights: Dict[Any, paddle.Tensor] = {}
        for key, ema_value in self.ema.state_dict().items():
            if key not in model_state:
                raise KeyError(f"ModelEma.update: the model has no '{key}'; pass the model the "
                               "average was created from")
            model_value = model_state[key]
            if paddle.is_floating_point(ema_value):
                if ema_value.dtype not in weights:
                    weights[ema_value.dtype] = paddle.to_tensor(1.0 - self.decay,
                                                                dtype=ema_value.dtype)
                ema_value.lerp_(model_value, weights[ema_value.dtype])
            else:
                # counters (integer buffers) are copied: timm's float blend truncated them
                paddle.assign(model_value, output=ema_value)
