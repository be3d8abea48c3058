"""Table machinery: reading, type inference, reversible transforms, tokens, constraints and conditions."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pd = pytest.importorskip("pandas", reason="needs the tabular extra")

from genlab.data.constraints import Constraint, check_training_data, condition_holds, parse_condition  # noqa: E402
from genlab.data.tables import NumberCodec, TableCodec, infer_columns, read_table, row_jitter  # noqa: E402
from genlab.errors import ConfigError, DataError  # noqa: E402


def mixed(n: int = 200, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({
        "price": np.round(rng.lognormal(3, 1, n), 2),
        "count": rng.integers(0, 7, n),
        "ward": rng.choice(["a", "b", "c"], n),
        "flag": rng.random(n) > 0.3,
        "when": pd.Timestamp("2020-01-01") + pd.to_timedelta(rng.integers(0, 400, n), unit="D"),
        "weight": rng.normal(70, 10, n),
    })
    df.loc[rng.random(n) < 0.2, "weight"] = np.nan
    df.loc[rng.random(n) < 0.1, "ward"] = None
    return df


def test_types_are_inferred_and_overridable():
    df = mixed()
    kinds = {c.name: c.kind for c in infer_columns(df)}
    assert kinds == {"price": "continuous", "count": "integer", "ward": "categorical", "flag": "boolean",
                     "when": "datetime", "weight": "continuous"}
    cols = {c.name: c for c in infer_columns(df, categorical=["count"])}
    assert cols["count"].kind == "categorical" and cols["count"].categories == list(range(7))
    assert cols["price"].decimals == 2 and cols["weight"].has_missing and cols["ward"].has_missing
    assert cols["when"].unit == "D"


def test_quantile_transform_matches_scikit_learn():
    from sklearn.preprocessing import QuantileTransformer

    x = np.random.default_rng(0).gamma(2.0, size=3000)
    x[:200] = 1.0  # a point mass: ties split evenly
    codec = NumberCodec.fit(x, "quantile")
    ref = QuantileTransformer(n_quantiles=1000, output_distribution="normal").fit(x[:, None])
    z, _ = codec.encode(x, np.random.default_rng(0))
    assert np.allclose(z, ref.transform(x[:, None])[:, 0], atol=1e-6)
    back = codec.decode(z, None)
    assert np.allclose(back, x, atol=1e-6 * x.max())


def test_roundtrip_restores_values_dtypes_and_missing():
    df = mixed()
    cols = infer_columns(df)
    for numeric in ("quantile", "mode"):
        codec = TableCodec.fit(df, cols, numeric, bins=32)
        enc = codec.encode(df)
        x = codec.dense(enc)
        assert x.shape == (len(df), codec.dims) and x.dtype == torch.float32
        out = codec.decode(x)
        assert list(out.columns) == list(df.columns)
        assert out["weight"].isna().equals(df["weight"].isna()) and out["ward"].isna().equals(df["ward"].isna())
        ok = df["weight"].notna()
        tol = 1e-3 if numeric == "quantile" else 0.05
        assert np.allclose(out["price"], df["price"], rtol=tol) and np.allclose(out["weight"][ok], df["weight"][ok],
                                                                                  rtol=tol)
        assert (out["count"] == df["count"]).all() and (out["flag"] == df["flag"]).all()
        assert (out["when"] == df["when"]).all() and str(out["count"].dtype) == "int64"
        assert out["flag"].dtype == bool and str(out["when"].dtype).startswith("datetime64")
    again = TableCodec.from_json(codec.to_json())
    assert again.decode(x).equals(out)


def test_tokens_roundtrip_and_stay_in_their_ranges():
    df = mixed()
    codec = TableCodec.fit(df, infer_columns(df), bins=16, target="ward")
    tok = codec.tokens(codec.encode(df))
    ranges = codec.token_ranges()
    assert codec.token_columns[0] == "ward"  # the target first
    for j, (lo, hi) in enumerate(ranges):
        assert tok[:, j].min() >= lo and tok[:, j].max() < hi
    out = codec.decode_tokens(tok)
    assert (out["count"] == df["count"]).all() and out["ward"].isna().equals(df["ward"].isna())
    # a binned number decodes inside its bin, the same way every time, wherever the row sits
    u = codec.numbers["price"].cdf(out["price"].to_numpy())
    u0 = codec.numbers["price"].cdf(df["price"].to_numpy())
    assert np.all(np.abs(np.floor(u * 16) - np.floor(np.clip(u0, 0, 1 - 1e-9) * 16)) <= 1)
    assert codec.decode_tokens(tok.flip(0)).iloc[::-1].reset_index(drop=True).equals(out)
    assert np.array_equal(row_jitter(tok.numpy()[:5]), row_jitter(tok.numpy())[:5])


def test_bad_files_are_one_line_errors(tmp_path):
    cases = {"ragged.csv": b"a,b\n1,2\n3\n", "empty.csv": b"", "header.csv": b"a,b\n",
             "latin.csv": "a,b\n1,caf\xe9\n".encode("latin-1")}
    needles = {"ragged.csv": "ragged", "empty.csv": "empty", "header.csv": "no data rows", "latin.csv": "UTF-8"}
    for name, blob in cases.items():
        (tmp_path / name).write_bytes(blob)
        with pytest.raises(DataError, match=needles[name]):
            read_table(tmp_path / name)
    with pytest.raises(DataError, match="all 3 values missing"):
        infer_columns(pd.DataFrame({"a": [1, 2, 3], "b": [None, None, None]}))
    with pytest.raises(DataError, match="too many to model as categories"):
        infer_columns(pd.DataFrame({"id": [f"x{i}" for i in range(40)]}))


def test_constraints_parse_evaluate_and_refuse():
    df = pd.DataFrame({"x": [1.0, 2.0, np.nan], "price": [300, 500, 1000], "cut": ["Ideal", "Good", "Ideal"]})
    names = list(df.columns)
    assert Constraint.parse("x > 0 and price >= 300", names).holds(df).tolist() == [True, True, False]
    assert Constraint.parse("cut == 'Ideal' or abs(x - 2) < 0.5", names).holds(df).tolist() == [True, True, True]
    assert Constraint.parse("price / 100 % 2 == 1", names).holds(df).tolist() == [True, True, False]
    for bad, needle in (("y > 0", "no column 'y'"), ("__import__('os')", "only abs"), ("x +", "cannot read"),
                        ("x", "not a comparison"), ("x.real > 0", "Attribute")):
        with pytest.raises(ConfigError, match=needle):
            Constraint.parse(bad, names)
    with pytest.raises(DataError, match="violated by 1 of 3 rows"):
        check_training_data([Constraint.parse("price >= 400", names)], df, "t.csv")


def test_conditions_parse_and_match():
    df = mixed()
    cols = infer_columns(df)
    c = parse_condition("ward=b, count=3, flag=true", cols)
    assert c == {"ward": "b", "count": 3.0, "flag": True}
    ok = condition_holds(df, c, {"count": 0.5})
    assert ok.tolist() == ((df["ward"] == "b") & (df["count"] == 3) & df["flag"]).fillna(False).tolist()
    assert parse_condition("weight=NA", cols) == {"weight": None}
    for bad, needle in (("nope=1", "no column 'nope'"), ("ward=z", "not a value of ward"), ("ward", "column=value"),
                        ("count=99", "outside the training range"), ("count=1.5", "integers"),
                        ("flag=NA", "no missing values")):
        with pytest.raises(ConfigError, match=needle):
            parse_condition(bad, cols)
