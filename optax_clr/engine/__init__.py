"""The one engine every driver runs on (internal).

* :mod:`._model` -- a model (NNX, Equinox, any pytree, with declared state)
  as a hashable definition and its arrays.
* :mod:`._loss` -- the loss contract: read from the signature; aux, state.
* :mod:`._optimizer` -- factories, injected transformations, nnx.Optimizer,
  extra arguments; the LR an update applied.
* :mod:`._step` -- the pure step of one copy: init / step / evaluate.
* :mod:`._setup` -- what every driver does before its first step.
* :mod:`._feed` -- batches: one epoch order, chunks, validation data.
* :mod:`._layout` -- where copies run and how many per dispatch.
* :mod:`._memory` -- copies that fit in a GPU's/TPU's memory.
* :mod:`._loop` -- the compiled programs of a solver, the copies on the
  devices, the chunk loop.
* :mod:`._population` -- K copies of a test, from setup to records.
* :mod:`._placement` -- meshes and shardings (multi-host correct).
"""
