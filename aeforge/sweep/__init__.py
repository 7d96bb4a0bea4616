"""Design-space sweeps: Optuna-sampled trials (train → export → verify → cost), local or on Ray; Pareto front.

``aeforge sweep SWEEP.yaml [--out DIR] [--workers N] [--ray ADDRESS|auto|local] [--resume] [--force] [--quiet]``

* :mod:`~aeforge.sweep.space`: the sweep file (base experiment, ``set`` overrides, ``space`` of config keys,
  sampler, objectives, cost, resources), validated with file:line errors.
* :mod:`~aeforge.sweep.driver`: Optuna ask-and-tell (grid / random / TPE / NSGA-II samplers), journal first.
* :mod:`~aeforge.sweep.trial`: one trial in a worker: a run directory ``DIR/trials/NNNN`` with its card.
* :mod:`~aeforge.sweep.executor`: a fresh local process per trial, or Ray tasks with resource requests.
* :mod:`~aeforge.sweep.store`: the sweep directory and its resumable journal.
* :mod:`~aeforge.sweep.pareto`, :mod:`~aeforge.sweep.report`: the front, its plot, ``DIR/report.html``.

Only :mod:`~aeforge.sweep.command` is imported by ``aeforge --help``; it imports nothing heavy.
"""
