"""Genotypes: the published cells, validation, JSON files and name resolution."""
import json

import pytest

from lib.darts import (DARTS_V1, DARTS_V2, PDARTS, PRIMITIVES, Genotype, GenotypeError, genotype_from_dict,
                       genotype_to_dict, load_genotypes, resolve_genotype, save_genotypes, validate_genotype)


def test_primitives_in_the_official_order():
    assert PRIMITIVES == ("none", "max_pool_3x3", "avg_pool_3x3", "skip_connect", "sep_conv_3x3",
                          "sep_conv_5x5", "dil_conv_3x3", "dil_conv_5x5")


def test_published_genotypes_hold_the_official_values():
    assert PDARTS.normal == (("skip_connect", 0), ("dil_conv_3x3", 1), ("skip_connect", 0), ("sep_conv_3x3", 1),
                             ("sep_conv_3x3", 1), ("sep_conv_3x3", 3), ("sep_conv_3x3", 0), ("dil_conv_5x5", 4))
    assert PDARTS.reduce == (("avg_pool_3x3", 0), ("sep_conv_5x5", 1), ("sep_conv_3x3", 0), ("dil_conv_5x5", 2),
                             ("max_pool_3x3", 0), ("dil_conv_3x3", 1), ("dil_conv_3x3", 1), ("dil_conv_5x5", 3))
    # DARTS lists node 0's pairs input 1 first: the order is kept (checkpoints index ops by position)
    assert DARTS_V1.normal[:2] == (("sep_conv_3x3", 1), ("sep_conv_3x3", 0))
    assert DARTS_V2.normal[6:] == (("skip_connect", 0), ("dil_conv_3x3", 2))
    assert DARTS_V2.reduce[6:] == (("skip_connect", 2), ("max_pool_3x3", 1))
    for genotype in (PDARTS, DARTS_V1, DARTS_V2):
        assert genotype.normal_concat == genotype.reduce_concat == (2, 3, 4, 5)
        assert validate_genotype(genotype) == genotype


def test_json_round_trip_through_a_file(tmp_path):
    path = tmp_path / "genotypes.json"
    save_genotypes(str(path), {"recommended": PDARTS, "max_skip_8": DARTS_V2})
    data = json.loads(path.read_text())
    assert data["recommended"]["normal"][0] == ["skip_connect", 0]
    assert data["recommended"]["normal_concat"] == [2, 3, 4, 5]
    assert load_genotypes(str(path)) == {"recommended": PDARTS, "max_skip_8": DARTS_V2}
    assert genotype_from_dict(genotype_to_dict(DARTS_V1)) == DARTS_V1
    # the official PDARTS uses range(2, 6) for the concat; accepted and normalised
    assert validate_genotype(Genotype(list(PDARTS.normal), range(2, 6), list(PDARTS.reduce), range(2, 6))) == PDARTS


def _with(field, value):
    data = genotype_to_dict(PDARTS)
    data[field] = value
    return data


@pytest.mark.parametrize("field, value, message", [
    ("normal", [["conv_9x9", 0], ["skip_connect", 1]], r"normal\[0\] has unknown operation 'conv_9x9'"),
    ("normal", [["skip_connect", 0], ["skip_connect", 1], ["sep_conv_3x3", 3], ["skip_connect", 0]],
     r"normal\[2\] \(node 1\) takes input 3, but node 1 can only take 0..2"),
    ("reduce", [["skip_connect", -1], ["skip_connect", 1]], r"reduce\[0\] \(node 0\) takes input -1"),
    ("reduce", [["skip_connect", True], ["skip_connect", 1]], r"takes input True"),
    ("normal", [["skip_connect", 0]], "two per node"),
    ("normal", [["skip_connect", 0, 1], ["skip_connect", 1]], r"normal\[0\] must be an \[operation, input\] pair"),
    ("normal_concat", [2, 3, 9], "normal_concat must be a non-empty list of state indices in 0..5"),
    ("reduce_concat", [], "reduce_concat"),
])
def test_invalid_genotypes_are_refused_with_the_place(field, value, message):
    with pytest.raises(GenotypeError, match=message):
        genotype_from_dict(_with(field, value), "cell.json: mine")


def test_dict_keys_must_be_exactly_the_fields():
    data = genotype_to_dict(PDARTS)
    del data["reduce_concat"]
    data["extra"] = 1
    with pytest.raises(GenotypeError, match="missing reduce_concat; unknown extra"):
        genotype_from_dict(data)
    with pytest.raises(GenotypeError, match="JSON object"):
        genotype_from_dict([["skip_connect", 0]])


def test_files_are_data_never_code(tmp_path):
    path = tmp_path / "evil.json"
    evil = _with("normal", [["__import__('os').system('touch pwned')", 0], ["skip_connect", 1]])
    path.write_text(json.dumps({"x": evil}))
    with pytest.raises(GenotypeError, match=r"evil.json: x.normal\[0\] has unknown operation"):
        load_genotypes(str(path))
    # a Python repr of a genotype (what the official code logs) is not JSON and is refused
    (tmp_path / "repr.json").write_text(repr(PDARTS))
    with pytest.raises(GenotypeError, match="cannot read genotype file .*repr.json.*must be JSON"):
        load_genotypes(str(tmp_path / "repr.json"))
    (tmp_path / "list.json").write_text("[]")
    with pytest.raises(GenotypeError, match="non-empty JSON object"):
        load_genotypes(str(tmp_path / "list.json"))
    assert not (tmp_path / "pwned").exists()


def test_resolve_by_name_file_and_entry(tmp_path):
    assert resolve_genotype("DARTS_V2") == DARTS_V2
    single = tmp_path / "one.json"
    save_genotypes(str(single), {"whatever": DARTS_V1})
    assert resolve_genotype(str(single)) == DARTS_V1
    several = tmp_path / "genotypes.json"
    save_genotypes(str(several), {"recommended": PDARTS, "max_skip_8": DARTS_V2})
    assert resolve_genotype(str(several)) == PDARTS
    assert resolve_genotype(f"{several}:max_skip_8") == DARTS_V2
    with pytest.raises(GenotypeError, match=r"has no entry 'max_skip_3'; it has recommended, max_skip_8"):
        resolve_genotype(f"{several}:max_skip_3")
    with pytest.raises(GenotypeError, match="not found.*published genotype name .*PDARTS"):
        resolve_genotype("PDART")
