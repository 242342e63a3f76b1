"""Data sets as tensors: synthetic, shipped real data and local file readers."""

from normscope.data.dataset import Dataset
from normscope.data.loading import check, flattens, load, names

__all__ = ["Dataset", "check", "flattens", "load", "names"]
