"""pimm's native depthwise convolution: same values and gradients as Paddle's kernel, used by
Conv2d where it applies, and a clean fallback where it cannot be built."""
import logging
import os
import shutil
import subprocess

import numpy as np
import paddle
import paddle.nn.functional as F
import pytest

import pimm.layers.native as native
from pimm.layers import BatchNorm2d, Conv2d, Swish, create_conv2d, layer_modes
from pimm.layers.depthwise import depthwise_conv2d, native_depthwise_fits, native_depthwise_ready
from pimm.utils import get_num_threads, set_num_threads

# builds the kernels at collection, as tests/conftest.py and the engines do before running layers
needs_native = pytest.mark.skipif(not native.build_native_kernels(), reason="no C compiler for the native kernels")

# (N, C, H, W, kernel, stride, padding): odd sizes, non-square images, all the nets' kernels and
# strides, padding that is smaller or larger than "same"; the first row takes the kernel's
# channel-blocked path (outputs narrower than 16 columns), the second its plane path (wider
# outputs; strided input gradients and padding wider than the filter go blocked again)
CASES = [
    (2, 3, 7, 9, 3, 1, 1), (2, 4, 8, 8, 5, 2, 2), (3, 5, 11, 6, 7, 2, 3), (1, 2, 4, 4, 5, 1, 2),
    (2, 3, 9, 9, 3, 2, 1), (2, 2, 6, 5, 3, 1, 0), (1, 3, 5, 7, 3, 2, 2), (1, 17, 12, 12, 5, 1, 2),
    (2, 9, 20, 34, 5, 1, 2), (2, 10, 36, 40, 5, 2, 2), (1, 3, 18, 21, 3, 1, 0), (1, 2, 20, 20, 3, 1, 3),
]


def _run(fast: bool, x_np, w_np, grad_np, stride, padding):
    x = paddle.to_tensor(x_np, stop_gradient=False)
    w = paddle.to_tensor(w_np, stop_gradient=False)
    if fast:
        y = depthwise_conv2d(x, w, [stride, stride], [padding, padding])
    else:
        y = F.conv2d(x, w, stride=stride, padding=padding, groups=x.shape[1])
    y.backward(paddle.to_tensor(grad_np))
    return y.numpy(), x.grad.numpy(), w.grad.numpy()


def _relative(a, b):
    return float(np.abs(a - b).max() / np.abs(b).max())


@needs_native
@pytest.mark.parametrize("n, c, h, w, k, stride, padding", CASES)
def test_values_and_gradients_match_paddles_kernel(n, c, h, w, k, stride, padding):
    rng = np.random.default_rng(n * 100 + c * 10 + k)
    x = rng.standard_normal((n, c, h, w)).astype(np.float32)
    weight = rng.standard_normal((c, 1, k, k)).astype(np.float32)
    out_h, out_w = (h + 2 * padding - k) // stride + 1, (w + 2 * padding - k) // stride + 1
    grad = rng.standard_normal((n, c, out_h, out_w)).astype(np.float32)
    fast = _run(True, x, weight, grad, stride, padding)
    reference = _run(False, x, weight, grad, stride, padding)
    assert fast[0].shape == reference[0].shape == (n, c, out_h, out_w)
    for name, a, b in zip(("output", "input grad", "filter grad"), fast, reference):
        assert _relative(a, b) < 1e-5, name


@needs_native
def test_one_tap_by_hand():
    # a 3x3 filter that only keeps its centre-right tap shifts the image one column left
    x = paddle.arange(2 * 16, dtype="float32").reshape([1, 2, 4, 4])
    weight = paddle.zeros([2, 1, 3, 3])
    weight[:, 0, 1, 2] = paddle.to_tensor([1.0, -2.0])
    out = depthwise_conv2d(x, weight, [1, 1], [1, 1]).numpy()
    expected = np.zeros((1, 2, 4, 4), np.float32)
    expected[0, :, :, :3] = x.numpy()[0, :, :, 1:]
    expected[0, 1] *= -2.0
    np.testing.assert_array_equal(out, expected)


