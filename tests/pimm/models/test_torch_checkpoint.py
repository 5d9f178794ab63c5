"""The torch-free checkpoint reader, on files written in torch's formats by tests/.../torchfile_writer."""
from __future__ import annotations

import os
import pickle
import zipfile
from collections import OrderedDict

import numpy as np
import paddle
import pytest

from pimm.utils.torch_checkpoint import (
    TorchCheckpointError,
    UnsafeCheckpointError,
    extract_state_dict,
    is_torch_checkpoint,
    read_torch_checkpoint,
    torch_to_paddle_state_dict,
)
from tests.pimm.models.torchfile_writer import (
    REBUILD_TENSOR,
    REBUILD_TENSOR_V3,
    CfgNode,
    Call,
    Global,
    Parameter,
    Storage,
    StorageView,
    Tensor,
    dumps_object,
    save_legacy,
    save_zip,
    tensor,
)

SAVERS = {"legacy": save_legacy, "zip": save_zip}


def _small_state_dict(location: str = "cpu") -> OrderedDict:
    return OrderedDict([
        ("conv.weight", tensor(np.arange(54, dtype=np.float32).reshape(2, 3, 3, 3) / 7, location)),
        ("bn.weight", tensor(np.array([1.5, -2.0], dtype=np.float32), location)),
        ("bn.running_mean", tensor(np.array([0.25, 0.5], dtype=np.float32), location)),
        ("bn.num_batches_tracked", tensor(np.array(7, dtype=np.int64), location)),
    ])


def _check_small_state_dict(loaded) -> None:
    assert type(loaded) is OrderedDict
    assert list(loaded) == ["conv.weight", "bn.weight", "bn.running_mean", "bn.num_batches_tracked"]
    np.testing.assert_array_equal(
        loaded["conv.weight"], np.arange(54, dtype=np.float32).reshape(2, 3, 3, 3) / 7)
    assert loaded["conv.weight"].dtype == np.float32
    np.testing.assert_array_equal(loaded["bn.weight"], [1.5, -2.0])
    counter = loaded["bn.num_batches_tracked"]
    assert counter.dtype == np.int64 and counter.shape == () and int(counter) == 7


@pytest.mark.parametrize("fmt", ["legacy", "zip"])
def test_reads_checkpoint_dict_with_gpu_locations(tmp_path, fmt):
    path = str(tmp_path / "ckpt.pth.tar")
    SAVERS[fmt]({"epoch": 3, "arch": "net", "state_dict": _small_state_dict("cuda:0"),
                 "metric": 71.25, "flags": (True, None)}, path)

    assert is_torch_checkpoint(path)
    loaded = read_torch_checkpoint(path)
    assert loaded["epoch"] == 3 and loaded["arch"] == "net" and loaded["metric"] == 71.25
    assert loaded["flags"] == (True, None)
    _check_small_state_dict(loaded["state_dict"])


def test_zip_root_folder_is_taken_from_the_archive(tmp_path):
    # timm's saver writes tmp.pth.tar and renames it: every record then starts with "tmp.pth/".
    path = str(tmp_path / "model_best.pth.tar")
    save_zip({"state_dict": _small_state_dict()}, path, root="tmp.pth")
    with zipfile.ZipFile(path) as archive:
        assert "tmp.pth/data.pkl" in archive.namelist()
    assert is_torch_checkpoint(path)
    _check_small_state_dict(read_torch_checkpoint(path)["state_dict"])


def test_big_endian_zip_and_missing_byteorder_record(tmp_path):
    values = np.array([1.25, -3.5, 1e-3], dtype=np.float64)
    big, unmarked = str(tmp_path / "big.pt"), str(tmp_path / "old.pt")
    save_zip({"w": tensor(values)}, big, byteorder="big")
    save_zip({"w": tensor(values)}, unmarked, byteorder=None)  # torch 1.6-2.0: little endian
    for path in (big, unmarked):
        loaded = read_torch_checkpoint(path)["w"]
        assert loaded.dtype == np.float64 and loaded.dtype.isnative
        np.testing.assert_array_equal(loaded, values)


