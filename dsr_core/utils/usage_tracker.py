"""DSPy's ``dspy.utils.usage_tracker``; the code lives in ``dsr_core.tracking``."""

from ..tracking import UsageTracker, track_usage

__all__ = ["UsageTracker", "track_usage"]
