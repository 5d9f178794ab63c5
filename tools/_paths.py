"""Imported first by every script in tools/: puts the repository root on ``sys.path`` so that
``python tools/<script>.py`` finds ``pimm`` and ``lib`` from any working directory."""
import os
import sys

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)
