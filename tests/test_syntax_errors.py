"""Syntax errors show the line, the column, a caret under the bad token and what was expected.

Each case is a malformed query and the exact message a user sees.
"""

import pytest

from kryptondb.errors import QuerySyntaxError
from kryptondb.lang import parse

CASES = [
    (
        "EXPLAIN OCCLUSION OF IMAGE 'cat.png' USING MODEL mobilenet_v2 PATH 16",
        "unexpected 'PATH' at line 1, column 63\n"
        "  EXPLAIN OCCLUSION OF IMAGE 'cat.png' USING MODEL mobilenet_v2 PATH 16\n"
        "                                                                ^^^^\n"
        "expected: end of statement, APPROXIMATE, BASELINE, BATCH, EXACT, FILL, FOR, GRID, INCREMENTAL, INTO, "
        "LAYOUT, MEMORY, NAIVE, ON, PATCH, SCORE, ';', STRIDE",
    ),
    (
        "EXPLAIN OCCLUSION OF IMAGE 'cat.png' USING MODEL",
        "unexpected end of statement at line 1, column 49\n"
        "  EXPLAIN OCCLUSION OF IMAGE 'cat.png' USING MODEL\n"
        "                                                  ^\n"
        "expected: a name",
    ),
    (
        "EXPLAIN OCCLUSION OF IMAGE 'cat.png' USING MODEL m PATCH sixteen",
        "unexpected 'sixteen' at line 1, column 58\n"
        "  EXPLAIN OCCLUSION OF IMAGE 'cat.png' USING MODEL m PATCH sixteen\n"
        "                                                           ^^^^^^^\n"
        "expected: an integer",
    ),
    (
        "SHOW MODLES",
        "unexpected 'MODLES' at line 1, column 6\n"
        "  SHOW MODLES\n"
        "       ^^^^^^\n"
        "expected: MODELS, IMAGES, VIDEOS, VIEWS or TABLES",
    ),
    (
        "EXPLAIN OCCLUSION OF\n  IMAGE 'cat.png'\n  USING MODEL m STRIDE 4.5",
        "unexpected '.5' at line 3, column 25\n"
        "    USING MODEL m STRIDE 4.5\n"
        "                          ^^\n"
        "expected: end of statement, APPROXIMATE, BASELINE, BATCH, EXACT, FILL, FOR, GRID, INCREMENTAL, "
        "an integer, INTO, LAYOUT, MEMORY, NAIVE, ON, PATCH, SCORE, ';', STRIDE",
    ),
    (
        "LOAD IMAGE 'a.png' cat",
        "unexpected 'cat' at line 1, column 20\n"
        "  LOAD IMAGE 'a.png' cat\n"
        "                     ^^^\n"
        "expected: AS",
    ),
    (
        "RECOGNIZE OBJECTS IN VIDEO v USING MODEL m PATCH 3",
        "unexpected 'PATCH' at line 1, column 44\n"
        "  RECOGNIZE OBJECTS IN VIDEO v USING MODEL m PATCH 3\n"
        "                                             ^^^^^\n"
        "expected: end of statement, APPROXIMATE, BOXES, EVERY, EXACT, FEATURE, FRAMES, "
        "INCREMENTAL, INTO, KEYFRAME, NAIVE, ON, ';', THRESHOLD, TOP, WITH",
    ),
    (
        "EXPLAIN PLAN FOR",
        "unexpected end of statement at line 1, column 17\n"
        "  EXPLAIN PLAN FOR\n"
        "                  ^\n"
        "expected: COPY, CREATE, DESCRIBE, DROP, EXPLAIN, LOAD, PREDICT, RECOGNIZE, SHOW, SELECT, TUNE",
    ),
    (
        "CREATE MODEL m FROM model.onnx",
        "unexpected 'model' at line 1, column 21\n"
        "  CREATE MODEL m FROM model.onnx\n"
        "                      ^^^^^\n"
        "expected: a quoted string",
    ),
    (
        "EXPLAIN PLAN FORMAT PNG FOR SHOW MODELS",
        "unexpected 'PNG' at line 1, column 21\n"
        "  EXPLAIN PLAN FORMAT PNG FOR SHOW MODELS\n"
        "                      ^^^\n"
        "expected: TEXT, DOT, SVG, HTML or JSON",
    ),
    (
        "DROP TABLES heat",
        "unexpected 'TABLES' at line 1, column 6\n"
        "  DROP TABLES heat\n"
        "       ^^^^^^\n"
        "expected: MODEL, IMAGE, VIDEO, VIEW or TABLE",
    ),
    (
        "PREDICT IMAGE 'a.png' USING MODEL m TOP",
        "unexpected end of statement at line 1, column 40\n"
        "  PREDICT IMAGE 'a.png' USING MODEL m TOP\n"
        "                                         ^\n"
        "expected: an integer",
    ),
    (
        "",
        "empty query at line 1, column 1\nexpected: a statement",
    ),
    (
        "PREDICT IMAGE a USING MODEL m TOP 9223372036854775808",
        "integer 9223372036854775808 is too large (the largest is 9223372036854775807) at line 1, "
        "column 35\n"
        "  PREDICT IMAGE a USING MODEL m TOP 9223372036854775808\n"
        "                                    ^^^^^^^^^^^^^^^^^^^",
    ),
    (
        "EXPLAIN PLAN FOR EXPLAIN PLAN FOR SHOW MODELS",
        "EXPLAIN PLAN cannot explain another EXPLAIN PLAN: give the statement itself after FOR at "
        "line 1, column 18\n"
        "  EXPLAIN PLAN FOR EXPLAIN PLAN FOR SHOW MODELS\n"
        "                   ^^^^^^^^^^^^^^^^^^^^^^^^^^^^",
    ),
    (
        "EXPLAIN OCCLUSION OF IMAGE a USING MODEL m PATCH 4 PATCH 8",
        "PATCH is given twice (first at line 1, column 44) at line 1, column 52\n"
        "  EXPLAIN OCCLUSION OF IMAGE a USING MODEL m PATCH 4 PATCH 8\n"
        "                                                     ^^^^^^^",
    ),
    (
        "EXPLAIN OCCLUSION OF IMAGE a USING MODEL m TOP 3",
        "unexpected 'TOP' at line 1, column 44\n"
        "  EXPLAIN OCCLUSION OF IMAGE a USING MODEL m TOP 3\n"
        "                                             ^^^\n"
        "expected: end of statement, APPROXIMATE, BASELINE, BATCH, EXACT, FILL, FOR, GRID, INCREMENTAL, INTO, "
        "LAYOUT, MEMORY, NAIVE, ON, PATCH, SCORE, ';', STRIDE",
    ),
]


