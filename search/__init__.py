"""Search spaces, families, the Optuna-on-Ray driver and Pareto/hypervolume bookkeeping."""
