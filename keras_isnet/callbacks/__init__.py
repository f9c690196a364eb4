"""Keras callbacks: :class:`HeatmapCallback` (heatmaps during ``fit``) and :class:`PSchedule`
(the ISNet's heatmap loss weight per epoch).

Example:
    >>> cb = ki.callbacks.HeatmapCallback(x_val[:8], masks=m_val[:8], log_dir="logs/heatmaps")
    >>> isnet.fit(data, epochs=10, callbacks=[cb, ki.callbacks.PSchedule({0: 0.0, 2: 0.8})])
"""

from keras_isnet.callbacks.heatmap import HeatmapCallback
from keras_isnet.callbacks.p_schedule import PSchedule

__all__ = ["HeatmapCallback", "PSchedule"]
