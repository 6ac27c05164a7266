"""DSPy's module path for callbacks; they live in ``dsr_core.callback``."""

from ..callback import ACTIVE_CALL_ID, BaseCallback, with_callbacks

__all__ = ["ACTIVE_CALL_ID", "BaseCallback", "with_callbacks"]