@pytest.mark.parametrize("fmt", ["legacy", "zip"])
def test_strides_offsets_and_shared_storages(tmp_path, fmt):
    shared = Storage("FloatStorage", np.arange(12, dtype=np.float32))
    path = str(tmp_path / "views.pth")
    SAVERS[fmt]({
        "matrix": Tensor(shared, 0, (3, 4), (4, 1)),
        "transposed": Tensor(shared, 0, (4, 3), (1, 4)),
        "window": Tensor(shared, 2, (2, 3), (4, 1)),
        "expanded": Tensor(shared, 9, (2, 3), (0, 1)),
        "scalar": Tensor(shared, 5, (), ()),
        "empty": Tensor(shared, 0, (0, 4), (4, 1)),
        "old_style": Tensor(shared, 1, (2,), (5,), rebuild=REBUILD_TENSOR),
    }, path)
    loaded = read_torch_checkpoint(path)

    np.testing.assert_array_equal(loaded["matrix"], [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11]])
    np.testing.assert_array_equal(loaded["transposed"], [[0, 4, 8], [1, 5, 9], [2, 6, 10], [3, 7, 11]])
    np.testing.assert_array_equal(loaded["window"], [[2, 3, 4], [6, 7, 8]])
    np.testing.assert_array_equal(loaded["expanded"], [[9, 10, 11], [9, 10, 11]])
    assert loaded["scalar"].shape == () and loaded["scalar"] == 5
    assert loaded["empty"].shape == (0, 4) and loaded["empty"].dtype == np.float32
    np.testing.assert_array_equal(loaded["old_style"], [1, 6])
    arrays = list(loaded.values())
    for array in arrays:
        assert array.flags.c_contiguous and array.flags.owndata
    # Each tensor is its own copy even though all seven shared one storage.
    loaded["matrix"][0, 0] = 100
    assert loaded["transposed"][0, 0] == 0


def test_same_tensor_object_stays_shared(tmp_path):
    weight = tensor(np.ones((2, 2), dtype=np.float32))
    path = str(tmp_path / "tied.pth")
    save_zip({"a": weight, "b": weight}, path)
    loaded = read_torch_checkpoint(path)
    assert loaded["a"] is loaded["b"]


@pytest.mark.parametrize("fmt", ["legacy", "zip"])
def test_every_storage_dtype(tmp_path, fmt):
    arrays = {
        "float32": np.array([1.5, -2.25], np.float32),
        "float64": np.array([1e-300, 3.0], np.float64),
        "float16": np.array([0.5, -65504.0], np.float16),
        "int64": np.array([-(2 ** 62), 2 ** 62 + 5], np.int64),
        "int32": np.array([-7, 2 ** 30], np.int32),
        "int16": np.array([-300, 300], np.int16),
        "int8": np.array([-128, 127], np.int8),
        "uint8": np.array([0, 255], np.uint8),
        "bool": np.array([True, False, True]),
        "complex64": np.array([1 + 2j, -3j], np.complex64),
    }
    checkpoint = {name: tensor(array) for name, array in arrays.items()}
    # bfloat16 bit patterns of 1.0, -2.5 and 3.140625; the reader widens them to float32.
    checkpoint["bfloat16"] = Tensor(
        Storage("BFloat16Storage", np.array([0x3F80, 0xC020, 0x4049], np.uint16)), 0, (3,), (1,))
    path = str(tmp_path / "dtypes.pth")
    SAVERS[fmt](checkpoint, path)
    loaded = read_torch_checkpoint(path)

    for name, array in arrays.items():
        assert loaded[name].dtype == array.dtype, name
        np.testing.assert_array_equal(loaded[name], array)
    assert loaded["bfloat16"].dtype == np.float32
    np.testing.assert_array_equal(loaded["bfloat16"], [1.0, -2.5, 3.140625])


