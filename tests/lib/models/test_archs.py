import os

import pytest

from lib.models.archs import CREAM_ARCHS, released_models_table, resolve_arch


def test_released_selections_resolve_with_their_image_size():
    assert sorted(CREAM_ARCHS) == [14, 43, 114, 287, 481, 604]
    arch, size = resolve_arch(43)
    assert arch == [[0], [3], [3, 1], [3, 1], [3, 3, 3], [3, 3], [0]] and size == 96
    arch[1].append(5)  # callers get a copy: the table itself cannot be mutated through it
    assert resolve_arch(43)[0][1] == [3]


def test_explicit_arch_list_is_validated():
    assert resolve_arch([[0], [1], [2], [3], [4], [5], [0]]) == ([[0], [1], [2], [3], [4], [5], [0]], 224)


@pytest.mark.parametrize(
    "bad, fragment",
    [
        (470, "released ones are [14, 43, 114, 287, 481, 604]"),
        ([[0], [3]], "2 stages, expected 7"),
        ([[0], [6], [3], [3], [3], [3], [0]], "stage 1 has choice indices [6]"),
        ([[0], [3], [], [3], [3], [3], [0]], "stage 2 is empty"),
        ([[2], [3], [3], [3], [3], [3], [0]], "first and last stages must be [0]"),
    ],
)
def test_bad_selection_or_arch_names_the_problem(bad, fragment):
    with pytest.raises(ValueError) as err:
        resolve_arch(bad)
    assert fragment in str(err.value)


def test_readme_shows_the_generated_table():
    table = released_models_table()
    assert table.splitlines()[2] == ("| 14 | `cream_14` | 64 | 13.849 | 2.673 | 53.8 | 77.2 | "
                                     "`[[0], [3], [3, 3], [3, 3], [3], [3], [0]]` |")
    readme = os.path.join(os.path.dirname(__file__), "..", "..", "..", "README.md")
    with open(readme, encoding="utf-8") as f:
        assert table in f.read(), "README.md's table of released models is stale: paste released_models_table()"
