"""Several trained networks of one architecture answering as one: their probabilities averaged.

Why: sibling runs from the same start (other seeds, other data mixes) reach about the same means
on the full protocol but err on different cases, by up to 0.3 DSC_AUC on one case
(docs/validation.md). Averaging their outputs per voxel keeps what they agree on and damps what
one of them gets wrong alone; averaging their *weights* instead (``model.training.average``) was
level with the best single run. The members share the grid and the prompt encoding, so they
run on the same input batch, and the module returns a logit as one network does: the predictor
(sigmoid, threshold, mirror views) does not know whether it holds one network or several.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

# probabilities are clamped this far from 0 and 1 before the logit, so that it stays finite in
# float16 (the CUDA path); sigmoid of the result returns the mean within 1e-4
LOGIT_EPS = 1e-4


class ProbabilityMean(nn.Module):
    """Members' sigmoid outputs (first channel) averaged, returned as a (batch, 1, z, y, x) logit
    in the input's dtype."""

    def __init__(self, members: Sequence[nn.Module]) -> None:
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one member")
        self.members = nn.ModuleList(members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        total = None
        for member in self.members:
            p = torch.sigmoid(member(x)[:, 0:1].float())
            total = p if total is None else total + p
        assert total is not None
        mean = total / len(self.members)
        return torch.logit(mean, eps=LOGIT_EPS).to(x.dtype)
