"""Evaluation: depth (Table 1), Real-ISR at K = 0 and bokeh, sharded over processes or Ray."""
