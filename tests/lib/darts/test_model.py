"""The evaluation networks: the official sizes, FLOPs, logits and checkpoints, and the forward contract."""
import numpy as np
import paddle
import pytest

from lib.darts import DARTS_V2, PDARTS, Genotype, NetworkCIFAR, NetworkImageNet
from lib.darts.model import Cell
from lib.darts.operations import OPS
from pimm.models import CheckpointMismatchError, load_checkpoint
from pimm.utils.profile import PTFLOPS_RULES, profile
from tests.lib.darts.reference import fill_deterministic, reference_input
from tests.pimm.models.paddle_to_torch import torch_state_dict
from tests.pimm.models.torchfile_writer import save_legacy, save_zip


def _paper_parameters(model):
    """Trainable parameters without the auxiliary head, as the paper counts."""
    return sum(int(np.prod(p.shape)) for name, p in model.named_parameters()
               if not p.stop_gradient and not name.startswith("auxiliary_head."))


def test_cifar_network_has_the_papers_size():
    assert _paper_parameters(NetworkCIFAR(36, 10, 20, True, PDARTS)) == 3_433_798


def test_imagenet_network_has_the_papers_size_and_multiply_adds():
    model = NetworkImageNet(48, 1000, 14, True, PDARTS)
    assert _paper_parameters(model) == 4_944_352
    macs, _ = profile(model, (1, 3, 224, 224), custom_ops=PTFLOPS_RULES)
    # ptflops 0.7.5 on the official network: 557,383,912, the same plus the classifier's 1,000
    # bias additions, which PTFLOPS_RULES (ptflops 0.6, thop's Linear rule) leave out. Paper: 557M.
    assert macs == 557_382_912


def _small(cls, genotype=PDARTS):
    C, size = (4, 32) if cls is NetworkCIFAR else (8, 224)
    with paddle.utils.unique_name.guard():
        model = cls(C, 10, 5, True, genotype)
    return model, reference_input((2, 3, size, size))


@pytest.mark.parametrize("cls, genotype, key", [
    (NetworkCIFAR, PDARTS, "NetworkCIFAR_PDARTS"),
    (NetworkCIFAR, DARTS_V2, "NetworkCIFAR_DARTS_V2"),
    (NetworkImageNet, PDARTS, "NetworkImageNet_PDARTS"),
])
def test_logits_equal_the_official_networks(reference, cls, genotype, key):
    model, x = _small(cls, genotype)
    fill_deterministic(model)
    model.eval()
    logits = model(paddle.to_tensor(x))
    np.testing.assert_allclose(logits.numpy(), reference[f"{key}_eval"], rtol=1e-4, atol=1e-5)
    model.train()  # batch statistics, auxiliary head on
    logits, logits_aux = model(paddle.to_tensor(x))
    np.testing.assert_allclose(logits.numpy(), reference[f"{key}_train"], rtol=1e-4, atol=1e-5)
    # the auxiliary head normalises 2 samples at 1x1: float32 noise is amplified (the official
    # network itself differs by ~2e-5 between CPU runs of different libraries)
    np.testing.assert_allclose(logits_aux.numpy(), reference[f"{key}_train_aux"], rtol=1e-3, atol=2e-4)


def test_official_checkpoints_load_strictly(reference, tmp_path):
    # train_cifar.py saves a bare state dict (utils.save(model.module)); torch <= 1.5 wrote the
    # legacy format, which the released P-DARTS models use
    source, x = _small(NetworkCIFAR)
    fill_deterministic(source)
    save_legacy(torch_state_dict(source), str(tmp_path / "weights.pt"))
    target, _ = _small(NetworkCIFAR)
    assert load_checkpoint(target, str(tmp_path / "weights.pt"), strict=True) == ([], [])
    target.eval()
    np.testing.assert_allclose(target(paddle.to_tensor(x)).numpy(), reference["NetworkCIFAR_PDARTS_eval"],
                               rtol=1e-4, atol=1e-5)

    # train_imagenet.py: {'epoch', 'state_dict' of the DataParallel model, 'best_acc_top1', 'optimizer'}
    source, x = _small(NetworkImageNet)
    fill_deterministic(source)
    state = torch_state_dict(source, prefix="module.")
    optimizer = {"state": {0: {"momentum_buffer": state["module.stem0.0.weight"]}},
                 "param_groups": [{"lr": 0.1, "momentum": 0.9, "dampening": 0, "weight_decay": 3e-5,
                                   "nesterov": False, "params": list(range(len(state)))}]}
    path = str(tmp_path / "checkpoint.pth.tar")
    save_zip({"epoch": 250, "state_dict": state, "best_acc_top1": 75.6, "optimizer": optimizer}, path)
    target, _ = _small(NetworkImageNet)
    assert load_checkpoint(target, path, strict=True) == ([], [])
    target.eval()
    np.testing.assert_allclose(target(paddle.to_tensor(x)).numpy(), reference["NetworkImageNet_PDARTS_eval"],
                               rtol=1e-4, atol=1e-5)

    other, _ = _small(NetworkImageNet, DARTS_V2)
    with pytest.raises(CheckpointMismatchError, match="does not fit NetworkImageNet"):
        load_checkpoint(other, path, strict=True)


