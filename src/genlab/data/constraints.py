"""Row constraints (``price >= 300``, ``x > 0 and y > 0``) and value conditions (``cut=Ideal,color=E``) on tables.

A constraint is a Python-like boolean expression over column names, parsed once into a small syntax tree that only
allows comparisons, ``and``/``or``/``not``, arithmetic (``+ - * / %``, unary minus), ``abs()``, column names and
number or string literals, and evaluated vectorised on a DataFrame. No ``eval``: anything else is refused.
"""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from genlab.errors import ConfigError, DataError

if TYPE_CHECKING:
    import pandas as pd

    from genlab.data.tables import ColumnInfo

_CMP: dict[type, Callable[[Any, Any], Any]] = {ast.Gt: operator.gt, ast.GtE: operator.ge, ast.Lt: operator.lt,
                                                ast.LtE: operator.le, ast.Eq: operator.eq, ast.NotEq: operator.ne}
_BIN: dict[type, Callable[[Any, Any], Any]] = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
                                                ast.Div: operator.truediv, ast.Mod: operator.mod}


_ALLOWED: tuple[type, ...] = (ast.Compare, ast.BoolOp, ast.BinOp, ast.UnaryOp, ast.Constant, ast.Load, ast.And,
                               ast.Or, ast.Not, ast.USub, ast.UAdd, *_CMP, *_BIN)


@dataclass(frozen=True)
class Constraint:
    """A parsed row constraint.

    Arguments:
        text: the expression as written.
        tree: its syntax tree.
        columns: the column names it uses.
    """

    text: str
    tree: ast.expr
    columns: tuple[str, ...]

    @classmethod
    def parse(cls, text: str, names: Sequence[str]) -> Constraint:
        """Parse ``text`` against the table's column names.

        Raises:
            ConfigError: for a syntax error, a disallowed construct or an unknown column.
        """
        try:
            tree = ast.parse(text.strip(), mode="eval").body
        except SyntaxError:
            raise ConfigError(f"cannot read --constraint {text!r}; write e.g. \"price >= 300\" or "
                              "\"x > 0 and y > 0\"") from None
        used: list[str] = []
        called = {id(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Name) and id(node) in called:
                continue  # a function name (only abs is allowed, checked at its call)
            if isinstance(node, ast.Name):
                if node.id not in names:
                    raise ConfigError(f"--constraint {text!r} names no column {node.id!r}; columns: "
                                      f"{', '.join(names)}")
                used.append(node.id)
            elif isinstance(node, ast.Call):
                if not (isinstance(node.func, ast.Name) and node.func.id == "abs" and len(node.args) == 1):
                    raise ConfigError(f"--constraint {text!r}: only abs(...) may be called")
            elif not isinstance(node, _ALLOWED):
                raise ConfigError(f"--constraint {text!r} uses {type(node).__name__}, which constraints do not allow")
        if not isinstance(tree, ast.Compare | ast.BoolOp) and not (isinstance(tree, ast.UnaryOp)
                                                                    and isinstance(tree.op, ast.Not)):
            raise ConfigError(f"--constraint {text!r} is not a comparison; write e.g. \"price >= 300\"")
        return cls(text, tree, tuple(dict.fromkeys(used)))

    def holds(self, df: pd.DataFrame) -> np.ndarray:
        """Boolean ``(N,)``: rows that satisfy the constraint (a comparison with a missing value is False)."""
        out = _eval(self.tree, df)
        arr = np.asarray(out, dtype=object) if not isinstance(out, np.ndarray) else out
        if arr.ndim == 0:
            return np.full(len(df), bool(arr))
        return np.asarray([bool(v) if v is not None and v is not np.nan else False for v in arr]) \
            if arr.dtype == object else arr.astype(bool)


def _values(s: pd.Series) -> np.ndarray:
    import pandas as pd

    if pd.api.types.is_numeric_dtype(s.dtype) and not pd.api.types.is_bool_dtype(s.dtype):
        return s.to_numpy(dtype=np.float64, na_value=np.nan)
    if pd.api.types.is_datetime64_any_dtype(s.dtype):
        return ((s - pd.Timestamp(0)) / pd.Timedelta(seconds=1)).to_numpy(dtype=np.float64, na_value=np.nan)
    return s.astype(object).where(s.notna(), None).to_numpy(dtype=object)


def _eval(node: ast.expr, df: pd.DataFrame) -> Any:
    if isinstance(node, ast.Name):
        return _values(df[node.id])
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.UnaryOp):
        v = _eval(node.operand, df)
        if isinstance(node.op, ast.Not):
            return ~np.asarray(v, dtype=bool)
        return -v if isinstance(node.op, ast.USub) else v
    if isinstance(node, ast.BinOp):
        with np.errstate(all="ignore"):
            return _BIN[type(node.op)](_eval(node.left, df), _eval(node.right, df))
    if isinstance(node, ast.Call):
        return np.abs(_eval(node.args[0], df))
    if isinstance(node, ast.BoolOp):
        parts = [np.asarray(_truth(_eval(v, df)), dtype=bool) for v in node.values]
        out = parts[0]
        for p in parts[1:]:
            out = (out & p) if isinstance(node.op, ast.And) else (out | p)
        return out
    if isinstance(node, ast.Compare):
        left = _eval(node.left, df)
        result: Any = True
        for op, right_node in zip(node.ops, node.comparators, strict=True):
            right = _eval(right_node, df)
            result = result & _compare(_CMP[type(op)], left, right)
            left = right
        return result
    raise ConfigError(f"unsupported expression {ast.dump(node)}")  # parse() refuses these first


def _truth(v: Any) -> Any:
    arr = np.asarray(v)
    if arr.dtype == object:
        return np.asarray([bool(x) if x is not None else False for x in arr.reshape(-1)]).reshape(arr.shape)
    return arr.astype(bool)


