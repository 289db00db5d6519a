"""Incremental view maintenance for CNN inference: region algebra, materialized views, and the
incremental executor that recomputes only what a changed input region reaches."""
