"""README's first two commands are what a new user runs: they must stay true to the repository."""
import os
import re
import shlex

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _bash_blocks():
    with open(os.path.join(ROOT, "README.md")) as f:
        return re.findall(r"```bash\n(.*?)```", f.read(), flags=re.S)


def test_ci_runs_exactly_the_readme_test_command():
    test_command = _bash_blocks()[1].strip()
    with open(os.path.join(ROOT, ".ci", "run")) as f:
        ci_lines = [line.strip() for line in f if line.strip() and not line.startswith("#")]
    assert ci_lines[-1] == test_command
    assert "pytest" in test_command


def test_the_demo_command_names_files_that_exist():
    demo_command = _bash_blocks()[0].strip()
    steps = [shlex.split(step) for step in demo_command.split("&&")]
    assert [step[:2] for step in steps] == [["python", "-m"], ["python", "tools/make_demo_data.py"],
                                            ["python", "tools/main.py"]]
    assert steps[0][-1] == "requirements.txt"
    assert steps[2][2] == "train"
    for path in (steps[0][-1], steps[1][1], steps[2][1], steps[2][3]):
        assert os.path.isfile(os.path.join(ROOT, path)), path
    with open(os.path.join(ROOT, steps[2][3])) as f:
        assert f"DATA_DIR: './{steps[1][2]}'" in f.read()
