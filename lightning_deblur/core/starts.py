"""Several starts of the coarsest scale: the no-reference score that decides which one a
job continues from.

With ``--model.starts R`` a blind job runs its coarsest scale R times, each from fresh
generators (new weights, new ``z_x`` and ``z_k``, the initial kernel fit redone), and
continues to the finer scales from the start with the highest :attr:`StartRecord.score`.
The job holds the stage state (:meth:`~lightning_deblur.job.stages.JobStages.end_start`);
this module only judges one start.

Why this score. On the full-fidelity bank (benchmarks/no_reference_scores/start_score_evidence.py, 16 runs
each of ``fast`` and ``improved``, two seeds per input), of the signals a job has at the
end of its coarsest scale, the kernel's border-to-peak ratio told the better of an input's
two seeds best: the seed with the lower ratio ended with the higher final aligned ISNR in
7 of 8 inputs for ``fast`` and 6 of 8 for ``improved`` (rank correlation within inputs
−0.83 and −0.39). The data term (lower wins 7/8 and 5/8) and the kernel peak (higher
wins 6/8 and 6/8) came next; the sharpness gain and the coarse scale's own aligned PSNR
against the sharp image (which a job does not have) told little (4–5 of 8).
(benchmarks/no_reference_scores/results/start_score_evidence.md; measured with ``starts 3``: docs/RESULTS.md.) A kernel reaching its
support's border at the coarsest scale is a spread kernel held by the prior, which the
finer scales inherit. The other signals are recorded with every start, for the next
calibration.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from lightning_deblur.core.centring import border_ratio
from lightning_deblur.core.physics import blur_valid, crop_to_observation
from lightning_deblur.core.verdict import gradient_energy


@dataclass
class StartRecord:
    """What one start of the coarsest scale ended with.

    Attributes:
        score: the no-reference score, higher is better: minus ``kernel_border``.
        kernel_border: largest kernel value on the outermost rows/columns over its peak
            (as :class:`~lightning_deblur.core.verdict.Verdict` has it).
        kernel_peak: largest value of the kernel (summing to 1).
        sharpness_gain: mean squared gradient of the estimate over that of the
            observation at this scale.
        data_mse: mean squared difference between the re-blurred estimate and the
            observation at this scale ([0, 1] intensities).
    """

    score: float
    kernel_border: float
    kernel_peak: float
    sharpness_gain: float
    data_mse: float

    def as_metrics(self) -> dict:
        """One entry of ``metrics.json``'s ``starts`` list (rounded)."""
        return {key: round(value, 6) for key, value in asdict(self).items()}


@torch.no_grad()
def score_start(observation: torch.Tensor, x: torch.Tensor, kernel: torch.Tensor) -> StartRecord:
    """Judge the estimates a start of the coarsest scale ended with.

    Args:
        observation: the observation at that scale, ``(1, 1, h, w)`` in [0, 1].
        x: the image estimate on its support, ``(1, 1, h+kh-1, w+kw-1)``.
        kernel: ``(kh, kw)``, non-negative, sums to 1.
    """
    x, kernel, observation = x.detach().float(), kernel.detach().float(), observation.detach().float()
    border = border_ratio(kernel)
    estimate = crop_to_observation(x, tuple(kernel.shape))
    sharpness = gradient_energy(estimate) / gradient_energy(observation).clamp_min(1e-12)  # float64
    data_mse = ((blur_valid(x, kernel) - observation) ** 2).mean()
    peak = float(kernel.max()) / float(kernel.double().sum())
    return StartRecord(-border, border, peak, float(sharpness), float(data_mse))


def best_start(records: list[StartRecord]) -> int:
    """Index of the highest-scoring start (the earliest among equals)."""
    return max(range(len(records)), key=lambda index: (records[index].score, -index))
