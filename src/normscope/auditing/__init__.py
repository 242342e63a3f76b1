"""Audit a model's normalization layers: the same measures on variants built by surgery.

``normscope.audit(model, data)`` returns an :class:`AuditResult`; ``normscope audit``
is the command (see ``docs/audit.md``).
"""

import importlib

_WHERE = {
    "AuditResult": "normscope.auditing.result",
    "RunRecord": "normscope.auditing.result",
    "DEFAULT_MEASURES": "normscope.auditing.run",
    "audit": "normscope.auditing.run",
    "VARIANTS": "normscope.auditing.variants",
}

__all__ = ["DEFAULT_MEASURES", "VARIANTS", "AuditResult", "RunRecord", "audit"]


def __getattr__(name: str):
    # imported on first use, so that the command line can register `normscope audit`
    # (normscope.auditing.command) without loading torch
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'normscope.auditing' has no attribute {name!r}")
