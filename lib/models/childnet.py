"""Cream's searched child networks, as ``pimm.models.MobileNetV3`` instances.

A child network is stem -> seven stages -> global pool -> 1x1 ``conv_head`` -> classifier, with
Swish activations and ReLU / hard-sigmoid squeeze-excite. Its parameter names are the reference's
(``conv_stem``, ``blocks.<stage>.<layer>.conv_pw`` ..., ``conv_head``, ``classifier``), so the
released checkpoints load as they are. The six released nets are registered as ``cream_14`` ...
``cream_604`` (``pimm.models.create_model('cream_14')`` after ``import lib.models``).
"""
from __future__ import annotations

from typing import Any, Dict, List, Sequence, Union

import paddle
from paddle import nn

from pimm.layers import HardSigmoid, Swish
from pimm.models import MobileNetV3, decode_arch_def, register_model, resolve_bn_args
from lib.models.archs import CREAM_ARCHS, ArchList, resolve_arch
from lib.models.space import SEARCHED_STAGES, layer_block_string, template_choice

__all__ = ["CREAM_NETWORK_KWARGS", "EVAL_INTERPOLATION", "build_childnet", "childnet_arch_def",
           "effective_arch", "zero_init_classifier"]

# What every Cream network (child nets and the supernet) shares besides its blocks.
CREAM_NETWORK_KWARGS: Dict[str, Any] = dict(
    stem_size=16,
    num_features=1280,
    act_layer=Swish,
    se_kwargs=dict(act_layer=nn.ReLU, gate_layer=HardSigmoid, divisor=8),
)

# The resampling of the evaluation resize the child networks are validated (and exported) with, as
# in the reference's retrain and test.
EVAL_INTERPOLATION = "bicubic"


def effective_arch(selection_or_arch: Union[int, Sequence[Sequence[int]]], exact: bool = False) -> ArchList:
    """The choices a child network really builds.

    The reference builds a stage that has a single layer from the stage's template and ignores
    its choice (net 14 lists choice 3 for stage 1 but runs k3e4). The released weights depend on
    it, so the child networks keep it; this function makes it explicit, e.g. for 14:
    ``[[0],[3],[3,3],[3,3],[3],[3],[0]] -> [[0],[0],[3,3],[3,3],[1],[3],[0]]``. ``exact`` builds
    every listed choice instead: the network the supernet runs for that path (the correlation study
    trains paths alone this way).
    """
    arch, _ = resolve_arch(selection_or_arch)
    if exact:
        return arch
    return [[template_choice(stage)] if len(choices) == 1 else list(choices)
            for stage, choices in enumerate(arch)]


def childnet_arch_def(selection_or_arch: Union[int, Sequence[Sequence[int]]], exact: bool = False
                      ) -> List[List[str]]:
    """The child network's stages as block strings, e.g. for 14 stage 2:
    ``['ir_r1_k5_s2_e6_c40_se0.25', 'ir_r1_k5_s2_e6_c40_se0.25']`` (``exact``: see
    :func:`effective_arch`)."""
    return [[layer_block_string(stage, choice if stage in SEARCHED_STAGES else None) for choice in choices]
            for stage, choices in enumerate(effective_arch(selection_or_arch, exact))]


def zero_init_classifier(model: nn.Layer) -> None:
    """Start ``model.classifier`` at zero weights (uniform predictions, loss ln(classes)).

    The reference's initialisation (timm's) draws the classifier from U(+-1/sqrt(classes)): right
    for 1000 classes, but ten times larger for 10, where the first steps then overshoot (loss well
    above ln(10) for the first epoch of the demo).
    """
    with paddle.no_grad():
        model.classifier.weight.set_value(paddle.zeros_like(model.classifier.weight))


def build_childnet(selection_or_arch: Union[int, Sequence[Sequence[int]]], num_classes: int = 1000,
                   drop_rate: float = 0.0, global_pool: str = "avg", exact: bool = False,
                   zero_classifier: bool = False, **kwargs: Any) -> MobileNetV3:
    """A Cream child network: a released selection (14, 43, 114, 287, 481, 604) or an arch list
    ``[[0], [...] x5, [0]]``; ``exact`` builds every listed choice, also of single-layer stages
    (see :func:`effective_arch`): a search's paths as the supernet ran them; the released nets
    and the reference's checkpoints need False.

    ``zero_classifier`` starts the classifier at zero (``zero_init_classifier``). Further keyword
    arguments go to ``MobileNetV3`` (``drop_path_rate``, ``in_chans``) or to its batch norms
    (``bn_momentum``, ``bn_eps``, ``bn_tf``). The model is built inside
    ``paddle.utils.unique_name.guard()`` so its parameter names are the same in every process.
    """
    norm_kwargs = resolve_bn_args(kwargs)
    block_args = decode_arch_def(childnet_arch_def(selection_or_arch, exact))
    with paddle.utils.unique_name.guard():
        model = MobileNetV3(block_args, num_classes=num_classes, drop_rate=drop_rate,
                            global_pool=global_pool, norm_kwargs=norm_kwargs,
                            **CREAM_NETWORK_KWARGS, **kwargs)
    if zero_classifier:
        zero_init_classifier(model)
    return model


def _register_released_net(selection: int) -> None:
    entry = CREAM_ARCHS[selection]

    def build(**kwargs: Any) -> MobileNetV3:
        return build_childnet(selection, **kwargs)

    build.__name__ = build.__qualname__ = f"cream_{selection}"
    build.__doc__ = (f"Cream {selection} MFLOPs child network ({entry.image_size} px input; published "
                     f"top-1 {entry.top1} %). Keyword arguments go to lib.models.build_childnet.")
    register_model(build)


for _selection in CREAM_ARCHS:
    _register_released_net(_selection)
