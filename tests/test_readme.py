"""README's commands are what a new user runs: they must stay true to the repository.

Every ``python tools/<tool>.py`` command of a ```bash block must name a tool that exists and accepts its
arguments (configs that exist, overrides that are config keys). tests/tools/test_demo.py runs the
demo pipeline's commands themselves.
"""
import os

import pytest
import yaml

from lib.config import ConfigError, load_config
from lib.engine import engine_for
from tests.readme_commands import ROOT, block_running, first_commands, is_synopsis, steps, tool_steps

def _config(path: str) -> dict:
    with open(os.path.join(ROOT, path)) as f:
        return yaml.safe_load(f)


def _run_folder(config: dict) -> str:
    return os.path.normpath(os.path.join(config["SAVE_PATH"], config["MODEL"]))


def test_ci_runs_exactly_the_readme_test_command():
    test_command = block_running("python -m pytest")
    with open(os.path.join(ROOT, ".ci", "run")) as f:
        ci_lines = [line.strip() for line in f if line.strip() and not line.startswith("#")]
    assert ci_lines[-1] == test_command


def test_the_first_commands_are_the_demo_pipeline():
    """Before the test command, README's first blocks install, make the demo data, search, retrain
    the best path and test it, in this order."""
    commands = first_commands()
    assert [step[:3] for step in commands] == [
        ["python", "-m", "pip"], ["python", "tools/make_demo_data.py", "data/demo"],
        ["python", "tools/main.py", "train"], ["python", "tools/main.py", "retrain"],
        ["python", "tools/main.py", "test"]]
    assert commands[0][3:] == ["install", "-q", "-r", "requirements.txt", "matplotlib"]  # matplotlib: the plots
    assert [step[3] for step in commands[2:]] == ["experiments/configs/train/demo.yaml",
                                                  "experiments/configs/retrain/demo.yaml",
                                                  "experiments/configs/test/demo.yaml"]
    assert all(len(step) == 4 for step in commands[2:])  # the configs as shipped, no overrides


def test_every_tool_command_takes_its_arguments(load_tool):
    commands = tool_steps()
    assert {step[1] for step in commands} >= {"tools/main.py", "tools/make_demo_data.py", "tools/plot.py"}
    tools = {}
    for step in commands:
        assert os.path.isfile(os.path.join(ROOT, step[1])), step
        name = os.path.splitext(os.path.basename(step[1]))[0]
        tool = tools.get(name) or tools.setdefault(name, load_tool(name))
        try:
            args = tool.parse_args(step[2:])
        except SystemExit:
            pytest.fail(f"README's {' '.join(step)!r}: {step[1]} refuses these arguments")
        if name == "main":
            try:
                cfg = load_config(os.path.join(ROOT, args.cfg), args.overrides)
            except ConfigError as e:
                pytest.fail(f"README's {' '.join(step)!r}: {e}")
            engine_for(args.mode, str(cfg.METHOD))


def test_the_demo_commands_find_each_others_files():
    """The search reads the folder the data command writes, retrain and test read the search's
    board.json and the retrain's best checkpoint, and plot.py draws a run folder of the demo."""
    data_step, search_step, retrain_step, test_step = first_commands()[1:]
    search, retrain, test = (_config(step[3]) for step in (search_step, retrain_step, test_step))
    assert os.path.normpath(search["DATA_DIR"]) == os.path.normpath(data_step[2])
    board = os.path.join(_run_folder(search), "board.json")
    assert os.path.normpath(retrain["NET"]["BOARD_JSON"]) == board
    assert os.path.normpath(test["NET"]["BOARD_JSON"]) == board
    assert os.path.normpath(test["RESUME_PATH"]) == os.path.join(_run_folder(retrain), "model_best.pdparams")
    for config in (retrain, test):
        assert config["DATA_DIR"] == search["DATA_DIR"]
        assert config["DATASET"]["IMAGE_SIZE"] == search["DATASET"]["IMAGE_SIZE"]
    plotted = {os.path.normpath(step[2]) for step in tool_steps() if step[1] == "tools/plot.py"}
    assert plotted and plotted <= {_run_folder(search), _run_folder(retrain)}


def test_step_parsing():
    block = ("A=1 python tools/main.py train x.yaml MODEL m \\\n    KEY v  # comment\n"
             "python a.py && python b.py 'c d'")
    parsed = steps(block)
    assert parsed == [["python", "tools/main.py", "train", "x.yaml", "MODEL", "m", "KEY", "v"],
                      ["python", "a.py"], ["python", "b.py", "c d"]]
    assert not is_synopsis(parsed[0]) and not is_synopsis(["python", "x.py", "[[0],[3]]"])
    assert is_synopsis(["python", "tools/main.py", "{train,test}", "CONFIG", "[KEY", "VALUE", "...]"])
    assert is_synopsis(["python", "tools/main.py", "retrain", "x.yaml", "NET.INPUT_ARCH", "<best.arch of a.json>"])
