"""Datasets: what each one is (catalog) and, later, how it is loaded."""
