"""DSPy's ``dspy.dsp.utils.settings``: dsr's settings (``settings``), and ``DEFAULT_CONFIG``, what a fresh
process starts with."""

from types import MappingProxyType

from ...settings import _defaults, settings

DEFAULT_CONFIG = MappingProxyType(dict(_defaults))  # read-only: change settings with configure/context

__all__ = ["DEFAULT_CONFIG", "settings"]