def test_untyped_storage_v3_parameter_device_and_size(tmp_path):
    # torch 2.x: uint16 tensors use _rebuild_tensor_v3 over torch.storage.UntypedStorage, whose
    # size is counted in bytes; the storage offset is in elements of the tensor's dtype.
    values = np.array([1, 2, 65535, 40000], np.uint16)
    untyped = Storage("UntypedStorage", values.view(np.uint8), module="torch.storage")
    path = str(tmp_path / "v3.pt")
    save_zip({
        "counts": Tensor(untyped, 1, (3,), (1,), rebuild=REBUILD_TENSOR_V3,
                         dtype=Global("torch", "uint16")),
        "param": Parameter(tensor(np.array([[1.0, 2.0]], np.float32))),
        "device": Call(Global("torch", "device"), "cuda", 1),
        "shape": Call(Global("torch", "Size"), (2, 3)),
    }, path)
    loaded = read_torch_checkpoint(path)
    assert loaded["counts"].dtype == np.uint16
    np.testing.assert_array_equal(loaded["counts"], [2, 65535, 40000])
    np.testing.assert_array_equal(loaded["param"], [[1.0, 2.0]])
    assert loaded["device"] == "cuda:1" and loaded["shape"] == (2, 3)


def test_legacy_storage_views(tmp_path):
    root = Storage("LongStorage", np.arange(10, dtype=np.int64), key="140001")
    path = str(tmp_path / "old.pth")
    save_legacy({"tail": Tensor(StorageView(root, "140002", 6, 4), 1, (2,), (2,)),
                 "whole": Tensor(root, 0, (10,), (1,))}, path)
    loaded = read_torch_checkpoint(path)
    np.testing.assert_array_equal(loaded["tail"], [7, 9])
    np.testing.assert_array_equal(loaded["whole"], np.arange(10))


def test_yacs_cfgnode_becomes_plain_dict(tmp_path):
    args = CfgNode({"NET": {"SELECTION": 14, "INPUT_ARCH": [[0], [3, 3]]},
                    "DATASET": {"IMAGE_SIZE": 64}, "LR": 0.01})
    args.__dict__["__deprecated_keys__"] = {"OLD.KEY"}
    args.__dict__["__immutable__"] = True
    args["net"] = args["NET"]  # the reference's lower-case aliases share the node
    path = str(tmp_path / "with_args.pth.tar")
    save_legacy({"args": args, "state_dict": _small_state_dict()}, path)
    with open(path, "rb") as file:
        assert b"yacs.config\nCfgNode" in file.read()
    loaded = read_torch_checkpoint(path)["args"]

    assert type(loaded) is dict and type(loaded["NET"]) is dict
    assert loaded["NET"] == {"SELECTION": 14, "INPUT_ARCH": [[0], [3, 3]]}
    assert loaded["DATASET"]["IMAGE_SIZE"] == 64 and loaded["LR"] == 0.01
    assert loaded["net"] is loaded["NET"]
    assert set(loaded) == {"NET", "DATASET", "LR", "net"}


# ---------------------------------------------------------------------------------------------
# Refusing foreign code


def _payloads(marker: str) -> dict[str, Call]:
    return {
        "posix.system": Call(Global("posix", "system"), f"touch '{marker}'"),
        "os.system": Call(Global("os", "system"), f"touch '{marker}'"),
        "builtins.eval": Call(Global("builtins", "eval"), f"open({marker!r}, 'w').close()"),
        "builtins.open": Call(Global("__builtin__", "open"), marker, "w"),
        "subprocess.Popen": Call(Global("subprocess", "Popen"), ["touch", marker]),
    }


def test_payloads_are_live_when_unpickled_unsafely(tmp_path):
    """Control for the next test: the same payloads do run under a plain pickle.load."""
    marker = str(tmp_path / "pwned")
    for name, payload in _payloads(marker).items():
        if name == "subprocess.Popen":
            continue  # asynchronous; the synchronous ones prove the construction
        pickle.loads(dumps_object(payload))
        assert os.path.exists(marker), name
        os.remove(marker)