@needs_native
def test_threads_do_not_change_the_result():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((3, 6, 10, 10)).astype(np.float32)
    weight = rng.standard_normal((6, 1, 5, 5)).astype(np.float32)
    grad = rng.standard_normal((3, 6, 10, 10)).astype(np.float32)
    before = get_num_threads()
    try:
        results = []
        for threads in (1, 2):
            set_num_threads(threads)
            results.append(_run(True, x, weight, grad, 1, 2))
    finally:
        set_num_threads(before)
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)  # channels are split between threads, sums are not


@needs_native
def test_conv2d_takes_the_native_path_only_where_it_applies(monkeypatch):
    calls = []
    import pimm.layers.conv2d as conv_module

    original = conv_module.depthwise_conv2d
    monkeypatch.setattr(conv_module, "depthwise_conv2d", lambda *a: calls.append(1) or original(*a))
    paddle.seed(0)
    dw = create_conv2d(8, 8, 5, stride=2, depthwise=True)
    assert isinstance(dw, Conv2d)
    x = paddle.randn([2, 8, 9, 9])
    fast = dw(x)
    assert len(calls) == 1
    reference = F.conv2d(x, dw.weight, stride=2, padding=2, groups=8)
    assert _relative(fast.numpy(), reference.numpy()) < 1e-5
    with layer_modes(dw, second_order=True):  # double-grad capable path: Paddle's conv2d op
        dw(x)
    create_conv2d(8, 16, 3)(x)  # dense conv
    create_conv2d(8, 8, 3, depthwise=True, bias=True)(x)  # bias: Paddle's kernel
    assert len(calls) == 1
    assert native_depthwise_ready(x, dw.weight)
    assert not native_depthwise_ready(x.astype("float64"), dw.weight.astype("float64"))
    assert not native_depthwise_ready(x[:, :4], dw.weight)  # Paddle's kernel says what is wrong
    fits = dict(weight_shape=[8, 1, 5, 5], has_bias=False, groups=8, padding=[2, 2], dilation=[1, 1],
                padding_algorithm="EXPLICIT", data_format="NCHW")
    assert native_depthwise_fits(**fits)
    for change in (dict(dilation=[2, 2]), dict(has_bias=True), dict(padding_algorithm="SAME"),
                   dict(weight_shape=[16, 1, 5, 5]), dict(weight_shape=[8, 1, 17, 17]),
                   dict(padding=[1, 2, 2, 2])):
        assert not native_depthwise_fits(**dict(fits, **change)), change


@needs_native
def test_training_a_block_matches_paddles_kernel():
    # the same two SGD steps through conv -> BN -> swish -> depthwise, with and without the native path
    def train(use_native: bool):
        paddle.seed(3)
        model = paddle.nn.Sequential(create_conv2d(3, 8, 1), BatchNorm2d(8), Swish(),
                                     create_conv2d(8, 8, 3, stride=2, depthwise=True))
        optimizer = paddle.optimizer.SGD(0.1, parameters=model.parameters())
        x = paddle.to_tensor(np.random.default_rng(0).standard_normal((4, 3, 12, 12)).astype(np.float32))
        for _ in range(2):
            with layer_modes(model, second_order=not use_native):
                loss = (model(x) ** 2).mean()
            optimizer.clear_grad()
            loss.backward()
            optimizer.step()
        return model[3].weight.numpy()

    assert _relative(train(True), train(False)) < 1e-5


