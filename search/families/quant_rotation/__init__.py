"""SpinQuant-style rotation search: invariant rotations, fake quantization, Cayley-learned rotations.

Modules, one job each: ``rotation`` (matrices), ``transform`` (fold norms, merge rotations into
weights), ``quantizers`` (fake quantization), ``qmodel`` (the quantized forward with online
rotations), ``gptq``, ``cayley`` (learned R1/R2), ``data`` (calibration and held-out token windows),
``checkpoint`` (model files and folders), ``target`` (the model to quantize and its token streams;
by default the hilnas backbone), ``pipeline`` (one quantize-and-evaluate recipe), ``outliers``
(activation statistics), ``family`` and ``cli``.
"""
