"""Reproductions of published results: ``hnnlab reproduce greydanus | cranmer | finzi``."""
