"""Stored results as pandas frames.

``load(path, experiment=None)`` is the tidy frame (one row per measurement, config
fields as dotted columns); ``wide(frame)`` has one row per run and step with a column
per measurement; ``export_table`` writes the tidy frame as CSV or Parquet.
"""

from normscope.experiments.frames import export_table, flatten, load, select, wide

__all__ = ["export_table", "flatten", "load", "select", "wide"]
