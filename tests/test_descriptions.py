"""Description sets: the clif-v1 contents, selection by tag, content hash, JSON round trip, errors."""
from __future__ import annotations

import dataclasses

import pytest

from clifvqa_core.semantic.descriptions import (
    CLIF_V1,
    DESCRIPTION_SETS,
    Description,
    DescriptionSet,
    get_description_set,
)
from clifvqa_core.errors import ConfigError

# Pinned: clif-v1 is data that caches are keyed by. Editing it in place would silently change what an
# existing key means; register a new name/version instead (and only then update a golden like this).
CLIF_V1_HASH = "0e2d905bfd0807d5"


def test_clif_v1_contents():
    ds = DESCRIPTION_SETS["clif-v1"]
    assert ds is CLIF_V1
    assert ds.tags.count("objective") >= 10 and ds.tags.count("subjective") >= 10
    assert ds.r == len(ds.texts) == len(ds.tags) == 32
    # the paper's probe words (sec. 3) are all there
    for word in ("bright", "high-contrast", "noisy", "colorful", "interesting", "exciting", "depressing", "fearful"):
        assert word in ds.texts
    # objective rows come first, so maps rows 0..17 are quality factors
    assert ds.tags == ["objective"] * 18 + ["subjective"] * 14
    assert len(ds.templates) >= 3 and all(t.count("{}") == 1 for t in ds.templates)
    assert ds.prompts(0) == [t.format("bright") for t in ds.templates]
    assert ds.content_hash() == CLIF_V1_HASH


@pytest.mark.parametrize(
    "select, expected",
    [
        ("all", tuple(range(32))),
        ("objective", tuple(range(18))),
        ("subjective", tuple(range(18, 32))),
        ("none", ()),
        ("Objective", tuple(range(18))),
        ("dark, bright", (1, 0)),
    ],
)
def test_indices(select, expected):
    assert CLIF_V1.indices(select) == expected


@pytest.mark.parametrize("select", ["objectives", "glorious", "", "bright,glorious"])
def test_indices_unknown_selection(select):
    with pytest.raises(ConfigError, match="selection"):
        CLIF_V1.indices(select)


def test_subset_keeps_order_and_templates():
    sub = CLIF_V1.subset("subjective")
    assert sub.texts == CLIF_V1.texts[18:]
    assert sub.templates == CLIF_V1.templates
    assert sub.content_hash() != CLIF_V1.content_hash()


@pytest.mark.parametrize(
    "change",
    [
        lambda d: dataclasses.replace(d, name="clif-v1b"),
        lambda d: dataclasses.replace(d, version=2),
        lambda d: dataclasses.replace(d, templates=d.templates[:-1]),
        lambda d: dataclasses.replace(d, descriptions=(Description("very bright", "objective"),) + d.descriptions[1:]),
        lambda d: dataclasses.replace(d, descriptions=(Description("bright", "subjective"),) + d.descriptions[1:]),
        lambda d: dataclasses.replace(d, descriptions=d.descriptions[::-1]),
    ],
)
def test_content_hash_changes_with_content(change):
    assert change(CLIF_V1).content_hash() != CLIF_V1.content_hash()


def test_json_round_trip_and_tamper_check():
    d = CLIF_V1.to_dict()
    assert d["content_hash"] == CLIF_V1_HASH
    assert [x["text"] for x in d["descriptions"]] == CLIF_V1.texts
    back = DescriptionSet.from_dict(d)
    assert back == CLIF_V1 and back.content_hash() == CLIF_V1_HASH
    d["descriptions"][0]["text"] = "luminous"
    with pytest.raises(ConfigError, match="content_hash"):
        DescriptionSet.from_dict(d)
    del d["content_hash"]
    assert DescriptionSet.from_dict(d).texts[0] == "luminous"


def test_unknown_set_lists_known_names():
    with pytest.raises(KeyError, match="clif-v1"):
        DESCRIPTION_SETS["clif-v2"]
    with pytest.raises(ConfigError, match="clif-v1"):
        get_description_set("clif_v1x")


@pytest.mark.parametrize(
    "make",
    [
        lambda: Description("bright", "aesthetic"),
        lambda: Description("", "objective"),
        lambda: DescriptionSet("x", 1, ("a {} photo",), (Description("a", "objective"), Description("a", "subjective"))),
        lambda: DescriptionSet("x", 1, ("no placeholder",), (Description("a", "objective"),)),
        lambda: DescriptionSet("x", 1, (), (Description("a", "objective"),)),
    ],
)
def test_bad_descriptions_rejected(make):
    with pytest.raises(ConfigError):
        make()
