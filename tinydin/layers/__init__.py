"""Layers of DIN, one concept per module, each with a hand-written backward pass."""
