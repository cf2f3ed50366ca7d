"""``python -m lightning_deblur figures KIND …``: PNG figures of evaluations and experiments.

Kinds (``figures KIND --help`` lists every option; each accepts ``--config file.yaml``)::

    figures histogram --runs eval/runs.csv [--methods '[original, improved]']
                      [--metric aligned_isnr] [--bins 20] [--output isnr_histogram.png]
    figures seeds     --runs eval/runs.csv --input NAME [--methods …]
                      [--metric aligned_psnr] [--output seeds.png]
    figures inputs    --runs eval/runs.csv [--methods …] [--metric aligned_isnr]
                      [--output inputs.png]
    figures fit_speed (--manifest data/manifest.csv [--input NAME] | --sharp s.png --blurred b.png)
                      [--iterations 2000] [--channels 128] [--skip_channels 16] [--levels 5]
                      [--lr 0.01] [--seed 0] [--device auto] [--output fit_speed.png]
    figures curves    --logs runs/orig/img/seed0 runs/impr/img/seed0 [--labels '[original, improved]']
                      [--tag psnr] [--output psnr_curves.png]
    figures curve_bands --results original=runs/orig improved=runs/impr
                      [--column aligned_psnr] [--output curve_bands.png]
    figures gallery   --runs logs/a/version_0 logs/b/version_0 [--true_kernels '[k.npy, none]']
                      [--labels '[a, b]'] [--output gallery.png]

- ``histogram``: histograms of one column of ``evaluate``'s ``runs.csv`` (default the
  aligned ISNR) per method, on common bins, each method's mean marked: overlaid for up to
  three methods, one panel per method over a shared axis for more.
- ``seeds``: the spread over seeds on one input: per method a box plot with every run as
  a point (slightly jittered), default the aligned PSNR, with the blurred input's aligned
  PSNR as a dashed line (ISNR: the 0 dB line).
- ``inputs``: every run of every input at once, the inputs along the axis and the
  methods side by side within each, a point per run and a bar at each method's mean over
  the seeds; for the ISNR, the failure threshold (1 dB) as a dashed line. It shows where
  a method fails and how far its seeds spread, input by input.
- ``fit_speed``: the image net alone fitted to a sharp image and to its blurred version
  (:mod:`lightning_deblur.core.fit_experiment`), RMSE per iteration on a log scale; the curves
  are also written as CSV next to the PNG (``iteration,rmse_sharp,rmse_blurred``). From a
  manifest it takes the row named ``--input`` (default the first): its ``sharp`` and its
  ``image`` (the blurred, noisy observation).
- ``curves``: a scalar (default ``psnr``, logged when a job has a sharp reference) over
  iterations from TensorBoard logs; each ``--logs`` entry is a run folder, an event file,
  or a folder searched for run folders (each run folder found is one curve).
- ``curve_bands``: a column of the runs' ``curve.csv`` (default the aligned PSNR) over
  iterations, median and quartiles over every run of each method.
- ``gallery``: finished runs side by side, a row each: blurred input, deblurred result,
  estimated kernel, true kernel and sharp reference (the last two where known), with the
  PSNR and aligned ISNR of ``metrics.json`` in the titles.

List options (``--methods``, ``--logs``, ``--labels``, ``gallery``'s ``--runs`` and
``--true_kernels``) take space-separated values, a list (``'[a, b]'``) or repeated
``--logs+ x``. Every PNG is written atomically and its path printed. matplotlib is
needed (``pip install 'lightning-deblur[plots]'``); it is imported only when a figure is
drawn, without pyplot (no display, no global state).
"""

from __future__ import annotations

from lightning_deblur.commands.evaluate import spread_list_option
from lightning_deblur.commands.figures.curves import curve_bands, curves
from lightning_deblur.commands.figures.evaluated import histogram, inputs, seeds
from lightning_deblur.commands.figures.fit_speed import fit_speed
from lightning_deblur.commands.figures.gallery import gallery
from lightning_deblur.commands.function_cli import function_parser, options_of


KINDS = {
    "histogram": histogram,
    "seeds": seeds,
    "inputs": inputs,
    "fit_speed": fit_speed,
    "curves": curves,
    "curve_bands": curve_bands,
    "gallery": gallery,
}
"""``figures`` subcommands and the functions that draw them."""

_LIST_OPTIONS = ("--methods", "--logs", "--labels", "--results", "--runs", "--true_kernels")


def command(argv: list[str]) -> None:
    """``python -m lightning_deblur figures KIND …``."""
    from jsonargparse import ArgumentParser

    parser = ArgumentParser(
        prog="python -m lightning_deblur figures",
        description=(
            "Draw a figure (PNG): histogram, seeds, inputs, fit_speed, curves, curve_bands or gallery; "
            "see `figures KIND --help`."
        ),
    )
    subcommands = parser.add_subcommands(dest="kind")
    for name, function in KINDS.items():
        subcommands.add_subcommand(name, function_parser(function), help=function.__doc__.split("\n")[0])
    for option in _LIST_OPTIONS:
        argv = spread_list_option(argv, option)
    config = parser.parse_args(argv)
    kind = config.kind
    options = options_of(config[kind])
    written = KINDS[kind](**options)
    for path in written if isinstance(written, tuple) else (written,):
        print(path)