@pytest.mark.parametrize("query, message", CASES, ids=[c[0][:30] or "empty" for c in CASES])
def test_syntax_error_message(query, message):
    with pytest.raises(QuerySyntaxError) as info:
        parse(query)
    assert str(info.value) == message


def test_error_carries_position():
    with pytest.raises(QuerySyntaxError) as info:
        parse("SHOW\n  MODLES")
    assert (info.value.line, info.value.column, info.value.length) == (2, 3, 6)


def test_keywords_are_case_insensitive():
    a = parse("explain occlusion of image 'x.png' using model m patch 8 stride 2")
    b = parse("EXPLAIN OCCLUSION OF IMAGE 'x.png' USING MODEL m PATCH 8 STRIDE 2")
    assert a == b


# -- numbers, repeated options, nested plans -----------------------------------------------------

OCC = "EXPLAIN OCCLUSION OF IMAGE a USING MODEL m "
REC = "RECOGNIZE OBJECTS IN VIDEO v USING MODEL m "


@pytest.mark.parametrize("query, number", [
    (OCC + "FILL " + "9" * 400, "9" * 400),
    (OCC + "FILL " + "9" * 400 + ".5", "9" * 400 + ".5"),
    (OCC + "STRIDE 99999999999999999999", "99999999999999999999"),
    (OCC + "APPROXIMATE WITHIN " + "9" * 320 + ".0 SECONDS", "9" * 320 + ".0"),
    (REC + "FRAMES 0 TO 18446744073709551616", "18446744073709551616"),
    (REC + "THRESHOLD " + "1" * 400, "1" * 400),
    ("PREDICT IMAGE a USING MODEL m TOP 0000000000000000000000000000099999999999999999999",
     "0000000000000000000000000000099999999999999999999"),
])
def test_numbers_too_large_are_errors_at_the_number(query, number):
    """Not an OverflowError or an 'internal error' later: the parser names the number."""
    with pytest.raises(QuerySyntaxError, match="too large") as info:
        parse(query)
    assert (info.value.column, info.value.length) == (query.index(number) + 1, len(number))


def test_leading_zeros_and_the_largest_integer_parse():
    assert parse("PREDICT IMAGE a USING MODEL m TOP 0007").top == 7
    assert parse("PREDICT IMAGE a USING MODEL m TOP " + "0" * 5000 + "7").top == 7
    assert parse(REC + "THRESHOLD " + "0" * 5000 + ".5").threshold == 0.5
    assert parse(REC + "FRAMES 0 TO 9223372036854775807").frames == (0, 2**63 - 1)


