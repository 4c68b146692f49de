"""HistogramObserver with the same ranges as torchao's, found in a fraction of the time.

XNNPACKQuantizer's static config observes activations with torchao's HistogramObserver, whose
range search (run by convert_pt2e, once per observed tensor) steps two quantiles by 1e-5 in a
Python loop over 0-dim tensors and computes the L2 error of every candidate range one at a time.
It stops when the error grows; where the error underflows to zero in float32 (activations around
1e-16, as in a randomly initialized transformers MobileNetV2) it never grows, and every observer
walks all 100,000 steps: convert_pt2e took about 90 CPU s for MobileNetV2.

This subclass walks the same steps on Python floats, skips runs of steps that move neither bound
(bisecting the monotonic cumulative histogram), and computes the errors of many candidates in one
batch with the same float32 operations. The ranges come out bit for bit the same
(tests/e2e/test_quantize_coverage.py checks it against the original).
"""
from __future__ import annotations

from bisect import bisect_left, bisect_right
from functools import cache

import numpy as np
import torch
from torchao.quantization.pt2e.observer import HistogramObserver

_STEP = 1e-5  # HistogramObserver's quantile step


@cache
def _quantile_steps() -> tuple[np.ndarray, np.ndarray]:
    """Every value alpha and beta take in the search, summed step by step as it sums them."""
    alphas, betas = [0.0], [1.0]
    while alphas[-1] < betas[-1]:
        alphas.append(alphas[-1] + _STEP)
        betas.append(betas[-1] - _STEP)
    return np.array(alphas), np.array(betas)


class FastHistogramObserver(HistogramObserver):
    _cached: tuple | None = None

    def calculate_qparams(self):
        # An observer shared by several nodes is asked once per node: search once per state.
        state = (self.histogram._version, self.min_val._version, self.max_val._version)
        if self._cached is None or self._cached[0] != state:
            self._cached = (state, super().calculate_qparams())
        return tuple(t.clone() for t in self._cached[1])

    def _non_linear_param_search(self):
        csum = torch.cumsum(self.histogram, dim=0).tolist()
        if self.histogram.size()[0] != self.bins or not all(a <= b for a, b in zip(csum, csum[1:])):
            return super()._non_linear_param_search()  # the bisections need a sorted cumulative sum
        start_bin, end_bin = 0, self.bins - 1
        norm_min = float("inf")
        candidates, chunk = self._candidates(csum), 8
        while batch := [c for _, c in zip(range(chunk), candidates)]:
            for (start, end), norm in zip(batch, self._errors(batch)):
                if norm > norm_min:
                    return self._range(start_bin, end_bin)
                norm_min, start_bin, end_bin = norm, start, end
            chunk = min(4 * chunk, 256)  # usually the error grows within a few candidates
        return self._range(start_bin, end_bin)

    def _range(self, start_bin: int, end_bin: int):
        bin_width = (self.max_val - self.min_val) / self.bins
        return self.min_val + bin_width * start_bin, self.min_val + bin_width * (end_bin + 1)

    def _candidates(self, csum: list[float]):
        """The (start_bin, end_bin) pairs the original search would evaluate, in order, had it never stopped."""
        alphas, betas = _quantile_steps()
        total = torch.sum(self.histogram).item()
        # The original compares float32 tensor elements with Python floats, which torch casts to float32.
        lows = (alphas * total).astype(np.float32).tolist()
        highs = (betas * total).astype(np.float32).tolist()
        neg_highs = [-h for h in highs]  # ascending, for bisect
        i = j = 0  # alpha = alphas[i], beta = betas[j]
        start, end = 0, self.bins - 1
        while alphas[i] < betas[j]:
            l = bisect_left(csum, lows[i + 1], start, end)
            if l == start:
                # Only beta moves until the end bin can: jump to that step (the original skips them one by one).
                if end == start:
                    return
                j = bisect_right(neg_highs, -csum[end], j + 1) - 1
                if j + 1 >= len(highs) or not alphas[i] < betas[j]:
                    return
            r = bisect_right(csum, highs[j + 1], start + 1, end + 1) - 1
            if (l - start) > (end - r):
                start, i = l, i + 1
            else:
                end, j = r, j + 1
            yield start, end

    def _errors(self, batch: list[tuple[int, int]]) -> list[float]:
        """_compute_quantization_error of each (start, end), in one batch, with the same float32 ops."""
        bin_width = (self.max_val.item() - self.min_val.item()) / self.bins
        widths = [bin_width * (end - start + 1) / self.dst_nbins for start, end in batch]
        if 0.0 in widths:  # a range of zero width (or one that underflows): leave it to the original
            return [self._compute_quantization_error(start, end) for start, end in batch]

        def column(values, dtype=torch.float32):
            return torch.tensor(values, dtype=dtype).unsqueeze(1)

        dst_bin_width = column(widths)
        half, neg_half = column([w / 2 for w in widths]), column([-w / 2 for w in widths])
        src_bin = torch.arange(self.bins, device=self.histogram.device)
        src_bin_begin = (src_bin - column([start for start, _ in batch], torch.int64)) * bin_width
        src_bin_end = src_bin_begin + bin_width
        last = self.dst_nbins - 1
        dst_bin_of_begin = torch.clamp(torch.div(src_bin_begin, dst_bin_width, rounding_mode="floor"), 0, last)
        dst_bin_of_begin_center = (dst_bin_of_begin + 0.5) * dst_bin_width
        dst_bin_of_end = torch.clamp(torch.div(src_bin_end, dst_bin_width, rounding_mode="floor"), 0, last)
        density = self.histogram / bin_width
        norm = torch.zeros(len(batch), self.bins)
        norm += self._get_norm(src_bin_begin - dst_bin_of_begin_center, torch.ones(self.bins) * half, density)
        norm += (dst_bin_of_end - dst_bin_of_begin - 1) * self._get_norm(neg_half, half, density)
        dst_bin_of_end_center = dst_bin_of_end * dst_bin_width + half
        norm += self._get_norm(neg_half, src_bin_end - dst_bin_of_end_center, density)
        return norm.sum(dim=1).tolist()


def with_fast_histograms(config):
    """A pt2e QuantizationConfig with its HistogramObservers replaced by FastHistogramObserver."""
    import dataclasses

    def swap(spec):
        ctr = getattr(spec, "observer_or_fake_quant_ctr", None)
        partial = getattr(ctr, "p", None)
        if partial is None or partial.func is not HistogramObserver:
            return spec
        return dataclasses.replace(spec, observer_or_fake_quant_ctr=FastHistogramObserver.with_args(**partial.keywords))

    return dataclasses.replace(config, input_activation=swap(config.input_activation),
                               output_activation=swap(config.output_activation))
