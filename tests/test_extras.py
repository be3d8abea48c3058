"""A missing optional dependency is one line naming the extra."""

from __future__ import annotations

import pytest

from genlab.errors import ExtraMissing
from genlab.extras import require


def test_require_names_the_extra():
    assert require("json", "none").dumps([1]) == "[1]"
    with pytest.raises(ExtraMissing, match=r"pip install 'genlab\[music\]'") as e:
        require("no_such_module_xyz.sub", "music", "rendering audio")
    assert "\n" not in str(e.value) and str(e.value).startswith("rendering audio needs no_such_module_xyz")
