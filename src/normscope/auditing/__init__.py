"""Audit a model's normalization layers: the same measures on variants built by surgery.

``normscope.audit(model, data)`` returns an :class:`AuditResult`; ``normscope audit``
is the command (see ``docs/audit.md``).
"""

from normscope.auditing.result import AuditResult, RunRecord
from normscope.auditing.run import DEFAULT_MEASURES, audit
from normscope.auditing.variants import VARIANTS

__all__ = ["DEFAULT_MEASURES", "VARIANTS", "AuditResult", "RunRecord", "audit"]
