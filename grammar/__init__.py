"""The query language grammar (kql.lark), shipped inside the wheel."""