@pytest.mark.parametrize("fmt", ["legacy", "zip"])
@pytest.mark.parametrize("payload_name", ["posix.system", "os.system", "builtins.eval",
                                          "builtins.open", "subprocess.Popen"])
def test_malicious_checkpoint_is_refused_and_nothing_runs(tmp_path, fmt, payload_name):
    marker = str(tmp_path / "pwned")
    payload = _payloads(marker)[payload_name]
    path = str(tmp_path / "evil.pth")
    # The payload hides after a genuine tensor, inside the optimizer state.
    SAVERS[fmt]({"state_dict": _small_state_dict(), "optimizer": {"state": {0: payload}}}, path)

    with pytest.raises(UnsafeCheckpointError) as caught:
        read_torch_checkpoint(path)
    message = str(caught.value)
    assert message == (f"refused to load {path}: its pickle references the Python global "
                       f"'{payload_name}', which a checkpoint never needs; only load checkpoints "
                       "you trust")
    assert not os.path.exists(marker)


def test_plain_malicious_pickle_is_refused(tmp_path):
    marker = str(tmp_path / "pwned")
    path = str(tmp_path / "model.pth")
    with open(path, "wb") as file:
        file.write(pickle.dumps(_PlainPayload(marker), protocol=4))  # STACK_GLOBAL opcode
    assert not is_torch_checkpoint(path)
    with pytest.raises(UnsafeCheckpointError, match="posix.system|os.system"):
        read_torch_checkpoint(path)
    assert not os.path.exists(marker)


class _PlainPayload:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch '{self.marker}'",)


def test_rebuild_function_with_forged_arguments_is_corrupt(tmp_path):
    path = str(tmp_path / "forged.pth")
    save_zip({"w": Call(Global("torch._utils", "_rebuild_tensor_v2"),
                        "not a storage", 0, (2,), (1,), False, OrderedDict())}, path)
    with pytest.raises(TorchCheckpointError, match="not a storage"):
        read_torch_checkpoint(path)


def test_tensor_reaching_past_its_storage_is_corrupt(tmp_path):
    path = str(tmp_path / "overrun.pth")
    save_legacy({"w": Tensor(Storage("FloatStorage", np.zeros(4, np.float32)), 2, (3,), (1,))}, path)
    with pytest.raises(TorchCheckpointError, match="reaches element 4"):
        read_torch_checkpoint(path)


# ---------------------------------------------------------------------------------------------
# Broken and foreign files


@pytest.mark.parametrize("fmt", ["legacy", "zip"])
@pytest.mark.parametrize("keep", [0.3, 0.6, 0.95])
def test_truncated_file_names_the_file(tmp_path, fmt, keep):
    full = str(tmp_path / "full.pth")
    SAVERS[fmt]({"state_dict": _small_state_dict(), "epoch": 1}, full)
    with open(full, "rb") as file:
        data = file.read()
    path = str(tmp_path / "cut.pth")
    with open(path, "wb") as file:
        file.write(data[:int(len(data) * keep)])
    with pytest.raises(TorchCheckpointError) as caught:
        read_torch_checkpoint(path)
    assert path in str(caught.value)
    assert not isinstance(caught.value, UnsafeCheckpointError)


def test_legacy_file_cut_inside_the_data_section(tmp_path):
    path = str(tmp_path / "cut.pth")
    save_legacy({"w": tensor(np.arange(100, dtype=np.float64))}, path)
    with open(path, "rb") as file:
        data = file.read()
    with open(path, "wb") as file:
        file.write(data[:-8])
    with pytest.raises(TorchCheckpointError, match=r"truncated.*792 of 800 bytes"):
        read_torch_checkpoint(path)


