"""Multi-objective test problems with known Pareto fronts, for checking the search engine against truth."""