def test_forward_contract_and_drop_path_prob():
    model, x = _small(NetworkCIFAR)
    x = paddle.to_tensor(x)
    assert model.drop_path_prob == 0.0
    model.train()
    logits, logits_aux = model(x)
    assert logits.shape == logits_aux.shape == [2, 10]
    model.eval()
    assert isinstance(model(x), paddle.Tensor) and model(x).shape == [2, 10]
    with paddle.utils.unique_name.guard():
        plain = NetworkCIFAR(4, 10, 5, False, PDARTS)
    assert not any(name.startswith("auxiliary_head") for name in plain.state_dict())
    plain.train()
    assert isinstance(plain(x), paddle.Tensor)


def _cell(genotype):
    paddle.seed(0)
    cell = Cell(genotype, 8, 8, 8, reduction=False, reduction_prev=False)
    cell.train()
    return cell


def test_drop_path_zeroes_whole_samples_of_non_identity_ops_only():
    s0, s1 = paddle.randn([64, 8, 4, 4]), paddle.randn([64, 8, 4, 4])
    # identity edges only (node 0 adds both inputs, later nodes double the previous ones): never dropped
    skips = Genotype((("skip_connect", 0), ("skip_connect", 1), ("skip_connect", 2), ("skip_connect", 2)),
                     (2, 3), (("skip_connect", 0), ("skip_connect", 1)), (2,))
    cell = _cell(skips)
    np.testing.assert_allclose(cell(s0, s1, 0.9).numpy(), cell(s0, s1, 0.0).numpy(), rtol=1e-6)
    # one conv edge into node 0: each sample's conv output is either dropped or scaled by 1 / keep
    conv = Genotype((("sep_conv_3x3", 0), ("skip_connect", 1)), (2,), (("skip_connect", 0), ("skip_connect", 1)),
                    (2,))
    cell = _cell(conv)
    full = cell(s0, s1, 0.0).numpy()
    paddle.seed(3)
    dropped = cell(s0, s1, 0.5).numpy()
    identity = cell.preprocess1(s1).numpy()
    conv_part, kept_part = full - identity, dropped - identity
    per_sample = [np.allclose(kept_part[i], 0, atol=1e-6) or np.allclose(kept_part[i], 2 * conv_part[i], atol=1e-5)
                  for i in range(64)]
    assert all(per_sample)
    zeroed = sum(np.allclose(kept_part[i], 0, atol=1e-6) for i in range(64))
    assert 16 <= zeroed <= 48  # about half (p = 0.5) on a real random draw, CPU included
    cell.eval()
    np.testing.assert_allclose(cell(s0, s1, 0.5).numpy(), cell(s0, s1, 0.0).numpy())


def test_average_pooling_excludes_padding_and_zero_keeps_shapes():
    ones = paddle.ones([1, 2, 5, 5])
    np.testing.assert_array_equal(OPS["avg_pool_3x3"](2, 1, True)(ones).numpy(), np.ones([1, 2, 5, 5]))
    assert OPS["avg_pool_3x3"](2, 2, True)(ones).shape == [1, 2, 3, 3]
    zeros = OPS["none"](2, 2, True)(ones)
    assert zeros.shape == [1, 2, 3, 3] and not zeros.numpy().any()
