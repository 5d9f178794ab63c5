"""Test-wide setup. Environment variables must be set before Paddle's C++ core loads."""
import importlib.util
import os

os.environ.setdefault("GLOG_minloglevel", "2")
os.environ.setdefault("FLAGS_call_stack_level", "1")

import logging  # noqa: E402

import pytest  # noqa: E402

from pimm.utils.runtime import select_mkl_kernels  # noqa: E402

# The engines pick MKL's kernels when they start (pimm.utils.runtime), and MKL reads the choice at a
# process's first matrix product. Made here, before any test computes, it holds for this process
# and every subprocess alike; made by the first engine a test runs in-process, it would reach only
# the subprocesses started after it, whose float32 rounding then differs from this process's in
# the bit-exact resume comparisons.
select_mkl_kernels()

_RUN_LOGGERS = ("cream", "pimm", "lib")  # the loggers lib.engine.common.prepare_run configures


def _logger_state(name):
    logger = logging.getLogger(name)
    return list(logger.handlers), logger.level, logger.propagate


# as a fresh process has them: module-scoped fixtures that run an engine configure the loggers
# before any function-scoped fixture could save them
_PRISTINE_LOGGERS = {name: _logger_state(name) for name in _RUN_LOGGERS}


@pytest.fixture(autouse=True)
def _restore_run_loggers():
    """Engines called in-process reconfigure these loggers (handlers, level, propagate=False);
    put them back so later tests (caplog) see records as a fresh process would."""
    yield
    for name, (handlers, level, propagate) in _PRISTINE_LOGGERS.items():
        logger = logging.getLogger(name)
        for handler in [h for h in logger.handlers if h not in handlers]:
            logger.removeHandler(handler)
            handler.close()
        logger.setLevel(level)
        logger.propagate = propagate


@pytest.fixture(scope="session", autouse=True)
def _native_kernels():
    """Load pimm's native CPU kernels once, as the engines do when a run starts, so that every
    test runs the layers on the kernels a run uses, whatever the order of the tests."""
    from pimm.layers.native import build_native_kernels

    build_native_kernels()


@pytest.fixture(scope="session")
def demo_data_factory(tmp_path_factory):
    """Factory for synthetic ImageNet-style trees, each generated once per test session.

    ``demo_data_factory(num_classes=4, train_per_class=12, val_per_class=4, image_size=48, seed=0)``
    returns the root (a ``str``) of ``root/train/<NN_kind>/*.JPEG`` and ``root/val/<NN_kind>/*.JPEG``
    (``pimm.data.make_demo_dataset``; classes ``00_circle, 01_square, 02_triangle, 03_stripes, ...``,
    up to 12; labels follow that order). Same arguments -> same folder. Treat it as read-only.
    """
    from pimm.data.demo import make_demo_dataset

    made = {}

    def make(num_classes=4, train_per_class=12, val_per_class=4, image_size=48, seed=0):
        key = (num_classes, train_per_class, val_per_class, image_size, seed)
        if key not in made:
            root = tmp_path_factory.mktemp("demo_" + "_".join(map(str, key)))
            made[key] = make_demo_dataset(
                str(root),
                num_classes=num_classes,
                train_per_class=train_per_class,
                val_per_class=val_per_class,
                image_size=image_size,
                seed=seed,
            )
        return made[key]

    return make


@pytest.fixture(scope="session")
def demo_data_dir(demo_data_factory):
    """A tiny demo tree shared by the whole session (read-only): 4 classes
    (00_circle, 01_square, 02_triangle, 03_stripes), 12 train + 4 val JPEGs per class, 48x48 RGB.

    ``<demo_data_dir>/train`` has 48 images, ``<demo_data_dir>/val`` 16; returns the root as a str.
    """
    return demo_data_factory()


@pytest.fixture(scope="session")
def demo_cifar_dir(tmp_path_factory):
    """CIFAR-10 python batches of the demo images (``pimm.data.make_demo_cifar``, read-only): 10
    classes, 3 training images each dealt shuffled into data_batch_1..5 (30 images), 1 test image
    each in test_batch (10); returns the folder (DATASET.NAME cifar10)."""
    from pimm.data import make_demo_cifar

    return make_demo_cifar(str(tmp_path_factory.mktemp("demo_cifar")), num_classes=10, train_per_class=3,
                           test_per_class=1, seed=0)


@pytest.fixture(scope="session")
def cream14_dir():
    """The folder ``$CREAM_FIXTURES/cream14`` (14.pth.tar in the released format, input.npy,
    logits.npy, logits_ema.npy; read-only). Skips when CREAM_FIXTURES is unset."""
    root = os.environ.get("CREAM_FIXTURES")
    if not root:
        pytest.skip("CREAM_FIXTURES is unset: set it to the folder holding cream14/14.pth.tar "
                    "(.ci/run sets ../shared/fixtures)")
    folder = os.path.join(root, "cream14")
    if not os.path.isfile(os.path.join(folder, "14.pth.tar")):
        pytest.fail(f"CREAM_FIXTURES={root!r} has no cream14/14.pth.tar; point it at the shared fixtures folder")
    return folder


@pytest.fixture
def load_tool(monkeypatch):
    """``load_tool("convert_checkpoint")`` imports ``tools/convert_checkpoint.py`` as a module the
    way ``python tools/convert_checkpoint.py`` runs it: with ``tools/`` first on ``sys.path`` (the
    scripts import ``tools/_entry.py`` from there), for calling its ``main(argv)`` in-process."""
    tools = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tools")

    def load(name):
        monkeypatch.syspath_prepend(tools)
        spec = importlib.util.spec_from_file_location(f"tools_{name}", os.path.join(tools, f"{name}.py"))
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    return load
