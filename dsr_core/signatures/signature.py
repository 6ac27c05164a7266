"""DSPy's ``dspy.signatures.signature``; the code lives in ``dsr_core.signatures``."""

from . import Signature, SignatureMeta, ensure_signature, infer_prefix, make_signature

__all__ = ["Signature", "SignatureMeta", "ensure_signature", "infer_prefix", "make_signature"]
