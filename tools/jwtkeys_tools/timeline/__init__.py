"""The key timeline: model (model.py), SVG picture (svg.py), terminal text (text.py)."""
