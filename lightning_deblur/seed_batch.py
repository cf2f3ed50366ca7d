"""Several seeds of one image as one batched job: ``fit … --seeds 0-7``.

A :class:`SeedBatchJob` holds one :class:`~lightning_deblur.job.DeblurJob` per seed and
trains them in lockstep. Each training step draws every job's input perturbation, runs
the R image nets as one batched call (``torch.func``: the jobs' parameters stacked along
a new leading dimension, ``vmap`` over ``functional_call``), the R kernel nets and the R
losses likewise, and sums the jobs' losses.
The sum keeps the jobs independent: each job's gradient is that of its own loss, and
Adam updates every parameter element by element, so one Adam over all jobs' parameters
takes the same steps as R Adams. Everything else, the stage changes and re-fits, the
starts, centring, the verdict and the result files, runs per job through the job's own
code, inside the job's own random stream (:class:`RandomStreams`), so job ``r`` draws
exactly what a separate ``fit --seed_everything seeds[r]`` draws. Results then agree
with separate runs up to floating-point summation order (batched convolutions add in
another order): ``tests/test_seed_batch.py`` checks this.

Each job writes its files into ``<run folder>/seed<k>/`` as a separate run would write
them into its run folder; TensorBoard gets one event file with every job's scalars and
images under ``seed<k>/`` and the batch's summed loss as ``loss``.

Why batch at all: a GPU runs R small nets at once in about the time of one (2.4×
the seed-steps per second for the image nets' step at R = 8 on 96×96 images on an H200,
docs/RESULTS.md); on the CPU measured here the batched step was 22–28 % slower than R
separate steps and whole jobs ran at 0.75× the seeds per hour, so on a CPU separate jobs
(``batch`` runs them in parallel) remain the better choice.

Limits: every job runs the same plan (same image, same options), in lockstep, so a job
that fails (the divergence guard) stops the batch: its folder says ``failed``, the
others' ``stopped``, with their estimates so far and the advice to run them again on
their own (``batch --seeds_per_job`` does). A killed batch resumes from its checkpoint
(``--ckpt_path`` with the same ``--seeds``).
"""

from __future__ import annotations

import copy
from contextlib import contextmanager
from pathlib import Path

import torch
from lightning.pytorch import LightningModule, Trainer
from torch.func import functional_call, vmap

from lightning_deblur.checkpointing import StopOnSignal
from lightning_deblur.errors import InputError
from lightning_deblur.generators import make_adam
from lightning_deblur.job import DeblurJob, planned_observation
from lightning_deblur.multiscale import ScaleTransition
from lightning_deblur.planning import JobPlan, Scale
from lightning_deblur.precision import activation_bytes


def check_float32(precision, option: str) -> None:
    """Refuse a 16-bit ``precision`` for seed batches (``option``: the command-line option
    that asked for them): autocast does not reach the batched convolutions vmap makes of
    the nets' (see :meth:`SeedBatchJob._batched`).

    Raises:
        InputError: ``precision`` is a 16-bit one.
    """
    if activation_bytes(precision) != 4:
        raise InputError(
            f"{option} runs seed batches in float32, not {precision} (autocast does not reach the seeds' batched "
            "convolutions); leave --trainer.precision unset or give 32-true"
        )


def check_no_restarts(restarts: int, option: str, otherwise: str) -> None:
    """Refuse restarts for seed batches (``option``: the command-line option that asked for
    them): a restart lengthens one seed's plan, and a batch's seeds run in step.
    ``otherwise`` is the other way out the error suggests.

    Raises:
        InputError: ``restarts`` is not 0.
    """
    if restarts:
        raise InputError(f"{option} runs its seeds in step, so without restarts: set --model.restarts 0, or {otherwise}")


