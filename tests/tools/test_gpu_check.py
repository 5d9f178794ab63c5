"""tools/gpu_check.py: on a machine without a GPU it says so and succeeds, running nothing; on one
with a GPU (paddlepaddle-gpu) this test runs the checks and needs them all to pass."""
import json

import paddle
import pytest

HAS_GPU = paddle.is_compiled_with_cuda() and paddle.device.cuda.device_count() > 0


@pytest.mark.skipif(HAS_GPU, reason="this machine has a GPU: test_gpu_checks_pass runs instead")
def test_no_gpu_skips_with_the_reason(load_tool, capsys, tmp_path):
    out = tmp_path / "result.json"
    code = load_tool("gpu_check").main(["--out", str(out)])
    printed = json.loads(capsys.readouterr().out.strip())
    assert code == 0 and set(printed) == {"skipped"} and "no GPU" in printed["skipped"]
    assert json.loads(out.read_text()) == printed


@pytest.mark.e2e
@pytest.mark.skipif(not HAS_GPU, reason="needs a GPU")
def test_gpu_checks_pass(load_tool, capsys):
    code = load_tool("gpu_check").main([])
    result = json.loads(capsys.readouterr().out.strip())
    failed = {name: check for name, check in result["checks"].items() if not check["ok"]}
    assert code == 0 and not failed, failed
