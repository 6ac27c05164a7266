"""DSPy's ``dspy.teleprompt.bootstrap_finetune``; the code lives in ``dsr_core.optimizers.bootstrap_finetune``."""

from ..optimizers.bootstrap_finetune import BootstrapFinetune, build_call_data_from_trace

__all__ = ["BootstrapFinetune", "build_call_data_from_trace"]
