"""Config coercion, durations, CLI parsing and config files."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import pytest

from genlab.config import build, parse_cli_args, parse_duration, read_config_file
from genlab.errors import ConfigError


@dataclass(frozen=True)
class Cfg:
    n: int = 1
    x: float = 0.5
    flag: bool = False
    mode: Literal["a", "b"] = "a"
    widths: tuple[int, ...] = (1, 2)
    pair: tuple[float, float] = (0.9, 0.99)
    maybe: int | None = None
    name: str = "z"


def test_coercion_from_strings():
    c = build(Cfg, {"n": "3", "x": "1e-3", "flag": "yes", "mode": "b", "widths": "8,16,32", "pair": "0.5,0.9",
                    "maybe": "none", "name": "q"})
    assert c == Cfg(3, 1e-3, True, "b", (8, 16, 32), (0.5, 0.9), None, "q")
    assert build(Cfg, {"widths": [4, 5], "maybe": 7}).widths == (4, 5)


@pytest.mark.parametrize("key,val,msg", [("n", "1.5", "--n"), ("n", "x", "expected int"),
                                         ("mode", "c", "one of a, b"), ("pair", "1", "2 comma-separated"),
                                         ("flag", "maybe", "--flag"), ("nope", 1, "unknown option --nope")])
def test_bad_values(key, val, msg):
    with pytest.raises(ConfigError, match=msg):
        build(Cfg, {key: val})


def test_parse_cli_args():
    got = parse_cli_args(["--n", "2", "--flag", "--mode=b", "--no-flag", "--widths", "3,4"], [Cfg])
    assert got == {"n": "2", "flag": False, "mode": "b", "widths": "3,4"}
    with pytest.raises(ConfigError, match="needs a value"):
        parse_cli_args(["--n"], [Cfg])
    with pytest.raises(ConfigError, match="unexpected argument"):
        parse_cli_args(["stray"], [Cfg])


@pytest.mark.parametrize("text,sec", [("90", 90), ("90s", 90), ("2m", 120), ("1h30m", 5400), ("1.5m", 90)])
def test_durations(text, sec):
    assert parse_duration(text) == sec


def test_bad_duration():
    with pytest.raises(ConfigError, match="duration"):
        parse_duration("soon")


def test_config_files(tmp_path):
    (tmp_path / "a.toml").write_text("n = 2\n[model]\nwidths = [1, 2]\n")
    assert read_config_file(tmp_path / "a.toml") == {"n": 2, "widths": [1, 2]}
    (tmp_path / "b.yml").write_text("- not a mapping\n")
    with pytest.raises(ConfigError, match="mapping"):
        read_config_file(tmp_path / "b.yml")
    (tmp_path / "c.toml").write_text("n = = 2\n")
    with pytest.raises(ConfigError, match="cannot parse"):
        read_config_file(tmp_path / "c.toml")
    with pytest.raises(ConfigError, match="does not exist"):
        read_config_file(tmp_path / "missing.toml")