@needs_native
def test_kernels_link_paddles_openmp_runtime():
    # Paddle's CPU kernels and MKL run on libiomp5; kernels on the compiler's libgomp would add a
    # second pool of worker threads spin-waiting beside Paddle's
    runtime = native._paddle_openmp_runtime()
    if runtime is None or shutil.which("readelf") is None:
        pytest.skip("this Paddle wheel ships no libiomp5, or readelf is missing")
    dynamic = subprocess.run(["readelf", "-d", native.native_library()._name], check=True,
                             capture_output=True, text=True).stdout
    needed = [line.split("[", 1)[1].rstrip("]") for line in dynamic.splitlines()
              if "(NEEDED)" in line]
    assert "libiomp5.so" in needed
    assert not any(name.startswith("libgomp") for name in needed)
    assert f"[{os.path.dirname(runtime)}]" in dynamic  # rpath: found without LD_LIBRARY_PATH


def _fresh_process(monkeypatch, tmp_path):
    """The module state of a process that has not built the kernels yet, with an empty cache."""
    monkeypatch.setattr(native, "_outcome", None)
    monkeypatch.setattr(native, "_loaded", None)
    monkeypatch.setenv("PIMM_CACHE_DIR", str(tmp_path / "cache"))


def test_forward_never_builds_and_without_a_compiler_says_why(monkeypatch, tmp_path, caplog):
    _fresh_process(monkeypatch, tmp_path)
    monkeypatch.setenv("CC", str(tmp_path / "no-such-compiler"))
    dw = create_conv2d(4, 4, 3, depthwise=True)
    x = paddle.randn([1, 4, 5, 5])
    reference = F.conv2d(x, dw.weight, padding=1, groups=4)
    np.testing.assert_array_equal(dw(x).numpy(), reference.numpy())
    assert native._outcome is None and not os.path.exists(tmp_path / "cache")  # nothing tried
    with caplog.at_level(logging.INFO, logger="pimm.layers.native"):
        assert native.build_native_kernels() is False
    assert [r.levelname for r in caplog.records] == ["WARNING"]
    assert "native CPU kernels: unavailable (could not build them" in caplog.text
    assert "Paddle's CPU kernel" in caplog.text
    assert native.native_library() is None
    assert not native.build_native_kernels()  # tried once per process
    np.testing.assert_array_equal(dw(x).numpy(), reference.numpy())


def test_disabled_by_environment(monkeypatch, tmp_path, caplog):
    _fresh_process(monkeypatch, tmp_path)
    monkeypatch.setenv("PIMM_NATIVE_KERNELS", "0")
    assert not native.native_kernels_enabled()
    with caplog.at_level(logging.INFO, logger="pimm.layers.native"):
        assert not native.build_native_kernels()
    assert "unavailable (PIMM_NATIVE_KERNELS=0" in caplog.text
    assert native.native_library() is None


@needs_native
def test_command_builds_the_cache_then_loads_it(monkeypatch, tmp_path, capsys):
    from pimm.layers import build_native

    _fresh_process(monkeypatch, tmp_path)
    assert build_native.main() == 0
    built = capsys.readouterr().out
    assert built.startswith("native CPU kernels: built in ") and str(tmp_path / "cache") in built
    monkeypatch.setattr(native, "_outcome", None)  # a second process on the same machine
    monkeypatch.setattr(native, "_loaded", None)
    assert build_native.main() == 0
    assert capsys.readouterr().out.startswith("native CPU kernels: loaded from the cache (")
    dw = create_conv2d(4, 4, 3, depthwise=True)
    x = paddle.randn([1, 4, 5, 5])
    assert native_depthwise_ready(x, dw.weight)  # the layers use the freshly loaded kernels


@needs_native
def test_bad_arguments():
    x = paddle.randn([1, 2, 3, 3])
    with pytest.raises(ValueError, match="smaller than the kernel"):
        depthwise_conv2d(x, paddle.randn([2, 1, 5, 5]), [1, 1], [0, 0])
    with pytest.raises(ValueError, match="two values"):
        depthwise_conv2d(x, paddle.randn([2, 1, 3, 3]), [1], [1, 1])
