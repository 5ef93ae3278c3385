"""codeprefs: build code preference pairs and train code reward models on them."""

__version__ = "0.1.0"
