"""Test-wide setup. Environment variables must be set before Paddle's C++ core loads."""
import os

os.environ.setdefault("GLOG_minloglevel", "2")
os.environ.setdefault("FLAGS_call_stack_level", "1")