def test_only_ascii_digits_are_numbers():
    with pytest.raises(QuerySyntaxError, match="unexpected character"):
        parse(OCC + "PATCH \u0663")  # ARABIC-INDIC DIGIT THREE: \\d in Python, not a KQL digit


REPEATABLE = [
    (OCC, "FOR CLASS 3"), (OCC, "FOR CLASS 'tabby'"), (OCC, "PATCH 8"), (OCC, "STRIDE 2"),
    (OCC, "FILL 0.5"), (OCC, "FILL MEAN"), (OCC, "EXACT"), (OCC, "NAIVE"), (OCC, "INCREMENTAL"),
    (OCC, "BATCH 4"), (OCC, "MEMORY 64 MB"), (OCC, "ON CPU"), (OCC, "INTO t"),
    (OCC, "APPROXIMATE TAU 0.5"), (OCC + "APPROXIMATE ", "TAU 0.5"),
    (OCC + "APPROXIMATE ", "DRILLDOWN 0.25 TARGET 2"), (OCC + "APPROXIMATE ", "WITH SSIM >= 0.9"),
    (OCC + "APPROXIMATE ", "WITHIN 3 SECONDS"),
    (REC, "TOP 1"), (REC, "FRAMES 0 TO 3"), (REC, "EVERY 2"), (REC, "THRESHOLD 0.1"),
    (REC, "KEYFRAME EVERY 4"), (REC, "KEYFRAME AREA 0.5"), (REC, "BOXES 2"),
    (REC, "WITH AGREEMENT"), (REC, "NAIVE"), (REC, "APPROXIMATE TAU 0.5"), (REC, "ON NUMPY"),
    (REC, "INTO t"), ("PREDICT IMAGE a USING MODEL m ", "TOP 3"),
    ("PREDICT IMAGE a USING MODEL m ", "ON CPU"), ("PREDICT IMAGE a USING MODEL m ", "INTO p"),
    ("TUNE MODEL m ", "PATCH 8"), ("TUNE MODEL m ", "STRIDE 4"), ("TUNE MODEL m ", "FILL BLACK"),
    ("EXPLAIN PLAN ", "ANALYZE"), ("EXPLAIN PLAN ", "VERBOSE"), ("EXPLAIN PLAN ", "FORMAT SVG"),
]


def _tail(prefix: str) -> str:
    return {"TUNE MODEL m ": " ON IMAGES a", "EXPLAIN PLAN ": " FOR SHOW MODELS"}.get(prefix, "")


@pytest.mark.parametrize("prefix, option", REPEATABLE, ids=[o for _, o in REPEATABLE])
def test_a_repeated_option_is_an_error_at_the_second(prefix, option):
    """The AST holds one value per option: a second one used to replace the first silently."""
    query = f"{prefix}{option} {option}{_tail(prefix)}"
    with pytest.raises(QuerySyntaxError, match="is given twice") as info:
        parse(query)
    second = len(prefix) + len(option) + 2
    assert (info.value.column, info.value.length) == (second, len(option))
    assert f"(first at line 1, column {len(prefix) + 1})" in info.value.message
    parse(f"{prefix}{option}{_tail(prefix)}")  # once is fine


@pytest.mark.parametrize("first, second", [("NAIVE", "INCREMENTAL"), ("INCREMENTAL", "NAIVE"),
                                           ("EXACT", "APPROXIMATE"), ("APPROXIMATE", "EXACT")])
def test_options_that_set_the_same_thing_exclude_each_other(first, second):
    query = f"{OCC}{first} PATCH 8 {second}"
    with pytest.raises(QuerySyntaxError, match=f"{second} and {first} exclude each other") as e:
        parse(query)
    assert e.value.column == query.rindex(second) + 1


def test_nested_plans_are_an_error_at_the_inner_one():
    query = "EXPLAIN PLAN ANALYZE FOR\n  EXPLAIN PLAN FORMAT SVG FOR PREDICT IMAGE a USING MODEL m"
    with pytest.raises(QuerySyntaxError, match="cannot explain another EXPLAIN PLAN") as info:
        parse(query)
    assert (info.value.line, info.value.column) == (2, 3)


@pytest.mark.parametrize("depth", [5000, 50000])
def test_thousands_of_nested_plans_are_a_syntax_error(depth):
    """They ran out of Python's recursion (RecursionError)."""
    with pytest.raises(QuerySyntaxError, match="nests too deeply"):
        parse("EXPLAIN PLAN FOR " * depth + "SHOW MODELS")


def test_options_keep_their_spans():
    stmt = parse(OCC + "PATCH 8  FILL 2")
    assert (stmt.spans["patch"].column, stmt.spans["fill"].column) == (44, 53)
    assert stmt.spans["fill"].length == len("FILL 2")
