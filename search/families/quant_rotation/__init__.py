"""SpinQuant-style rotation search: invariant rotations, fake quantization, Cayley-learned rotations.

Modules, one job each: ``rotation`` (matrices), ``transform`` (fold norms, merge rotations into
weights), ``quantizers`` (fake quantization), ``qmodel`` (the quantized forward with online
rotations), ``gptq``, ``cayley`` (learned R1/R2), ``data`` (byte-level text), ``checkpoint``,
``standin`` (a small trained stand-in until the issue-4 backbone exists), ``pipeline`` (one
quantize-and-evaluate recipe), ``outliers`` (activation statistics), ``family`` and ``cli``.
"""
