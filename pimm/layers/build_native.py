"""Build pimm's native CPU kernels into the cache (or check that they load) and say how it went.

    python -m pimm.layers.build_native

Prints one line (built / loaded from the cache / unavailable and why); the exit status is 0 when
the kernels are loaded, 1 when the layers will use Paddle's kernels. Training and search runs do
the same at their start (``lib.engine.common.prepare_run``), so this is only needed to prepare a
shared cache (``$PIMM_CACHE_DIR``) or to check a machine.
"""
import logging
import sys

from pimm.layers.native import build_native_kernels


def main() -> int:
    printer = logging.Logger("pimm.layers.build_native", logging.INFO)  # stdout only, unregistered
    printer.addHandler(logging.StreamHandler(sys.stdout))
    return 0 if build_native_kernels(printer) else 1


if __name__ == "__main__":
    sys.exit(main())
