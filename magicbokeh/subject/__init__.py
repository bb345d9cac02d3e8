"""Subject selection for focus: the official salient-object mask (LDF) and point prompts (SAM).

Modules (each imports torch / transformers only when called):

* :mod:`.ldf_net`: the LDF network (ResNet-50 + LDF decoders and encoder), our code.
* :mod:`.ldf`: loading ``model-40`` safely (safetensors cache) and ``prepare_data.py``'s mask.
* :mod:`.auto_focus`: the official focus rule applied to the salient mask.
* :mod:`.sam`: Segment Anything point prompts with a per-photo embedding cache, GrabCut fallback.
* :mod:`.defocus`: keeping the whole subject sharp (the one place for that math).
* :mod:`.grabcut`: the no-weights fallback for clicks.
* :mod:`.masks`: mask and point checks, and the overlay shown in the app.
"""
