"""Data sources: the synthetic interest world, MovieLens and Amazon Electronics."""
