"""FLOP formulas of benchmarks/flops.py against counts worked out by hand.

Sizes: B = 2, N = 3 valid, P = 4 padded, D = 3, one attention hidden layer of
3, one MLP hidden layer of 5 (MLP input 2D = 6).
"""
import pytest

from benchmarks.flops import (Shape, base_forward_flops, din_forward_flops, padded_din_forward_flops,
                              training_flops)

SHAPE = Shape(batch=2, valid=3, padded=4, item_dim=3, attention_hidden=(3,), mlp_hidden=(5,))

# Shared terms: score layer 2*N*3*1 = 18, pooling 2*N*D = 18,
# MLP 2*B*(6*5 + 5*1) = 140.


def test_concat_forward_by_hand():
    # q part 2*B*D*H = 36, k and q*k parts 4*N*D*H = 108.
    assert din_forward_flops(SHAPE, "concat") == 36 + 108 + 18 + 18 + 140


def test_outer_forward_by_hand():
    # P = q M: 2*B*D^2*H = 108, q W_q: 2*B*D*H = 36, k . P on the grid: 2*P*D*H = 72.
    assert din_forward_flops(SHAPE, "outer") == 108 + 36 + 72 + 18 + 18 + 140


def test_padded_concat_by_hand():
    # 2*P*(4D)*H = 288, score 2*P*3 = 24, pooling 2*P*D = 24.
    assert padded_din_forward_flops(SHAPE, "concat") == 288 + 24 + 24 + 140


def test_padded_outer_by_hand():
    # Input width 2D + D^2 = 15: 2*P*15*H = 360.
    assert padded_din_forward_flops(SHAPE, "outer") == 360 + 24 + 24 + 140


def test_padded_on_valid_rows():
    # Rows = N = 3: 2*3*12*3 = 216, score 18, pooling 18.
    assert padded_din_forward_flops(SHAPE, "concat", materialized_rows=3) == 216 + 18 + 18 + 140


def test_base_forward_by_hand():
    # N*D = 9 adds of sum pooling.
    assert base_forward_flops(SHAPE) == 9 + 140


def test_training_is_three_forwards():
    assert training_flops(100.0) == 300.0


def test_unknown_unit_rejected():
    with pytest.raises(ValueError, match="unit 'inner'"):
        din_forward_flops(SHAPE, "inner")
