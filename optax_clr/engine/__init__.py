"""The one compiled engine every driver runs on (internal).

* :mod:`._model` -- models as ``(graphdef, params, rest)``; structure checks.
* :mod:`._loss` -- the loss contract: ``rngs``/key argument, any aux.
* :mod:`._optimizer` -- factories, injected transformations, nnx.Optimizer.
* :mod:`._engine` -- ``Engine``: init / step / evaluate, program cache.
* :mod:`._feed` -- batches: one epoch order, chunks, validation data.
* :mod:`._runner` -- compiled chunks for one copy or K copies; the loop.
* :mod:`._placement` -- meshes and shardings (multi-host correct).
* :mod:`._autotune` -- copies per vmapped group, by measurement.
"""
