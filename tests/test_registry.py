from __future__ import annotations

import pytest

from clifvqa_core.errors import ClifVQAError
from clifvqa_core.registry import Registry


def test_lookup_is_case_insensitive_and_misses_list_known_names():
    reg: Registry[int] = Registry("backend")
    reg.add("zarr", 1)
    reg.add("hdf5", 2)
    assert reg["ZARR"] == 1 and "hdf5" in reg and reg.names() == ["hdf5", "zarr"]
    with pytest.raises(KeyError, match="known: hdf5, zarr. Did you mean 'zarr'") as exc:
        reg["zar"]
    # a ClifVQAError too (the CLI's one-line message), shown without KeyError's quotes
    assert isinstance(exc.value, ClifVQAError) and str(exc.value).startswith("unknown backend 'zar'")


def test_double_registration_is_refused():
    reg: Registry[int] = Registry("x")

    @reg.register("a")
    def _a():  # noqa: ANN202
        return 1

    with pytest.raises(ValueError, match="twice"):
        reg.add("A", 2)
