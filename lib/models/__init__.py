"""Cream's networks: the table of searched architectures, the child networks and the supernet.

Importing this package registers the released child networks ``cream_14`` ... ``cream_604`` in
pimm's model registry.
"""
from lib.models.archs import CREAM_ARCHS, CreamArch, resolve_arch, validate_arch
from lib.models.childnet import CREAM_NETWORK_KWARGS, build_childnet, childnet_arch_def, effective_arch
from lib.models.convert import ConversionSummary, convert_torch_checkpoint
from lib.models.supernet import SuperNet, build_supernet

__all__ = [
    "CREAM_ARCHS", "CREAM_NETWORK_KWARGS", "ConversionSummary", "CreamArch", "SuperNet", "build_childnet",
    "build_supernet", "childnet_arch_def", "convert_torch_checkpoint", "effective_arch", "resolve_arch",
    "validate_arch",
]
