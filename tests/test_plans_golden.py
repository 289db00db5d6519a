"""Golden plans: for each tests/fixtures/plans/*.kql, EXPLAIN PLAN's text must equal the file's
expected section. Update after a reviewed change with KRYPTON_UPDATE_GOLDEN=1 (diffs show it)."""

import os
import pathlib

import pytest

import kryptondb

FIXTURES = pathlib.Path(__file__).parent / "fixtures" / "plans"
SEPARATOR = "\n-- expected plan --\n"


def _cases():
    return sorted(FIXTURES.glob("*.kql"))


@pytest.fixture(scope="module")
def con():
    c = kryptondb.connect()
    c.execute(f"LOAD IMAGE '{kryptondb.bundled_image()}' AS cat")
    c.execute("PREDICT IMAGE cat USING MODEL mobilenet_v2 TOP 3 INTO preds")
    return c


@pytest.mark.parametrize("path", _cases(), ids=lambda p: p.stem)
def test_plan_matches_golden_file(con, path):
    query, _, expected = path.read_text().partition(SEPARATOR)
    actual = con.execute(f"EXPLAIN PLAN FOR {query.strip()}").message.rstrip() + "\n"
    if os.environ.get("KRYPTON_UPDATE_GOLDEN"):
        path.write_text(query.strip() + SEPARATOR + actual)
        expected = actual
    assert actual == expected


def test_there_are_golden_plans():
    assert len(_cases()) >= 6
