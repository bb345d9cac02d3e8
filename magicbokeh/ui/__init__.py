"""The Gradio demo's UI: views (text and pictures), per-panel layout builders, event handlers.

Imports gradio; nothing outside ``app.py`` and this package imports it. Decisions (what a control
means, what a request is, which notes are warnings, what ZeroGPU refuses) live in the core; this
package only reads controls into :class:`magicbokeh.app_settings.AppSettings` and shows results.
"""
