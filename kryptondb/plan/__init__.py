"""Planning: AST -> bound logical plan -> rewrite rules -> physical DAG."""