def test_garbage_paddle_files_and_plain_zips_are_not_checkpoints(tmp_path):
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(np.random.default_rng(0).bytes(4096))
    text = tmp_path / "notes.pth"
    text.write_text("not a checkpoint\n")
    pdparams = str(tmp_path / "model.pdparams")
    paddle.save({"w": paddle.ones([2])}, pdparams)
    plain_zip = str(tmp_path / "images.zip")
    with zipfile.ZipFile(plain_zip, "w") as archive:
        archive.writestr("images/a.txt", "x")

    for path in (str(garbage), str(text), pdparams, plain_zip):
        assert not is_torch_checkpoint(path)
        with pytest.raises(TorchCheckpointError) as caught:
            read_torch_checkpoint(path)
        assert path in str(caught.value)
    assert not is_torch_checkpoint(tmp_path / "missing.pth")
    assert not is_torch_checkpoint(tmp_path)
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        read_torch_checkpoint(tmp_path / "missing.pth")


# ---------------------------------------------------------------------------------------------
# Choosing and converting the weights


def _arrays(*names: str) -> OrderedDict:
    return OrderedDict((name, np.full((2,), index, np.float32)) for index, name in enumerate(names))


def test_extract_state_dict_picks_weights_and_cleans_names():
    plain = _arrays("module.conv.weight", "module.bn.running_var", "module.bn.num_batches_tracked")
    ema = _arrays("conv.weight")
    checkpoint = {"epoch": 4, "state_dict": plain, "state_dict_ema": ema, "model": _arrays("x")}

    assert list(extract_state_dict(checkpoint)) == ["conv.weight", "bn.running_var"]
    assert extract_state_dict(checkpoint)["bn.running_var"][0] == 1
    assert list(extract_state_dict(checkpoint, use_ema=True)) == ["conv.weight"]
    assert list(extract_state_dict({"model": _arrays("module.fc.bias")})) == ["fc.bias"]
    assert list(extract_state_dict(_arrays("fc.weight", "fc.bias"))) == ["fc.weight", "fc.bias"]


def test_extract_state_dict_errors_list_what_is_there():
    with pytest.raises(TorchCheckpointError, match=r"no 'state_dict_ema'.*'epoch', 'state_dict'"):
        extract_state_dict({"epoch": 1, "state_dict": _arrays("a")}, use_ema=True)
    with pytest.raises(TorchCheckpointError, match=r"'epoch' is of type int, not a tensor"):
        extract_state_dict({"epoch": 1, "optimizer": {}})
    with pytest.raises(TorchCheckpointError, match="not a dict"):
        extract_state_dict([np.zeros(2)])


class _TinyNet(paddle.nn.Layer):
    def __init__(self):
        super().__init__()
        self.conv = paddle.nn.Conv2D(2, 3, 1, bias_attr=False)
        self.bn = paddle.nn.BatchNorm2D(3)
        self.classifier = paddle.nn.Linear(3, 4)
        # A 2-D parameter of a non-Linear layer: shaped like a Linear weight, must not be flipped.
        self.mix = self.create_parameter([3, 4])

    def forward(self, x):
        pooled = self.bn(self.conv(x)).mean(axis=[2, 3])
        return self.classifier(pooled) + paddle.matmul(pooled, self.mix)


