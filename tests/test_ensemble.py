"""Tests of model.ensemble: the members' probabilities are averaged and handed on as one logit."""

from __future__ import annotations

import pytest
import torch
from helpers import ConstNet

from model.ensemble import LOGIT_EPS, ProbabilityMean


def test_sigmoid_of_the_output_is_the_members_mean_probability() -> None:
    x = torch.zeros(2, 6, 4, 5, 6)
    logits = (2.0, -1.0, 0.5)
    out = ProbabilityMean([ConstNet(v) for v in logits])(x)
    assert out.shape == (2, 1, 4, 5, 6)
    want = sum(torch.sigmoid(torch.tensor(v)) for v in logits) / len(logits)
    assert torch.allclose(torch.sigmoid(out), torch.full_like(out, float(want)), atol=1e-6)


def test_one_member_answers_as_itself_and_the_vote_decides_the_threshold() -> None:
    x = torch.zeros(1, 6, 3, 3, 3)
    alone = ProbabilityMean([ConstNet(1.5)])(x)
    assert torch.allclose(alone, torch.full_like(alone, 1.5), atol=1e-5)
    # one confident "yes" (p 0.95) against two mild "no"s (p 0.27 each): mean 0.50 -> background;
    # a mean of logits (2.94 - 2 = 0.94 / 3 > 0) would have said foreground
    vote = ProbabilityMean([ConstNet(2.94), ConstNet(-1.0), ConstNet(-1.0)])(x)
    assert torch.all(torch.sigmoid(vote) < 0.5)


def test_saturated_members_stay_finite_in_half_precision() -> None:
    x = torch.zeros(1, 6, 2, 2, 2, dtype=torch.float16)
    out = ProbabilityMean([ConstNet(60.0), ConstNet(60.0)])(x)
    assert out.dtype == torch.float16 and torch.isfinite(out).all()
    assert torch.all(torch.sigmoid(out.float()) >= 1 - 2 * LOGIT_EPS)


def test_no_members_is_an_error() -> None:
    with pytest.raises(ValueError, match="at least one member"):
        ProbabilityMean([])
