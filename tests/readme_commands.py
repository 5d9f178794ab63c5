"""README's shell commands as argument lists, for the tests that check or run them.

Blocks are found by what they run, not by their position, so README can be rearranged.
"""
import os
import re
import shlex
from typing import List

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def bash_blocks() -> List[str]:
    """README's ```bash blocks, stripped, in order."""
    with open(os.path.join(ROOT, "README.md")) as f:
        return [block.strip() for block in re.findall(r"```bash\n(.*?)```", f.read(), flags=re.S)]


def block_running(*needles: str) -> str:
    """The first bash block of README that holds every one of ``needles``."""
    for block in bash_blocks():
        if all(needle in block for needle in needles):
            return block
    raise AssertionError(f"README has no bash block with {needles}")


def steps(block: str) -> List[List[str]]:
    """The commands of a block as argument lists: continued lines joined, comments dropped, split
    at '&&'; environment assignments in front of a command (``CUDA_VISIBLE_DEVICES=0 python ...``)
    removed."""
    commands = []
    for line in block.replace("\\\n", " ").splitlines():
        for part in line.split("&&"):
            argv = shlex.split(part, comments=True)
            while argv and re.fullmatch(r"[A-Z_]+=\S*", argv[0]):
                argv = argv[1:]
            if argv:
                commands.append(argv)
    return commands


def is_synopsis(step: List[str]) -> bool:
    """A usage line such as ``python tools/main.py {train,retrain,test} CONFIG [KEY VALUE ...]``, or
    a command with a placeholder for the reader to fill in (``"<best.arch of evolution.json>"``)."""
    return any(re.fullmatch(r"\{[\w,]+\}|\[[A-Z-].*|<.+>", token) for token in step)


def tool_steps() -> List[List[str]]:
    """Every ``python tools/<tool>.py ...`` command of README's bash blocks, except usage lines and
    commands with placeholders."""
    return [step for block in bash_blocks() for step in steps(block)
            if step[:1] == ["python"] and step[1:2] and step[1].startswith("tools/") and not is_synopsis(step)]


def first_commands() -> List[List[str]]:
    """The commands of README's blocks before the test command: what a new user runs first."""
    blocks = bash_blocks()
    return [step for block in blocks[:blocks.index(block_running("python -m pytest"))] for step in steps(block)]
