"""``python -m lightning_deblur batch``: many images × many seeds, on many devices and nodes.

Every job (one input image, one seed) is an independent ``fit`` run in a process of its
own (``python -m lightning_deblur fit …``): a crashing job takes nothing else down, and
each gets a clean CUDA context. Nothing is ever data-parallel; several jobs share a
device with ``--jobs_per_device``.

- **Jobs.** The inputs are the rows of a manifest (:mod:`lightning_deblur.core.manifest`) or
  the images of a folder with one kernel size. Jobs are sorted by (input name, seed); job
  ``k`` deblurs one input with ``--seed_everything k`` into ``<output_dir>/<name>/seed<k>/``
  (the TensorBoard run folder of that job: ``tensorboard --logdir <output_dir>`` lists
  the runs grouped by input).
- **Devices.** ``--devices N`` gives N device slots, each a GPU (``CUDA_VISIBLE_DEVICES``)
  or one share of the CPU cores, each running ``--jobs_per_device M`` jobs at once. One
  pool of ``N·M`` threads runs the jobs, each thread one ``fit`` process at a time on a
  free slot, so a slow job holds up nothing but its own slot.
- **Nodes.** Under torchrun, SLURM (``srun``) or a SLURM job array, each process takes the
  jobs ``i`` with ``i % world_size == rank`` (:mod:`lightning_deblur.commands.ranks`).
- **Resume.** A job is finished when its folder holds ``metrics.json`` (written last and
  atomically by :class:`~lightning_deblur.job.outputs.ResultWriter`) with status ``done``.
  Finished jobs are skipped; a job killed or stopped mid-way (a time budget, a signal)
  resumes from its checkpoint if it has one (a checkpoint that does not load: over again,
  said on stderr), any other job folder is emptied and its job run again, so failed and
  interrupted jobs are retried by running the same command again.
- **Summary.** ``<output_dir>/summary.csv``, rewritten atomically as jobs finish: one row
  per job, finished earlier or now, with its status, error, device, times and figures.

The parts: :mod:`.cli` (the options and inputs), :mod:`.jobs` (jobs and their ``fit``
arguments), :mod:`.runner` (one batch: :func:`~.runner.check_fit_options` before
anything runs, :func:`~.runner.scan_finished` to resume, the summary and exit code),
:mod:`.slots` (devices), :mod:`.processes` (the ``fit`` processes and the thread pool),
:mod:`.summary` (``metrics.json`` and ``summary.csv``).
"""

from lightning_deblur.commands.batch.cli import batch, command

__all__ = ["batch", "command"]
