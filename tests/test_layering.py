"""`import pimm` must stay framework-level: no lib, no tools, no torch."""
import subprocess
import sys


def test_import_pimm_pulls_in_nothing_cream_specific():
    code = (
        "import sys, pimm, pimm.layers, pimm.models, pimm.data, pimm.loss, pimm.optim, "
        "pimm.scheduler, pimm.utils\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('lib', 'tools', 'torch', 'timm'))\n"
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"pimm imported {out.stdout.strip()}"
