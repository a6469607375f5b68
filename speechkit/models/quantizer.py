"""Gumbel-softmax product quantizer of wav2vec 2.0 (Baevski et al., 2020).

Each local feature frame (C dims) is projected to G x V logits; in every group one of V learned
codewords (dim d / G) is picked by a hard Gumbel-softmax (straight-through: the forward pass uses the
one-hot choice, gradients flow through the soft probabilities), and the G picks are concatenated to a
d-dim quantized vector. The temperature is annealed per update, `max(start * decay**n, end)`
(2 -> 0.5 by 0.999995 in the paper/fairseq), from the number of updates the trainer reports through
`set_num_updates`. In eval mode the arg-max codeword is used (no noise).

The diversity penalty of the paper is built from the "perplexity" of the batch-averaged softmax
(no Gumbel noise) per group: `(G V - sum_g exp(H(p_g))) / (G V)`.

Parameter names are HF transformers' (`codevectors` (1, G V, d / G), `weight_proj`); fairseq calls them
`vars` and `weight_proj`.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass
class QuantizerOutput:
    quantized: Tensor  # (N, d) selected codewords, concatenated over groups
    codes: Tensor  # (N, G) chosen codeword index per group
    prob_perplexity: Tensor  # scalar: sum over groups of exp(entropy) of the averaged soft probabilities
    code_perplexity: Tensor  # scalar: the same for the hard one-hot choices (a diagnostic)
    temperature: float


def gumbel_temperature(num_updates: int, start: float, end: float, decay: float) -> float:
    """fairseq's schedule: max(start * decay ** num_updates, end)."""
    return max(start * decay ** num_updates, end)


def perplexity(probs: Tensor) -> Tensor:
    """probs: (N, G, V) -> sum over groups of exp(entropy of the mean distribution)."""
    avg = probs.mean(dim=0)  # (G, V)
    return torch.exp(-(avg * torch.log(avg + 1e-7)).sum(dim=-1)).sum()


class GumbelVectorQuantizer(nn.Module):
    def __init__(self, in_dim: int, num_groups: int = 2, num_vars: int = 320, codevector_dim: int = 256,
                 temp: tuple[float, float, float] = (2.0, 0.5, 0.999995), init: str = "uniform") -> None:
        super().__init__()
        if codevector_dim % num_groups:
            raise ValueError(f"quantizer: codevector_dim {codevector_dim} not divisible by {num_groups} groups")
        if len(temp) != 3:
            raise ValueError(f"quantizer temperature must be (start, end, decay), got {temp}")
        self.num_groups = num_groups
        self.num_vars = num_vars
        self.max_temp, self.min_temp, self.temp_decay = (float(t) for t in temp)
        self.curr_temp = self.max_temp
        self.codevectors = nn.Parameter(torch.empty(1, num_groups * num_vars, codevector_dim // num_groups))
        self.weight_proj = nn.Linear(in_dim, num_groups * num_vars)
        # fairseq/HF init: unit-variance logits projection, U(0, 1) codewords. All-positive codewords share a
        # common direction (cosine ~0.75 between random ones); "normal" (N(0, 1)) avoids it, which let tiny
        # models leave the chance plateau sooner in our runs (an option, not fairseq's default).
        if init == "uniform":
            nn.init.uniform_(self.codevectors)
        elif init == "normal":
            nn.init.normal_(self.codevectors)
        else:
            raise ValueError(f"quantizer init must be 'uniform' (fairseq) or 'normal', got {init!r}")
        nn.init.normal_(self.weight_proj.weight, mean=0.0, std=1.0)
        nn.init.zeros_(self.weight_proj.bias)

    @property
    def total_vars(self) -> int:
        return self.num_groups * self.num_vars

    def set_num_updates(self, num_updates: int) -> None:
        self.curr_temp = gumbel_temperature(num_updates, self.max_temp, self.min_temp, self.temp_decay)

    def forward(self, x: Tensor) -> QuantizerOutput:
        """x: (N, C) frames -> QuantizerOutput with quantized (N, d)."""
        n = x.size(0)
        g, v = self.num_groups, self.num_vars
        logits = self.weight_proj(x).float().view(n, g, v)  # (N, G, V); fp32 for the softmax statistics
        hard_idx = logits.argmax(dim=-1)  # (N, G)
        hard = F.one_hot(hard_idx, v).to(logits.dtype)
        code_ppl = perplexity(hard)
        prob_ppl = perplexity(torch.softmax(logits, dim=-1))
        if self.training:
            onehot = F.gumbel_softmax(logits, tau=self.curr_temp, hard=True, dim=-1)  # straight-through
            codes = onehot.argmax(dim=-1)
        else:
            onehot, codes = hard, hard_idx
        onehot = onehot.to(self.codevectors.dtype)
        # (N, G, V, 1) * (G, V, d/G) summed over V -> (N, G, d/G)
        book = self.codevectors.view(g, v, -1)
        quantized = torch.einsum("ngv,gvd->ngd", onehot, book).reshape(n, -1)
        return QuantizerOutput(quantized=quantized, codes=codes, prob_perplexity=prob_ppl,
                               code_perplexity=code_ppl, temperature=self.curr_temp)
