"""Names from job parameters are validated and quoted before any SQL runs."""

from __future__ import annotations

import pytest

from movielens_als.cli import main
from movielens_als.errors import InvalidIdentifierError
from movielens_als.lakehouse.names import Namespace, quote


@pytest.mark.parametrize("value", ["x`; DROP TABLE y; --", "a.b", "1abc", "", "has space", "semi;colon", "ü"])
def test_invalid_identifiers_are_rejected(value):
    with pytest.raises(InvalidIdentifierError, match="invalid schema"):
        Namespace("spark_catalog", value)


def test_valid_names_are_backtick_quoted_three_level():
    ns = Namespace("main", "movielens_dev")
    assert ns.table("ratings") == "`main`.`movielens_dev`.`ratings`"
    assert quote("_x1") == "`_x1`"


def test_cli_rejects_an_injection_with_one_line_and_exit_2_before_spark_starts(capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_:
        main(["land", "--schema", "x`; DROP TABLE y; --", "--home", str(tmp_path / "home")])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: invalid schema 'x`; DROP TABLE y; --'") and err.count("\n") == 1
    assert not (tmp_path / "home").exists()