class RandomStreams:
    """One random stream per job: the state torch's global generators (CPU, and the
    CUDA device's when ``device`` is one) would have in a separate run seeded with that
    job's seed, swapped in around each of the job's random draws.

    Args:
        seeds: one seed per job.
        device: where the jobs run; a CUDA device's generator is kept per job too.
    """

    def __init__(self, seeds: list[int], device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self.devices = [device] if self.cuda else []
        self.states: list[tuple] = []
        with torch.random.fork_rng(devices=self.devices):
            for seed in seeds:
                torch.manual_seed(seed)  # as Lightning's seed_everything seeds torch
                self.states.append(self._current())

    def _current(self) -> tuple:
        cuda = torch.cuda.get_rng_state(self.devices[0]) if self.cuda else None
        return torch.get_rng_state(), cuda

    def _set(self, state: tuple) -> None:
        torch.set_rng_state(state[0])
        if self.cuda:
            torch.cuda.set_rng_state(state[1], self.devices[0])

    @contextmanager
    def of(self, index: int):
        """Run the block with job ``index``'s stream as torch's global one."""
        outer = self._current()
        self._set(self.states[index])
        try:
            yield
        finally:
            self.states[index] = self._current()
            self._set(outer)


class SeedBatchJob(LightningModule):
    """R seeds of one deblurring job trained as one model (see the module's docstring).

    Args:
        job: the job every seed runs (not yet built); each seed gets a copy.
        seeds: the seeds, one job each, distinct.
        folder: the folder that holds the jobs' folders ``seed<k>``; default the run
            folder (``batch`` puts them beside each other, as its separate jobs are).
        vectorize: run the nets and losses as batched calls; ``False`` calls them one
            after another, which computes exactly what separate jobs compute (bit for bit
            on the same machine): the reference the batched calls are tested against.
    """

    def __init__(
        self, job: DeblurJob, seeds: list[int], folder: str | Path | None = None, vectorize: bool = True
    ) -> None:
        super().__init__()
        self.vectorize = vectorize
        if len(set(seeds)) != len(seeds) or not seeds:
            raise InputError(f"--seeds needs distinct seeds, got {seeds}")
        check_no_restarts(job.restarts, "--seeds", "run the seeds as separate jobs")
        self.seeds = list(seeds)
        self.folder = None if folder is None else Path(folder)
        self.members = torch.nn.ModuleList(copy.deepcopy(job) for _ in self.seeds)
        for seed, member in zip(self.seeds, self.members):
            member.log_prefix = f"seed{seed}/"
            member.batch_record = {"seed": seed, "batched_seeds": self.seeds}
        self.streams: RandomStreams | None = None
        # Kept out of the module tree (a dict, not an attribute): the template's own
        # weights are never used, and must not enter checkpoints or the optimizer.
        self._templates: dict[tuple, torch.nn.Module] = {}

    # --------------------------------------------------- what callbacks read
    @property
    def jobs(self) -> tuple[DeblurJob, ...]:
        """The jobs, one per seed, in the order of :attr:`seeds`."""
        return tuple(self.members)

    @property
    def lead(self) -> DeblurJob:
        """The first job; the jobs run in lockstep, so its stage is every job's stage."""
        return self.members[0]

    @property
    def plan(self) -> JobPlan | None:
        return self.lead.plan

    @plan.setter
    def plan(self, plan: JobPlan) -> None:
        for member in self.members:
            member.plan = plan

    @property
    def most_steps(self) -> int:
        """Steps the batch can take: its plan's (its jobs have no restarts)."""
        return self.plan.total_steps

    def plan_on(self, observation, trainer, copies: int | None = None) -> JobPlan:
        """One job's plan, with the memory of every seed's activations counted."""
        return self.lead.plan_on(observation, trainer, copies=copies or len(self.seeds))

    @property
    def current_scale(self) -> Scale:
        return self.lead.current_scale

    @property
    def scale_index(self) -> int:
        return self.lead.scale_index

    @property
    def step_in_scale(self) -> int:
        return self.lead.step_in_scale

    @property
    def is_finest_scale(self) -> bool:
        return self.lead.is_finest_scale

    @property
    def loss_weights(self) -> dict[str, float]:
        return self.lead.loss_weights

    @loss_weights.setter
    def loss_weights(self, weights: dict[str, float]) -> None:
        for member in self.members:
            member.loss_weights = dict(weights)

    @property
    def failure(self) -> str | None:
        """The first failed job's reason, with its seed, or ``None``."""
        for seed, member in zip(self.seeds, self.members):
            if member.failure is not None:
                return f"seed {seed}: {member.failure}"
        return None

    @property
    def stopped_early(self) -> bool:
        """Whether the batch ended before its plan's end without a failed job."""
        return self.failure is None and self.plan is not None and self.global_step < self.plan.total_steps

    @property
    def reached_step_limit(self) -> bool:
        return self.lead.reached_step_limit

    @property
    def stop_signal(self) -> int | None:
        return self.lead.stop_signal

    @property
    def latest_loss(self) -> torch.Tensor | None:
        """The jobs' summed loss of the latest step."""
        losses = [member.latest_loss for member in self.members]
        return None if any(loss is None for loss in losses) else torch.stack(losses).sum()

    @property
    def latest_psnr(self) -> torch.Tensor | None:
        """The jobs' mean PSNR of the latest step (with a sharp reference)."""
        values = [member.latest_psnr for member in self.members]
        return None if any(value is None for value in values) else torch.stack(values).mean()

    # ------------------------------------------------------------ set-up
    def setup(self, stage: str) -> None:
        for member in self.members:
            member.take_step_limit(self.trainer)
        observation = planned_observation(self, self.trainer)
        folder = self.folder or Path(self.trainer.log_dir or self.trainer.default_root_dir)
        if self.streams is None:
            self.streams = RandomStreams(self.seeds, self.trainer.strategy.root_device)
        for index, member in enumerate(self.members):
            # The jobs are not the trainer's module; they read the step count through it.
            member.trainer = self.trainer
            member.member_folder = folder / f"seed{self.seeds[index]}"
            with self.streams.of(index):
                member.build(observation)
        self.lead.limit_steps_to_plan()  # the jobs share one plan

    def configure_optimizers(self) -> dict:
        """One Adam over every job's parameter groups (``seed<k>/image``,
        ``seed<k>/kernel``) and the jobs' learning-rate schedule, as
        :meth:`DeblurJob.configure_optimizers` sets them up for one job."""
        groups = []
        for member in self.members:
            spec = member.optimizer_spec
            groups.append({"params": member.image_net.parameters(), "lr": spec.image_lr, "name": f"{member.log_prefix}image"})
            if member.kernel_net is not None:
                groups.append({"params": member.kernel_net.parameters(), "lr": spec.kernel_lr, "name": f"{member.log_prefix}kernel"})
        optimizer = make_adam(groups, self.lead.optimizer_spec.fused)
        return {"optimizer": optimizer, "lr_scheduler": self.lead.lr_schedule.scheduler(optimizer, self.is_finest_scale)}

    def configure_callbacks(self) -> list:
        return [SeedBatchTransition(), StopOnSignal()]

    def on_fit_start(self) -> None:
        for member in self.members:
            member.apply_memory_format()

    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        # After the callbacks' hooks: the divergence guard has judged every job.
        failure = self.failure
        if failure is None:
            return
        for seed, member in zip(self.seeds, self.members):
            if member.failure is None and member.stop_reason is None:
                member.stop_reason = (
                    f"{failure}, which stops its seed batch; run seed {seed} again on its own (--seed_everything {seed})"
                )

    # -------------------------------------------------------------- step
    def training_step(self, batch: int, batch_idx: int) -> torch.Tensor:
        inputs = []
        for index, member in enumerate(self.members):
            with self.streams.of(index):
                inputs.append(member.image_input(perturb=True))
        images, kernels = self.image_nets(torch.cat(inputs)), self.kernels()
        if self.vectorize and self.lead.kernel_prefilter is None:
            # Every job's loss in one call: the jobs share the observation, the stage and
            # the loss settings, so the lead job's loss is each job's. (The shock-filter
            # variant, rejected by the method's authors, keeps the loop.)
            totals, terms = vmap(lambda x, k: self.lead.loss(x.unsqueeze(0), k))(images, kernels)
            losses = [(totals[index], {name: value[index] for name, value in terms.items()}) for index in range(len(self.seeds))]
        else:
            losses = [member.loss(images[index : index + 1], kernels[index]) for index, member in enumerate(self.members)]
        for index, member in enumerate(self.members):
            loss, job_terms = losses[index]
            for name, value in member.record_step(images[index : index + 1], kernels[index], loss, job_terms).items():
                self.log(member.log_prefix + name, value, batch_size=1)
        total = torch.stack([loss for loss, _ in losses]).sum()
        self.log("loss", total, batch_size=1)
        return total

    def image_nets(self, inputs: torch.Tensor) -> torch.Tensor:
        """Every job's G_x on its own input.

        Args:
            inputs: ``(R, input_channels, H', W')``, job ``r``'s input in row ``r``.

        Returns:
            ``(R, C, H', W')``; gradients flow to each job's own parameters.
        """
        nets = [member.image_net for member in self.members]
        if not self.vectorize:
            return torch.cat([net(inputs[index : index + 1]) for index, net in enumerate(nets)])
        return self._batched(nets, inputs, batched_input=True)

    def kernels(self) -> torch.Tensor:
        """Every job's current kernel, ``(R, kh, kw)``: G_k's outputs, or the fixed kernels."""
        if self.lead.kernel_net is None or not self.vectorize:
            return torch.stack([member.kernel() for member in self.members])
        z_k = torch.stack([member.z_k for member in self.members])
        return self._batched([member.kernel_net for member in self.members], z_k, batched_input=False)

    def _batched(self, nets: list[torch.nn.Module], inputs: torch.Tensor, batched_input: bool) -> torch.Tensor:
        """The nets (one per job, one structure) on their inputs (row ``r`` for net ``r``)
        as one call: their parameters stacked along a new first dimension, ``vmap`` over
        ``functional_call``. ``batched_input``: each net takes a batch of one (G_x), so
        its row gets that dimension back; else it takes the row as it is (G_k's ``z_k``).

        Float32 only: autocast does not reach the batched convolutions vmap makes of the
        nets' (a bf16 activation then meets a float32 weight), so the command line runs
        seed batches in ``32-true`` (on the GPUs measured, float32 was the faster anyway).
        """
        names = [name for name, _ in nets[0].named_parameters()]
        # torch.stack, not torch.func.stack_module_state: the stack is differentiable, so
        # each job's gradient lands on its own parameters, which its optimizer and
        # re-fits own.
        stacked = {name: torch.stack(group) for name, group in zip(names, zip(*(net.parameters() for net in nets)))}
        template = self._template_like(nets[0])

        def one_net(parameters: dict, net_input: torch.Tensor) -> torch.Tensor:
            if batched_input:
                return functional_call(template, parameters, (net_input.unsqueeze(0),)).squeeze(0)
            return functional_call(template, parameters, (net_input,))

        return vmap(one_net)(stacked, inputs)

    def _template_like(self, net: torch.nn.Module) -> torch.nn.Module:
        """A copy of ``net``'s structure to call with stacked parameters, made once per
        structure (the image and the kernel net; a new output layer makes a new one). Its
        batch norms keep no running statistics: a job's steps normalize with the batch's
        own statistics, and vmap cannot update one shared buffer from R jobs."""
        key = (type(net).__name__, *((name, tuple(p.shape)) for name, p in net.named_parameters()))
        if key not in self._templates:
            template = copy.deepcopy(net).requires_grad_(False)
            torch.func.replace_all_batch_norm_modules_(template)
            # Only the current structures: each stage change may bring new ones.
            self._templates = {k: v for k, v in self._templates.items() if k[0] != key[0]}
            self._templates[key] = template
        return self._templates[key]

    # ------------------------------------------------------- checkpoints
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """Each job's stage state (as a separate job saves it) and its random stream."""
        jobs = []
        for member in self.members:
            state: dict = {}
            member.on_save_checkpoint(state)
            jobs.append(state)
        checkpoint["seed_batch"] = {"seeds": self.seeds, "jobs": jobs, "streams": self.streams.states}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        state = checkpoint.get("seed_batch")
        if state is None or state["seeds"] != self.seeds:
            saved = None if state is None else state["seeds"]
            raise InputError(f"this checkpoint holds seeds {saved}, not {self.seeds}; resume with the seeds it was made with")
        for member, job_state in zip(self.members, state["jobs"]):
            member.on_load_checkpoint(job_state)
        self.streams.states = list(state["streams"])


class SeedBatchTransition(ScaleTransition):
    """:class:`ScaleTransition` for every job of a :class:`SeedBatchJob`, each within its
    own random stream, with one new optimizer for all after a stage change."""

    def on_train_start(self, trainer: Trainer, pl_module: SeedBatchJob) -> None:
        if pl_module.global_step != 0:
            return
        for index, job in enumerate(pl_module.jobs):
            with pl_module.streams.of(index):
                if self._fit_initial_kernel(job):
                    self._log_refit(trainer, job, include_image=False)

    def on_train_batch_end(self, trainer: Trainer, pl_module: SeedBatchJob, outputs, batch, batch_idx: int) -> None:
        entered = None
        for index, job in enumerate(pl_module.jobs):
            with pl_module.streams.of(index):
                entered = self.advance(trainer, job) or entered
        if entered is None:
            return
        trainer.strategy.setup_optimizers(trainer)
        for job in pl_module.jobs:
            self._log_refit(trainer, job, include_image=entered.start is None)
