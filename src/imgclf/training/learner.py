"""Training: a Learner runs a plan of phases (plan.py) in a loop that reads top to bottom.

Every run, whatever its phases (the probe, head-only epochs, whole-network epochs), does the
same things in the same order: print and save the resolved settings, then after each epoch
validate through the one forward loop (inference/loop.py), keep the best weights, write a
checkpoint and call the callbacks, and at the end write the model file. An interrupted run
loses at most one epoch: ``Learner.resume(folder, data)`` continues it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch

from imgclf._files import FolderLock, write_json
from imgclf._progress import console
from imgclf.backbones import get_backbone
from imgclf.config import HeadConfig, TrainConfig, UnknownConfig
from imgclf.data.imagedata import ImageData
from imgclf.evaluation.metrics import Evaluation, evaluate, evaluation_of, items_to_evaluate
from imgclf.evaluation.multilabel import MultiLabelEvaluation
from imgclf.inference import loop
from imgclf.inference.explain import NEIGHBOURS, Explanation
from imgclf.inference.prediction import Prediction
from imgclf.inference.predictor import Predictor
from imgclf.model import MODEL_PREFIX, Classifier
from imgclf.modelfile import FINAL, ModelInfo, save_model
from imgclf.training import steps
from imgclf.training.callbacks import ConsoleLog
from imgclf.training.checkpoint import (BEST, CHECKPOINT, HISTORY, SETTINGS, read_run,
                                        run_settings, save_checkpoint)
from imgclf.training.distributed import (agree, device_of, main_first, parallel_module,
                                         processes, resolve_device)
from imgclf.training.embeddings import (cached_outputs, fit_probe, fit_unknown,
                                        label_thresholds)
from imgclf.training.fitting import PhaseFitter
from imgclf.training.frozen import FrozenFront, TrainingViews, ValidationStart
from imgclf.training.lr_find import LearningRates, find_learning_rate
from imgclf.training.plan import (DISCRIMINATIVE, Phase, fine_tune_phases, one_cycle,
                                  probe_phase, probe_views, reuses, small_epochs,
                                  time_limit, train_sizes)

__all__ = ["BEST", "CHECKPOINT", "FINAL", "Learner", "LearningRates", "one_cycle"]

METRICS = ("valid_loss", "accuracy", "error_rate")


class Learner:
    """A network, its data and how it trains: fine_tune, fit_one_cycle, probe, lr_find, export.

    Example:
        >>> data = ImageData.from_folder("hymenoptera")
        >>> learner = Learner.create(data, output="models/ants")
        >>> learner.fine_tune(4)
        >>> learner.predict("ant.jpg").label
        'ants'
    """

    def __init__(self, data: ImageData, network: Classifier, *, config: TrainConfig = TrainConfig(),
                 output: str | os.PathLike | None = None, callbacks: Sequence[Any] = (),
                 verbose: bool = True):
        self.data = data
        # under torchrun, one of several processes (distributed.py); only the first writes
        device = resolve_device(config.device)
        self.processes = processes(cuda=device.type == "cuda")
        self.device = device_of(self.processes, device)
        if not self.processes.main:
            output, verbose = None, False
        # precision and freeze_early decided for this device: the run's settings say which
        config, note = steps.resolved(config, self.device)
        if note and verbose:
            console().print(f"[yellow]{note}")
        self.config = config
        # channels_last: 1.5x faster training on CPU (bench/backbone_speed.py, README)
        self.network = network.to(self.device, memory_format=torch.channels_last)
        # what its scores mean follows the data (a network built elsewhere included)
        self.network.multi_label = data.multi_label
        self.output = Path(output) if output is not None else None
        self.callbacks = [*([ConsoleLog()] if verbose else []), *callbacks]
        self.verbose = verbose
        self.history: list[dict[str, Any]] = []
        self.best: dict[str, Any] | None = None
        # the "unknown" detector's settings, once fitted when the run ends
        self.unknown: UnknownConfig | None = None
        self._best_state: dict[str, torch.Tensor] | None = None
        self._restored_best = False  # True once the network holds the best epoch's weights
        # may the backbone differ from the pretrained one the embedding cache was made with?
        # (then cached embeddings are stale) Yes for a network built elsewhere; create() and
        # resume() know better
        self._backbone_trained = True
        # validation embeddings of the last and of the best epoch: the detector's calibration
        self._valid_embeddings: np.ndarray | None = None
        self._best_valid_embeddings: np.ndarray | None = None
        # ... and their targets: a multi-label model's thresholds are chosen on them
        self._valid_targets: np.ndarray | None = None
        self._best_valid_targets: np.ndarray | None = None
        # multi-label: each label's decision threshold (best_thresholds), once training ends
        self.thresholds: tuple[float, ...] = ()
        # freeze_early's frozen stages run by onnxruntime (frozen_runtime "onnx"), or None
        self._front = (FrozenFront(self.network, show_progress=verbose)
                       if config.frozen_runtime == "onnx" else None)
        self._valid_start = ValidationStart(front=self._front)  # validation's stored features
        self._started = time.perf_counter()  # when the current run began (the time limit)
        self._out_of_time = ""  # why the time limit ended a run, when it did
        # (frozen, the module a training step runs): DistributedDataParallel's wrapper of the
        # head or the network while a phase runs in several processes
        self._parallel: tuple[bool, torch.nn.Module] | None = None
        self._train_from = 0  # the stage training steps start at (frozen.TrainingViews)
        # train(backbone="auto"): the candidates' probes (modes.choose_backbone), or None
        self.backbone_choice: list[dict[str, Any]] | None = None

    @classmethod
    def create(cls, data: ImageData, *, head: HeadConfig = HeadConfig(),
               config: TrainConfig = TrainConfig(), **options) -> Learner:
        """A new learner: data.backbone with ImageNet weights, a new head, backbone frozen."""
        torch.manual_seed(config.seed)  # the head's initial weights
        network = Classifier.create(data.backbone, len(data.classes), head=head,
                                    weights=data.weights, multi_label=data.multi_label)
        network.freeze()
        learner = cls(data, network, config=config, **options)
        learner._backbone_trained = False  # the pretrained backbone, until a phase trains it
        return learner

    # --- plans ----------------------------------------------------------------------------

    def fine_tune(self, epochs: int | None = None, *, freeze_epochs: int | None = None,
                  learning_rate: float | None = None, head_learning_rate: float | None = None
                  ) -> Learner:
        """Train the head alone, then the whole network with discriminative learning rates.

        Each phase is a one-cycle schedule. In the whole-network phase the head peaks at
        learning_rate and earlier layer groups at 1/10 and 1/100 of it. Defaults come from
        the learner's TrainConfig.

        Example:
            >>> learner.fine_tune(4, freeze_epochs=2, learning_rate=1e-3)
        """
        return self.fit(fine_tune_phases(self.config, epochs=epochs, freeze_epochs=freeze_epochs,
                                         learning_rate=learning_rate,
                                         head_learning_rate=head_learning_rate))

    def fit_one_cycle(self, epochs: int, learning_rate: float | Sequence[float] | None = None
                      ) -> Learner:
        """One one-cycle schedule over the layers that are trainable now (the public lower layer).

        learning_rate: one rate for every group, or one per group (early to late, head last).
        """
        rate = learning_rate or self.config.learning_rate
        frozen = self.network.frozen
        groups = 1 if frozen else len(DISCRIMINATIVE)
        rates = tuple(rate) if isinstance(rate, Sequence) else (rate,) * groups
        return self.fit([Phase("fit", epochs, rates, frozen=frozen)])

    def probe(self, *, views: int | None = None) -> Learner:
        """Fit the head's linear layer on cached backbone embeddings, in seconds.

        The backbone is unchanged. views: embeddings per training picture (the plain view
        plus views - 1 seeded augmentations); by default 4 when a class has fewer than 20
        training pictures, else 1 (see plan.PROBE_VIEWS).

        Example:
            >>> Learner.create(data).probe().predict("ant.jpg").label
            'ants'
        """
        return self.fit([probe_phase(views)])

    def fit(self, plan: list[Phase], *, started: float | None = None) -> Learner:
        """Run a plan of phases from its start (what fine_tune, probe and train call).

        started: when the run began (time.perf_counter()), if earlier work counts toward the
        time limit (train's backbone choice)."""
        return self._run(plan, started=started)

    # --- the loop -------------------------------------------------------------------------

    def _run(self, plan: list[Phase], *, start: tuple[int, int] = (0, 0),
             optimizer_state: dict | None = None, started: float | None = None) -> Learner:
        """Run phases from (phase, epoch); the heart of training, top to bottom."""
        with self._holding_output() as lock:  # one run at a time writes an output folder
            if lock is not None and lock.previous and self.verbose:
                console().print(f"(The lock left in {self.output} by process "
                                f"{lock.previous.get('pid')}, which ended, was taken over.)")
            self.network.detector, self.unknown = None, None  # refitted when this run ends
            self._started = time.perf_counter() if started is None else started
            self._save_settings(plan)
            self._call("on_train_start", learner=self, plan=plan)
            start_phase, start_epoch = start
            try:
                for index in range(start_phase, len(plan)):
                    if plan[index].kind == "probe":
                        self._run_probe(plan, index)
                        continue
                    resumed = index == start_phase
                    first_epoch = start_epoch if resumed else 0
                    # a probe that leaves too little to gain ends the plan before the schedule
                    # after it (also when a run resumes there)
                    why = self._probe_is_right(plan, index - 1) if not first_epoch else None
                    if why is None:
                        why = self._run_one_cycle(plan, index, first_epoch,
                                                  optimizer_state if resumed else None)
                    if why is None and index < len(plan) - 1 and plan[index].compare_at_end:
                        stop = steps.not_helping(self.config, self.history, self.best)
                        if agree(self.processes, stop is not None):
                            why = stop or "Stopping early, as the first process decided."
                    if why is not None:
                        self._stop_early(plan, why)
                        break
            except KeyboardInterrupt:
                self._call("on_train_interrupted", learner=self, reason="Interrupted")
                raise
            except Exception:
                self._call("on_train_interrupted", learner=self, reason="Training failed")
                raise
            self._finish()
        return self

    def _holding_output(self):
        """The output folder's lock (refusing if another run holds it), or nothing to hold."""
        return (FolderLock(self.output, "imgclf training run") if self.output is not None
                else nullcontext())

    def _stop_early(self, plan: list[Phase], why: str) -> None:
        """End the plan here: say why, and mark the checkpoint finished (a resume ends too)."""
        if self.verbose:
            console().print(why, soft_wrap=True)
        if self.output is not None:
            save_checkpoint(self.output / CHECKPOINT, self.network, self.info(), plan=plan,
                            phase=len(plan) - 1, epoch=plan[-1].epochs - 1, optimizer=None,
                            best=self.best)

    def _run_probe(self, plan: list[Phase], index: int) -> None:
        """The probe phase: a logistic regression on cached embeddings becomes the head."""
        started = time.perf_counter()
        with main_first(self.processes):  # the others read the embeddings it caches
            row = fit_probe(self.network, self.data,
                            views=plan[index].views or probe_views(self.data),
                            seed=self.config.seed, show_progress=self.verbose)
        self._end_epoch({"phase": "probe", **row}, started, plan, index, 0, None)

    def _probe_is_right(self, plan: list[Phase], index: int) -> str | None:
        """auto mode: why the probe plan[index] is kept without the schedule after it."""
        if (index < 0 or plan[index].kind != "probe" or not plan[index + 1].compare_at_end
                or self.data.multi_label
                or not self.history or self.history[-1]["phase"] != "probe"):
            return None
        # the pictures validated (unreadable ones left out); after a resume, the split's
        pictures = (len(self._valid_targets) if self._valid_targets is not None
                    else len(self.data.valid))
        why = steps.probe_is_right(self.config, self.history[-1], pictures)
        if agree(self.processes, why is not None):
            return why or "Keeping the probe, as the first process decided."
        return None

    def _run_one_cycle(self, plan: list[Phase], index: int, first_epoch: int,
                       optimizer_state: dict | None) -> str | None:
        """One one-cycle phase; why it stopped before its last epoch, or None.

        Under a time limit, a phase begun afresh times its first batches, then keeps the
        epochs that fit (plan[index] shortened) or none (its first weights restored).
        """
        phase = plan[index]
        if phase.frozen:
            self.network.freeze()
        else:
            self.network.unfreeze(early=not self.config.freeze_early)
        self._backbone_trained = self._backbone_trained or not phase.frozen
        optimizer = steps.optimizer_for(self.network, phase, self.config.weight_decay,
                                        optimizer_state)
        processes = self.processes
        # several processes: each takes its share of every batch; gradients are averaged
        part = (processes.rank, processes.count) if processes.parallel else None
        sizes = train_sizes(self.data, self.config.progressive_resizing)
        loaders = {size: data.train_loader(part=part) for size, data in sizes.items()}
        self._parallel = (phase.frozen, parallel_module(
            processes, self.network.head if phase.frozen else self.network))
        limit = time_limit(self.config, self.device.type)
        fitting = bool(limit and not first_epoch)
        views = TrainingViews.for_phase(self.network, self.config, phase, fitting=fitting,
                                        one_size=len(sizes) == 1, parallel=processes.parallel,
                                        front=self._front)
        if self._front is not None and not phase.frozen and not processes.parallel:
            start = self.network.frozen_start()
            if 0 < start < len(self.network.stages() or ()):
                self._front.prepare(start, [*sizes, self.data.input.image_size])
        fit = (PhaseFitter(self, plan, index, len(loaders[max(sizes)]), limit, sizes, views)
               if fitting else None)
        self._train_from = views.start if views else 0
        try:
            return self._epochs(plan, index, first_epoch, optimizer, loaders, sizes, views, fit)
        finally:
            self._train_from = 0

    def _epochs(self, plan, index, first_epoch, optimizer, loaders, sizes, views, fit):
        phase, epoch = plan[index], first_epoch
        if views and views.reuse and first_epoch and reuses(first_epoch, phase.epochs):
            self._restore_views(views, loaders[max(sizes)], phase.epochs, first_epoch)
        while epoch < plan[index].epochs:  # (fit may shorten plan[index] in the first epoch)
            started = time.perf_counter()
            # progressive resizing: smaller crops until the schedule's last epoch
            small = small_epochs(plan[index], self.config.progressive_resizing)
            size = min(sizes) if epoch < small else max(sizes)
            loader = loaders[size]
            self.seed_epoch(len(self.history), loader)
            name = f"{phase.name} {epoch + 1}/{plan[index].epochs}"
            # reuse_views: half the epochs train again on stored pictures (plan.reuses)
            batches = (views.epoch(loader, reuse=reuses(epoch, plan[index].epochs),
                                   seed=self.config.seed * 1000 + len(self.history),
                                   store=reuses(epoch + 1, plan[index].epochs))
                       if views else loader)
            trained = steps.train_epoch(
                self.train_step, self.network, batches, optimizer,
                first_step=epoch * len(loader), total_steps=plan[index].epochs * len(loader),
                warmup_fraction=self.config.warmup_fraction, processes=self.processes,
                description=name, show_progress=self.verbose,
                fit=fit if epoch == first_epoch else None)
            if trained is None:  # not one epoch fits
                return self._out_of_time
            self._end_epoch({"phase": phase.name, "train_loss": trained[0],
                             "pictures_per_second": trained[1], "train_size": size,
                             "reused_views": getattr(batches, "reused", False)},
                            started, plan, index, epoch, optimizer)
            epoch += 1
        return None

    def _restore_views(self, views: TrainingViews, loader, epochs: int, epoch: int) -> None:
        """A run resumed at an epoch that reuses stored pictures: store them again, as the
        epoch that read them did (the same seeded batches and augmentation through the same
        frozen stages, forward only), so the run goes on bit for bit as an uninterrupted one."""
        read = max(e for e in range(epoch) if not reuses(e, epochs))
        self.seed_epoch(len(self.history) - (epoch - read), loader)
        self.network.train()
        if self.verbose:
            console().print("Storing the pictures this epoch reuses, as the run before did.")
        views.store(loader)

    def train_step(self, images, targets, optimizer, trainable) -> float:
        """One optimizer step on a batch; returns its loss (used by the loop and lr_find)."""
        return steps.train_step(self.network, images, targets, optimizer, trainable,
                                device=self.device, config=self.config, parallel=self._parallel,
                                start=self._train_from, front=self._front)

    def seed_epoch(self, epoch: int, loader) -> None:
        """Same seed, same batches and augmentation per epoch (steps.seed_epoch)."""
        steps.seed_epoch(self.config.seed, epoch, loader)

    def _end_epoch(self, row: dict[str, Any], started: float, plan: list[Phase], index: int,
                   epoch: int, optimizer: torch.optim.Optimizer | None) -> None:
        """Validate, record, keep the best, checkpoint, call back: the same after any phase."""
        row = {"epoch": len(self.history), **row, **self.validate(),
               "backbone_trained": self._backbone_trained,
               # the epoch ends its phase's schedule, at the bottom of its learning rate
               "annealed": epoch == plan[index].epochs - 1}
        row["seconds"] = time.perf_counter() - started
        self.history.append(row)
        self._track_best(row, plan[index])
        if self.output is not None:
            save_checkpoint(self.output / CHECKPOINT, self.network, self.info(), plan=plan,
                            phase=index, epoch=epoch, optimizer=optimizer, best=self.best)
        self._call("on_epoch_end", learner=self, row=row)

    def validate(self) -> dict[str, float]:
        """valid_loss, accuracy and error_rate on the validation pictures.

        Through the one forward loop, on the original files, exactly as ``evaluate`` and
        Predictor read them: the figures a run prints and saves are the ones they give. The
        same pass gives the embeddings the "unknown" detector is calibrated on. While the
        backbone is the pretrained one (the probe, head-only epochs), that pass is the cached
        embeddings' (the same loop, through onnxruntime on the CPU) and the head runs on them.
        """
        if not self.data.valid:
            return loop.scores(np.zeros((0, len(self.data.classes))), [])
        if self._pretrained_backbone:
            outputs = cached_outputs(self.network, self.data, "valid",
                                     show_progress=self.verbose)
            ok = outputs.ok
            self._valid_start.seconds = None  # cached: says nothing of a PyTorch pass
            self._valid_embeddings = outputs.embeddings[ok]
            self._valid_targets = np.array([self.data.target(item) for item, good
                                            in zip(self.data.labelled("valid"), ok) if good])
            return loop.scores(outputs.probabilities[ok], self._valid_targets)
        # after freeze_early's frozen stages when their output is stored (frozen.py)
        scores, self._valid_embeddings = self._valid_start.scores(
            self.network, self.data, show_progress=self.verbose)
        self._valid_targets = self._valid_start.targets
        return scores

    @property
    def _pretrained_backbone(self) -> bool:
        """The backbone is still the pretrained one the embedding cache was made with and the
        head pools by averaging: the head can run on cached embeddings."""
        return not self._backbone_trained and self.network.head.config.pool == "avg"

    def _track_best(self, row: dict[str, Any], phase: Phase) -> None:
        if phase.compare_at_end and not row["annealed"]:  # see steps.not_helping
            return
        monitor = self.config.monitor
        larger_is_better = monitor == "accuracy"
        if self.best is not None:
            previous = self.best[monitor]
            if (row[monitor] <= previous) if larger_is_better else (row[monitor] >= previous):
                return
        self.best = dict(row)
        self._best_state = {k: v.detach().clone() for k, v in self.network.state_dict().items()}
        self._best_valid_embeddings = self._valid_embeddings
        self._best_valid_targets = self._valid_targets
        if self.output is not None:
            self.export(self.output / BEST)

    def _finish(self) -> None:
        valid, targets = self._valid_embeddings, self._valid_targets
        if self.config.restore_best and self._best_state is not None:
            self.network.load_state_dict(self._best_state)
            self._restored_best = True
            valid, targets = self._best_valid_embeddings, self._best_valid_targets
        if self.history:
            final = self.best if self._restored_best else self.history[-1]
            # the weights kept may be the probe's after a fine-tuning that did not pay
            self._backbone_trained = bool(final.get("backbone_trained"))
            if valid is None and self.data.valid:  # resumed after the last epoch: one more pass
                self.validate()
                valid, targets = self._valid_embeddings, self._valid_targets
            self._fit_detector(self._backbone_trained, valid)
            if self.data.multi_label:
                self.thresholds = label_thresholds(self.network, valid, targets)
        self._valid_start = ValidationStart(front=self._front)  # lets its worker go
        if self._front is not None:  # and the frozen layers' onnxruntime sessions
            self._front.key, self._front.graphs = None, {}
        if self.output is not None and self.history:
            self.export(self.output / FINAL)
            if self._restored_best:  # the same weights, now with their detector
                self.export(self.output / BEST)
            write_json(self.output / HISTORY, self.history, indent=1)
        self._call("on_train_end", learner=self)

    def _fit_detector(self, backbone_trained: bool, valid: np.ndarray | None) -> None:
        """The "unknown" detector of the final weights (embeddings.fit_unknown)."""
        fitted = fit_unknown(self.network, self.data, valid, cached=not backbone_trained,
                             acceptance=self.config.acceptance, seed=self.config.seed,
                             show_progress=self.verbose)
        if fitted is not None:
            detector, self.unknown = fitted
            self.network.detector = detector.to(self.device)

    def _call(self, hook: str, **arguments) -> None:
        for callback in self.callbacks:
            method = getattr(callback, hook, None)
            if method is not None:
                method(**arguments)

    # --- resuming -------------------------------------------------------------------------

    @classmethod
    def resume(cls, output: str | os.PathLike, data: ImageData, *, callbacks: Sequence[Any] = (),
               verbose: bool = True) -> Learner:
        """Continue an interrupted run from the last checkpoint in its output folder.

        Example:
            >>> Learner.resume("models/ants", ImageData.from_folder("hymenoptera"))
        """
        output = Path(output)
        run = read_run(output, data, verbose=verbose)
        learner = cls(run.data, run.network, config=run.saved.info.training or TrainConfig(),
                      output=output, callbacks=callbacks, verbose=verbose)
        learner.history = list(run.saved.info.history)
        learner._backbone_trained = bool(learner.history and
                                         learner.history[-1].get("backbone_trained"))
        learner.best, learner._best_state = run.saved.best, run.best_state
        learner.backbone_choice = run.backbone_choice
        if run.start is None:
            if verbose:
                console().print(f"{output} has finished training; nothing to resume.")
            with learner._holding_output():
                learner._finish()
            return learner
        phase, epoch = run.start
        plan = run.saved.plan
        if verbose:
            console().print(f"Resuming {output} at epoch {len(learner.history)} "
                            f"({plan[phase].name} {epoch + 1}/{plan[phase].epochs}).")
        return learner._run(plan, start=run.start, optimizer_state=run.optimizer)

    # --- learning rate finder -------------------------------------------------------------

    def lr_find(self, start: float = 1e-7, end: float = 10.0, steps: int = 100) -> LearningRates:
        """Train briefly with a rising learning rate and record the loss; weights are restored.

        Returns the curve and a suggested learning rate (the steepest descent of the loss).

        Example:
            >>> found = learner.lr_find()
            >>> found.suggestion
            0.0021
            >>> found.plot().savefig("lr.png")
        """
        loader = self.data.train_loader()
        self.seed_epoch(0, loader)
        return find_learning_rate(self.network, loader, self.train_step,
                                  weight_decay=self.config.weight_decay, start=start, end=end,
                                  steps=steps, show_progress=self.verbose)

    # --- using the model ------------------------------------------------------------------

    def info(self) -> ModelInfo:
        """What the model file says: the network, the classes, the input, figures, settings."""
        network = self.network
        return ModelInfo(
            backbone=self.data.backbone, classes=tuple(self.data.classes), input=self.data.input,
            head=network.head.config, timm_name=get_backbone(self.data.backbone).timm_name,
            num_features=network.backbone.num_features, metrics=self.metrics(),
            best_epoch=self.best["epoch"] if self.best else None, history=tuple(self.history),
            training=self.config, data=self.data.config, augment=self.data.augment,
            counts=self.data.counts(), unknown=self.unknown,
            bank_pictures=network.detector.pictures if network.detector is not None else (),
            multi_label=self.data.multi_label, thresholds=self.thresholds,
            created=time.strftime("%Y-%m-%dT%H:%M:%S%z"))

    def metrics(self) -> dict[str, float]:
        """Validation figures of the weights the network holds now (from the training history)."""
        if not self.history:
            return {}
        row = self.best if self._restored_best and self.best is not None else self.history[-1]
        return {k: row[k] for k in METRICS}

    def export(self, path: str | os.PathLike) -> Path:
        """Write the model file (safetensors + JSON metadata; never a pickle).

        Example:
            >>> learner.export("ants.imgclf")
        """
        tensors = {MODEL_PREFIX + k: v for k, v in self.network.state_dict().items()}
        return save_model(path, tensors, self.info())

    def predictor(self) -> Predictor:
        """This learner's network behind the one inference path used everywhere."""
        return Predictor(self.network, self.info())

    def evaluate(self, split: str = "valid", *, tta: bool = False
                 ) -> Evaluation | MultiLabelEvaluation:
        """Metrics, confusion matrix, most-confused pairs and top losses on a split.

        While the backbone is the pretrained one (the probe, or auto when it kept the probe),
        the head and the unknown detector run on the split's cached embeddings (computed
        through onnxruntime where missing): the answers ``evaluate(learner, data)`` gives
        through the whole network, to about 1e-5, without that pass. ``tta=True`` and a
        trained backbone go through the network.

        Example:
            >>> learner.evaluate().plot_confusion_matrix().savefig("confusion.png")
        """
        if tta or not self._pretrained_backbone:
            return evaluate(self, self.data, split=split, tta=tta, show_progress=self.verbose)
        # the probe's head and detector on the split's cached embeddings, as validate() runs
        # them: no pass of the network over the pictures (bench/quick_start.py)
        predictor = self.predictor()
        items = items_to_evaluate(predictor, self.data, split)
        outputs = cached_outputs(self.network, self.data, split, show_progress=self.verbose)
        return evaluation_of(predictor, self.data, split, items, outputs,
                             show_progress=self.verbose)

    def predict(self, image) -> Prediction:
        """Label one picture (path, bytes or PIL image)."""
        return self.predictor().predict(image)

    def explain(self, image, *, neighbours: int = NEIGHBOURS) -> Explanation:
        """Label one picture and say why (Predictor.explain): ``learner.explain("bee.jpg")``."""
        return self.predictor().explain(image, neighbours=neighbours)

    def settings(self, plan: list[Phase] | None = None) -> dict[str, Any]:
        """The fully resolved settings of this run, as printed at the start and saved."""
        return run_settings(self, plan, time_limit(self.config, self.device.type))

    def _save_settings(self, plan: list[Phase]) -> None:
        if self.output is not None:
            write_json(self.output / SETTINGS, self.settings(plan), indent=1)


