"""Synthetic bokeh data: a thin-lens ray tracer over layered scenes and the pair generator."""
