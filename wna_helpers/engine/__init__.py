"""engine: stimuli, run options and the streaming kernel. Imports nothing of wna_helpers outside engine.

- :mod:`~wna_helpers.engine.stimuli`, :mod:`~wna_helpers.engine.structured_noise`: what is pushed through a
  model (noise kinds, mixtures, real images), drawn chunk by chunk from counter-based seeds
  (:mod:`~wna_helpers.engine.host_noise`: uniform noise drawn on every CPU core);
- :mod:`~wna_helpers.engine.options`: the run options every method takes;
- :mod:`~wna_helpers.engine.kernel`: the streaming engine and the :class:`~wna_helpers.engine.kernel.Accumulator`
  interface the methods implement;
- :mod:`~wna_helpers.engine.speed`, :mod:`~wna_helpers.engine.allocator`: how a model is run at the hardware's pace,
  and the memory allocator under it;
- :mod:`~wna_helpers.engine.checks`: the argument checks every layer shares;
- :mod:`~wna_helpers.engine.layers`, :mod:`~wna_helpers.engine.fingerprint`, :mod:`~wna_helpers.engine.atomic`,
  :mod:`~wna_helpers.engine.places`: a model's layers, content digests, atomic writes, where files live.
"""
