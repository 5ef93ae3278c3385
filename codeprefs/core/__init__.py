"""The core layer: what every other layer may import and what imports nothing above it.

Row and shard schemas, the drop registry, the Ray session, path and I/O helpers. Parsers and
filters sit on it, pipelines and trainers above them, the application (CLI, publish, card,
stats) on top; no module here imports from any of those.
"""
