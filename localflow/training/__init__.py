"""Training operator semantics (kubeflow.org/v1 jobs and trainer.kubeflow.org/v1alpha1 TrainJobs).

Pure modules: :mod:`kinds` (the per-kind table), :mod:`defaults`, :mod:`env` (environment
injection), :mod:`pods` (replica Pod manifests), :mod:`mpi`, :mod:`conditions` (job condition
rules), :mod:`policy` (reconcile decisions), :mod:`runtimes` (TrainJob runtimes and Pods),
:mod:`ports`, :mod:`gpus`. Controllers in ``localflow.controllers`` drive them.
"""
