"""README's first commands are what a new user runs: they must stay true to the repository."""
import os
import re
import shlex

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _bash_blocks():
    with open(os.path.join(ROOT, "README.md")) as f:
        return [block.strip() for block in re.findall(r"```bash\n(.*?)```", f.read(), flags=re.S)]


def _steps(command):
    return [shlex.split(step) for step in command.split("&&")]


def _config(path):
    with open(os.path.join(ROOT, path)) as f:
        return yaml.safe_load(f)


def test_ci_runs_exactly_the_readme_test_command():
    demo, pipeline, test_command = _bash_blocks()[:3]
    with open(os.path.join(ROOT, ".ci", "run")) as f:
        ci_lines = [line.strip() for line in f if line.strip() and not line.startswith("#")]
    assert ci_lines[-1] == test_command
    assert "pytest" in test_command


def test_the_demo_command_names_files_that_exist():
    demo_command = _bash_blocks()[0]
    steps = _steps(demo_command)
    assert [step[:2] for step in steps] == [["python", "-m"], ["python", "tools/make_demo_data.py"],
                                            ["python", "tools/main.py"]]
    assert steps[0][-1] == "requirements.txt"
    assert steps[2][2] == "train"
    for path in (steps[0][-1], steps[1][1], steps[2][1], steps[2][3]):
        assert os.path.isfile(os.path.join(ROOT, path)), path
    with open(os.path.join(ROOT, steps[2][3])) as f:
        assert f"DATA_DIR: './{steps[1][2]}'" in f.read()


def test_the_second_command_retrains_and_tests_what_the_demo_found():
    """The second block retrains the best path of the demo's board.json and tests the result, each
    config finding the previous run's files by its defaults."""
    search = _config(_steps(_bash_blocks()[0])[2][3])
    retrain_step, test_step = _steps(_bash_blocks()[1])
    assert retrain_step[:3] == ["python", "tools/main.py", "retrain"] and len(retrain_step) == 4
    assert test_step[:3] == ["python", "tools/main.py", "test"] and len(test_step) == 4
    retrain, test = _config(retrain_step[3]), _config(test_step[3])
    board = os.path.join(search["SAVE_PATH"], search["MODEL"], "board.json")
    assert os.path.normpath(retrain["NET"]["BOARD_JSON"]) == os.path.normpath(board)
    assert os.path.normpath(test["NET"]["BOARD_JSON"]) == os.path.normpath(board)
    assert os.path.normpath(test["RESUME_PATH"]) == os.path.normpath(
        os.path.join(retrain["SAVE_PATH"], retrain["MODEL"], "model_best.pdparams"))
    for config in (retrain, test):
        assert config["DATA_DIR"] == search["DATA_DIR"]
        assert config["DATASET"]["IMAGE_SIZE"] == search["DATASET"]["IMAGE_SIZE"]