def test_torch_to_paddle_state_dict_loads_into_a_paddle_model():
    rng = np.random.default_rng(1)
    torch_weights = OrderedDict([
        ("conv.weight", rng.normal(size=(3, 2, 1, 1)).astype(np.float32)),
        ("bn.weight", rng.uniform(0.5, 1.5, 3).astype(np.float32)),
        ("bn.bias", rng.normal(size=3).astype(np.float32)),
        ("bn.running_mean", rng.normal(size=3).astype(np.float32)),
        ("bn.running_var", rng.uniform(0.5, 2, 3).astype(np.float32)),
        ("bn.num_batches_tracked", np.array(3, np.int64)),
        ("classifier.weight", rng.normal(size=(4, 3)).astype(np.float32)),  # torch: [out, in]
        ("classifier.bias", rng.normal(size=4).astype(np.float32)),
        ("mix", rng.normal(size=(3, 4)).astype(np.float32)),
        ("extra.unknown", np.zeros(1, np.float32)),
    ])
    net = _TinyNet()
    converted = torch_to_paddle_state_dict(torch_weights, net)

    assert set(converted) == {"conv.weight", "bn.weight", "bn.bias", "bn._mean", "bn._variance",
                              "classifier.weight", "classifier.bias", "mix", "extra.unknown"}
    assert converted["classifier.weight"].shape == (3, 4)
    assert converted["classifier.weight"].flags.c_contiguous
    assert converted["mix"] is torch_weights["mix"]
    converted.pop("extra.unknown")
    missing, unexpected = net.set_state_dict(converted)
    assert not missing and not unexpected

    x = rng.normal(size=(2, 2, 5, 5)).astype(np.float32)
    net.eval()
    got = net(paddle.to_tensor(x)).numpy()
    w = torch_weights
    conv = np.einsum("oi,nihw->nohw", w["conv.weight"][:, :, 0, 0], x)
    scale = w["bn.weight"] / np.sqrt(w["bn.running_var"] + 1e-5)
    bn = (conv - w["bn.running_mean"][:, None, None]) * scale[:, None, None] \
        + w["bn.bias"][:, None, None]
    pooled = bn.mean(axis=(2, 3))
    expected = pooled @ w["classifier.weight"].T + w["classifier.bias"] + pooled @ w["mix"]
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------------------------------------
# The released-format fixture


def test_released_cream14_checkpoint():
    root = os.environ.get("CREAM_FIXTURES")
    if not root:
        pytest.skip("CREAM_FIXTURES is unset: point it at the shared fixtures folder "
                    "(.ci/run sets ../shared/fixtures) to read cream14/14.pth.tar")
    path = os.path.join(root, "cream14", "14.pth.tar")
    assert is_torch_checkpoint(path)
    checkpoint = read_torch_checkpoint(path)

    assert checkpoint["epoch"] == 591 and checkpoint["version"] == 2
    assert checkpoint["arch"] == "Childnet_Testing"
    for key in ("state_dict", "state_dict_ema"):
        weights = checkpoint[key]
        assert type(weights) is OrderedDict and len(weights) == 186
    plain, ema = checkpoint["state_dict"], checkpoint["state_dict_ema"]
    assert list(plain) == list(ema)
    assert list(plain)[:6] == ["conv_stem.weight", "bn1.weight", "bn1.bias", "bn1.running_mean",
                               "bn1.running_var", "bn1.num_batches_tracked"]
    shapes = {
        "conv_stem.weight": (16, 3, 3, 3), "blocks.0.0.conv_dw.weight": (16, 1, 3, 3),
        "blocks.0.0.se.conv_reduce.weight": (8, 16, 1, 1), "blocks.0.0.conv_pw.weight": (16, 16, 1, 1),
        "blocks.1.0.conv_pw.weight": (64, 16, 1, 1), "blocks.6.0.conv.weight": (320, 192, 1, 1),
        "conv_head.weight": (1280, 320, 1, 1), "classifier.weight": (1000, 1280),
    }
    for name, shape in shapes.items():
        assert plain[name].shape == shape and plain[name].dtype == np.float32, name
        assert ema[name].shape == shape, name
    assert plain["bn1.num_batches_tracked"].dtype == np.int64
    assert not np.array_equal(plain["classifier.weight"], ema["classifier.weight"])

    args = checkpoint["args"]
    assert type(args) is dict and args["NET"]["SELECTION"] == 14
    assert args["DATASET"]["IMAGE_SIZE"] == 64 and args["net"] is args["NET"]
    assert len(checkpoint["optimizer"]["param_groups"]) == 2

    ema_weights = extract_state_dict(checkpoint, use_ema=True)
    assert len(ema_weights) == 186 - sum(name.endswith("num_batches_tracked") for name in ema)
    np.testing.assert_array_equal(ema_weights["conv_head.bias"], ema["conv_head.bias"])