def _compare(fn: Callable[[Any, Any], Any], a: Any, b: Any) -> np.ndarray:
    """Elementwise comparison; any missing side (NaN/None) is False; mismatched types compare unequal."""
    a_arr, b_arr = np.asarray(a, dtype=object if _is_obj(a) else None), np.asarray(b, dtype=object if _is_obj(b)
                                                                                  else None)
    if a_arr.dtype != object and b_arr.dtype != object:
        with np.errstate(invalid="ignore"):
            res = fn(a_arr.astype(np.float64), b_arr.astype(np.float64))
        return np.asarray(res, dtype=bool) & ~np.isnan(a_arr.astype(np.float64)) & ~np.isnan(b_arr.astype(np.float64))
    a_b, b_b = np.broadcast_arrays(a_arr.astype(object), b_arr.astype(object))
    out = np.zeros(a_b.shape, dtype=bool)
    for i, (x, y) in enumerate(zip(a_b.reshape(-1), b_b.reshape(-1), strict=True)):
        if x is None or y is None or (isinstance(x, float) and math.isnan(x)) or (isinstance(y, float) and
                                                                                  math.isnan(y)):
            continue
        try:
            out.reshape(-1)[i] = bool(fn(x, y))
        except TypeError:
            out.reshape(-1)[i] = fn is operator.ne
    return out


def _is_obj(v: Any) -> bool:
    if isinstance(v, str):
        return True
    return isinstance(v, np.ndarray) and v.dtype == object


def check_training_data(constraints: Sequence[Constraint], df: pd.DataFrame, source: str) -> None:
    """Refuse constraints the real data already violates (a model of the data cannot meet them honestly).

    Raises:
        DataError: naming the constraint, how many rows break it and the first such row.
    """
    for c in constraints:
        ok = c.holds(df)
        if not ok.all():
            first = int(np.flatnonzero(~ok)[0])
            shown = ", ".join(f"{k}={df[k].iloc[first]!r}" for k in c.columns)
            raise DataError(f"--constraint {c.text!r} is violated by {int((~ok).sum()):,} of {len(df):,} rows of "
                            f"{source} (row {first}: {shown}); fix the data or the constraint")


# -- conditions ------------------------------------------------------------------------------------------

def parse_condition(text: str, columns: Sequence[ColumnInfo]) -> dict[str, Any]:
    """``"cut=Ideal,color=E"`` → ``{"cut": "Ideal", "color": "E"}`` with values typed as the columns are.

    A categorical value must be one of the column's training categories (``NA`` asks for a missing value where
    the column has any); a number must lie in the training range.

    Raises:
        ConfigError: for a malformed condition, an unknown column or a value the column cannot take.
    """
    by = {c.name: c for c in columns}
    out: dict[str, Any] = {}
    parts = [p for p in (q.strip() for q in text.split(",")) if p]
    if not parts:
        raise ConfigError("--condition is empty; write e.g. \"cut=Ideal,color=E\"")
    for part in parts:
        name, eq, raw = part.partition("=")
        name, raw = name.strip(), raw.strip()
        if not eq or not name:
            raise ConfigError(f"cannot read --condition part {part!r}; write column=value, e.g. \"cut=Ideal\"")
        if name not in by:
            raise ConfigError(f"--condition names no column {name!r}; columns: {', '.join(by)}")
        c = by[name]
        if raw.upper() in ("NA", "NAN", "NONE", "NULL"):
            if not c.has_missing:
                raise ConfigError(f"--condition {name}={raw}: {name} has no missing values in the training data, so "
                                  "no sample can have one")
            out[name] = None
            continue
        if c.kind in ("categorical", "boolean"):
            match = [v for v in c.categories if str(v) == raw or (c.kind == "boolean" and str(v).lower() ==
                                                                   raw.lower())]
            if not match:
                shown = ", ".join(map(str, c.categories[:20])) + (", …" if len(c.categories) > 20 else "")
                raise ConfigError(f"--condition {name}={raw}: {raw!r} is not a value of {name} (values: {shown})")
            out[name] = match[0]
        else:
            if c.kind == "datetime":
                import pandas as pd

                try:
                    v = float((pd.Timestamp(raw) - pd.Timestamp(0)) / pd.Timedelta(seconds=1))
                except ValueError:
                    raise ConfigError(f"--condition {name}={raw}: not a date/time") from None
            else:
                try:
                    v = float(raw)
                except ValueError:
                    raise ConfigError(f"--condition {name}={raw}: {name} is a number column") from None
            if not c.lo <= v <= c.hi:
                raise ConfigError(f"--condition {name}={raw} is outside the training range of {name} "
                                  f"[{c.lo:g}, {c.hi:g}]; no sample can have it")
            if c.kind == "integer" and v != round(v):
                raise ConfigError(f"--condition {name}={raw}: {name} holds integers")
            out[name] = v
    return out


def condition_holds(df: pd.DataFrame, condition: dict[str, Any], tolerance: dict[str, float]) -> np.ndarray:
    """Rows of ``df`` meeting every ``column = value`` (numbers within ``tolerance[column]``; None = missing)."""
    ok = np.ones(len(df), dtype=bool)
    for name, value in condition.items():
        s = df[name]
        if value is None:
            ok &= s.isna().to_numpy()
        elif name in tolerance:
            v = _values(s).astype(np.float64)
            ok &= np.abs(v - float(value)) <= tolerance[name]
        else:
            present = s.notna().to_numpy()
            vals = s.astype(object).to_numpy()
            eq = np.zeros(len(s), dtype=bool)
            eq[present] = [bool(x == value) for x in vals[present]]
            ok &= eq
    return ok
