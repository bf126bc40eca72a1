"""Katib on one machine: suggestion algorithms (:mod:`.suggest`, on Optuna), metrics collection
(:mod:`.metrics`) and the ``localflow run`` runner of an Experiment (:mod:`.runner`). The
Experiment, Suggestion and Trial reconcilers live in :mod:`localflow.controllers`."""
