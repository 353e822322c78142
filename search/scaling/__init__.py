"""Scaling laws over effective training tokens: D_eff forms, robust fits, evaluation, sweeps of tiny LMs.

Modules, in the order data flows: ``data`` (checked observations), ``forms`` (D_eff registry), ``law``
(Chinchilla approach-3 fit and bootstrap), ``evaluation`` (held-out error, correlations), ``plots``,
``store`` (SQL), ``spec``/``sweep``/``training`` (tiny-LM sweeps on Ray) and ``cli``. Nothing is
imported here so that ``hilnas --help`` stays fast.
"""
