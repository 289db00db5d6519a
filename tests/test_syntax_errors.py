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
        "expected: end of statement, APPROXIMATE, BATCH, EXACT, FILL, FOR, INCREMENTAL, INTO, MEMORY, NAIVE, ON, "
        "PATCH, ';', STRIDE, TOP",
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
        "expected: end of statement, APPROXIMATE, BATCH, EXACT, FILL, FOR, INCREMENTAL, INTO, MEMORY, NAIVE, ON, "
        "PATCH, ';', STRIDE, TOP",
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
        "expected: end of statement, APPROXIMATE, BOXES, EVERY, EXACT, FRAMES, INCREMENTAL, INTO, "
        "KEYFRAME, NAIVE, ON, ';', THRESHOLD, TOP, WITH",
    ),
    (
        "EXPLAIN PLAN FOR",
        "unexpected end of statement at line 1, column 17\n"
        "  EXPLAIN PLAN FOR\n"
        "                  ^\n"
        "expected: CREATE, DESCRIBE, DROP, EXPLAIN, LOAD, PREDICT, RECOGNIZE, SHOW, SELECT, TUNE",
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
        "expected: TEXT, DOT, SVG or HTML",
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
