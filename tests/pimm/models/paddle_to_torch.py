"""Write a Paddle model's weights the way torch.save would have (for the loading-path tests)."""
from __future__ import annotations

from collections import OrderedDict
from typing import Any, Optional

import numpy as np
import paddle

from tests.pimm.models.torchfile_writer import tensor

_TORCH_BN_NAMES = {"_mean": "running_mean", "_variance": "running_var"}


def torch_state_dict(model: paddle.nn.Layer, prefix: str = "", batches_tracked: Optional[int] = 7,
                     **tensor_args: Any) -> OrderedDict:
    """``model``'s state dict in torch's names and layouts, as torchfile_writer tensors: BN
    ``running_mean/var`` plus an int64 ``num_batches_tracked`` (none when ``batches_tracked`` is
    None, as torch < 0.4.1 wrote), Linear weights ``[out, in]``. ``tensor_args`` go to
    ``torchfile_writer.tensor`` (``location``, ``rebuild``)."""
    linear_weights = {f"{name}.weight" for name, layer in model.named_sublayers()
                      if isinstance(layer, paddle.nn.Linear)}
    state = OrderedDict()
    for name, value in model.state_dict().items():
        array = value.numpy()
        owner, _, leaf = name.rpartition(".")
        if name in linear_weights:
            array = np.ascontiguousarray(array.T)
        if leaf in _TORCH_BN_NAMES:
            name = f"{owner}.{_TORCH_BN_NAMES[leaf]}"
        state[prefix + name] = tensor(array, **tensor_args)
        if leaf == "_variance" and batches_tracked is not None:
            state[f"{prefix}{owner}.num_batches_tracked"] = tensor(np.array(batches_tracked, np.int64),
                                                                   **tensor_args)
    return state
