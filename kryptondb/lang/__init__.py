"""The query language: text -> typed AST (``parse``)."""

from kryptondb.lang.parser import parse, parse_script

__all__ = ["parse", "parse_script"]
