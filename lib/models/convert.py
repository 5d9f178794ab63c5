"""Convert PyTorch Cream checkpoints (the released ``*.pth.tar`` files) into Paddle ``.pdparams``.

The weights are loaded into the child network they belong to, so a conversion that finishes has
been checked name by name and shape by shape; the result is a checkpoint in the format of
docs/DEVELOPING.md that ``pimm.models.load_checkpoint`` reads.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Union

from pimm.models import load_checkpoint, read_checkpoint_file
from pimm.utils import atomic_save, count_parameters
from lib.models.archs import CREAM_ARCHS, ArchList, resolve_arch, trained_network
from lib.models.childnet import build_childnet

__all__ = ["ConversionSummary", "convert_torch_checkpoint"]

SelectionOrArch = Union[int, Sequence[Sequence[int]]]


@dataclass
class ConversionSummary:
    source: str
    destination: str
    model_name: str
    arch: ArchList
    num_params: int
    epoch: Optional[int]
    tensors: Dict[str, int] = field(default_factory=dict)  # written entry -> tensor count
    ema_as_weights: bool = False
    left_out: List[str] = field(default_factory=list)  # source entries not converted

    def describe(self) -> str:
        weights = ", ".join(f"{key} ({count} tensors)" for key, count in self.tensors.items())
        lines = [f"converted {self.source} -> {self.destination}",
                 f"  model:   {self.model_name} {self.arch} ({self.num_params / 1e6:.3f}M parameters)",
                 f"  weights: {weights}" + ("  [the EMA weights, stored as state_dict]" if self.ema_as_weights else ""),
                 f"  epoch:   {'unknown' if self.epoch is None else self.epoch}"]
        if self.left_out:
            lines.append(f"  not converted: {', '.join(self.left_out)} (PyTorch training state has no Paddle "
                         f"equivalent)")
        return "\n".join(lines)


def _num_classes_from_args(args: Any) -> int:
    dataset = args.get("DATASET") if isinstance(args, dict) else None
    return int(dataset.get("NUM_CLASSES", 1000)) if isinstance(dataset, dict) else 1000


def convert_torch_checkpoint(source: str, destination: str,
                             selection_or_arch: Optional[SelectionOrArch] = None, use_ema: bool = False,
                             num_classes: Optional[int] = None) -> ConversionSummary:
    """Write ``destination`` (``.pdparams``) from the PyTorch checkpoint ``source``.

    The child network comes from ``selection_or_arch``, or else from the run config stored in the
    checkpoint (``args.NET.SELECTION``, ``args.NET.INPUT_ARCH`` for -1); the class count from
    ``num_classes`` or ``args.DATASET.NUM_CLASSES`` (default 1000). ``state_dict`` and, when present,
    ``state_dict_ema`` are converted; with ``use_ema`` only the EMA weights are written, as
    ``state_dict`` (what the reference's test evaluates). ``epoch``, ``version`` and ``args`` are kept;
    the optimizer state is not.
    """
    if not destination.endswith(".pdparams"):
        raise ValueError(f"destination {destination!r} must end in .pdparams: Paddle checkpoints use that "
                         f"extension, and files named *.pth/*.tar are read as PyTorch files.")
    checkpoint = read_checkpoint_file(source)
    is_bare = not (isinstance(checkpoint, dict) and "state_dict" in checkpoint)
    metadata = {} if is_bare else checkpoint
    has_ema = bool(metadata.get("state_dict_ema"))
    if use_ema and not has_ema:
        raise ValueError(f"{source!r} has no EMA weights (state_dict_ema); convert without --ema.")

    if selection_or_arch is None:
        selection_or_arch = trained_network(metadata.get("args"))
    if selection_or_arch is None:
        raise ValueError(f"{source!r} does not say which Cream network it holds (no usable NET.SELECTION in "
                         f"its args): pass --selection ({', '.join(map(str, sorted(CREAM_ARCHS)))}) or --arch.")
    arch, _ = resolve_arch(selection_or_arch)
    if num_classes is None:
        num_classes = _num_classes_from_args(metadata.get("args"))
    model = build_childnet(arch, num_classes=num_classes)
    model_name = (f"cream_{selection_or_arch}" if isinstance(selection_or_arch, int) else "cream")

    # written entry -> whether it comes from the EMA weights
    entries = {"state_dict": use_ema}
    if has_ema and not use_ema:
        entries["state_dict_ema"] = True
    converted: Dict[str, Any] = {}
    for entry, from_ema in entries.items():
        load_checkpoint(model, source, use_ema=from_ema)
        converted[entry] = {name: value.clone() for name, value in model.state_dict().items()}
    kept = {key: metadata[key] for key in ("epoch", "version", "args") if metadata.get(key) is not None}
    atomic_save({**converted, **kept, "arch": model_name, "cream_arch": arch}, destination)

    return ConversionSummary(
        source=source, destination=destination, model_name=model_name, arch=arch,
        num_params=count_parameters(model), epoch=kept.get("epoch"),
        tensors={entry: len(weights) for entry, weights in converted.items()}, ema_as_weights=use_ema,
        left_out=[key for key in ("optimizer", "scheduler", "amp") if metadata.get(key) is not None])
