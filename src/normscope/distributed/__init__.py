"""One measurement across processes (data parallel on ``torch.distributed``)."""

from normscope.distributed.group import Group
from normscope.distributed.shard import shard, shard_bounds

__all__ = ["Group", "shard", "shard_bounds"]
