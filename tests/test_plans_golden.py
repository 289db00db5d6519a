"""Golden plans: for each tests/fixtures/plans/*.kql, EXPLAIN PLAN's text must equal the file's
expected section. Update after a reviewed change with KRYPTON_UPDATE_GOLDEN=1 (diffs show it)."""

import pathlib

import pytest

import kryptondb
from golden import cases, check

FIXTURES = pathlib.Path(__file__).parent / "fixtures" / "plans"
SEPARATOR = "\n-- expected plan --\n"


@pytest.fixture(scope="module")
def con():
    c = kryptondb.connect()
    c.execute(f"LOAD IMAGE '{kryptondb.bundled_image()}' AS cat")
    c.execute("PREDICT IMAGE cat USING MODEL mobilenet_v2 TOP 3 INTO preds")
    return c


@pytest.mark.parametrize("path", cases(FIXTURES), ids=lambda p: p.stem)
def test_plan_matches_golden_file(con, path):
    query = path.read_text().partition(SEPARATOR)[0].strip()
    check(path, SEPARATOR, con.execute(f"EXPLAIN PLAN FOR {query}").message)


def test_there_are_golden_plans():
    assert len(cases(FIXTURES)) >= 6
