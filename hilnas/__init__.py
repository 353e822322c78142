"""hilnas: hardware-in-the-loop architecture search for on-device models.

This package holds what belongs to no single part: settings, user-facing errors and the CLI
that composes the sub-commands each part contributes.
"""

__version__ = "0.1.0"
