"""Callbacks: plain objects the training loop calls by hook name with keyword arguments.

Hooks (each optional): ``on_train_start(learner, plan)``, ``on_epoch_end(learner, row)``
(after every epoch and after the probe, once its checkpoint is written),
``on_train_end(learner)`` (after the model file is written) and
``on_train_interrupted(learner, reason)``. ``ConsoleLog`` is the one that prints a run;
``Learner(verbose=True)`` adds it.
"""

from __future__ import annotations

from typing import Any

from imgclf._progress import console
from imgclf.modelfile import FINAL
from imgclf.training.checkpoint import BEST, CHECKPOINT
from imgclf.training.plan import Phase, reused_epochs, small_epochs, small_size
from imgclf.training.steps import kept

# The hooks' `learner` is the running Learner; it is typed Any here because the learner
# module imports its callbacks, and a callback module importing it back would close a cycle.
Learner = Any


class ConsoleLog:
    """Prints the resolved settings, one row per epoch, and where the model went."""

    judged = False  # a plan compared only where its schedules end (auto mode)

    def on_train_start(self, learner: Learner, plan: list[Phase]) -> None:
        self.judged = any(phase.compare_at_end for phase in plan)
        settings, data = learner.settings(plan), learner.data
        out = console()
        out.print(f"[bold]Training[/] {settings['backbone']} on {len(data.train)} pictures "
                  f"({len(data.classes)} classes), validating on {len(data.valid)}; "
                  f"device {settings['device']}, {settings['threads']} threads, batch "
                  f"{data.config.batch_size}, image size {data.input.image_size}"
                  + (f" (training crops {data.input.train_size})"
                     if data.input.train_size else "")
                  + f", {learner.config.precision}")
        for phase in plan:
            if phase.kind == "probe":
                out.print(f"  {phase.name}: a linear head fitted on cached embeddings")
                continue
            rates = ", ".join(f"{r:.2g}" for r in phase.learning_rates)
            config = learner.config
            what = "head only" if phase.frozen else "whole network"
            if not phase.frozen and config.freeze_early:
                reusing = (config.reuse_views is True and phase.epochs > 1
                           and not learner.processes.parallel
                           and not small_epochs(phase, config.progressive_resizing))
                what += (" (its early layers frozen" + (
                    ", run by onnxruntime" if config.frozen_runtime == "onnx"
                    and not learner.processes.parallel else "") + (
                    f"; {reused_epochs(phase.epochs)} of its "
                    f"{phase.epochs} epochs reuse stored pictures" if reusing
                    else "") + ")")
            small = small_epochs(phase, learner.config.progressive_resizing)
            train_size = data.input.train_size or data.input.image_size
            crops = (f", crops {small_size(train_size)} for {small} epoch(s), then {train_size}"
                     if small and small_size(train_size) < train_size else "")
            out.print(f"  {phase.name}: {phase.epochs} epoch(s), {what}, one-cycle peak {rates}"
                      + crops)
        if learner.output is not None:
            out.print(f"  settings and checkpoints: {learner.output}")
        out.print(f"{'epoch':>5} {'phase':>6} {'train_loss':>10} {'valid_loss':>10} "
                  f"{'accuracy':>8} {'error_rate':>10} {'time':>6}")

    def on_epoch_end(self, learner: Learner, row: dict[str, Any]) -> None:
        out = console()
        if row["phase"] == "probe":
            cv = row.get("cv_accuracy")
            out.print(f"      probe: logistic regression on {row['embeddings']} embeddings "
                      f"({row['computed']} computed, the rest cached), "
                      f"C={row['regularisation']:g}"
                      + (f", cross-validated accuracy {cv:.3f}" if cv is not None else ""),
                      highlight=False)
        improved = learner.best is not None and learner.best["epoch"] == row["epoch"]
        out.print(f"{row['epoch']:>5} {row['phase']:>6.6} {row['train_loss']:>10.4f} "
                  f"{row['valid_loss']:>10.4f} {row['accuracy']:>8.4f} "
                  f"{row['error_rate']:>10.4f} {row['seconds']:>5.0f}s"
                  + (" *" if improved else ""), highlight=False)

    def on_train_end(self, learner: Learner) -> None:
        line = kept(learner.config, learner.history, learner.best) if self.judged else None
        if line:
            console().print(line, highlight=False, soft_wrap=True)
        if learner.output is None or learner.best is None or not learner.history:
            return
        final = learner.best if learner.config.restore_best else learner.history[-1]
        console().print(
            f"Saved {learner.output / FINAL}: epoch {final['epoch']}, accuracy "
            f"{final['accuracy']:.4f}, valid_loss {final['valid_loss']:.4f}. Best by "
            f"{learner.config.monitor}: epoch {learner.best['epoch']} "
            f"({learner.output / BEST}).")
        unknown = learner.unknown
        if unknown is not None:
            console().print(
                f"Unknown pictures: outlier threshold {unknown.threshold:.3f} accepts "
                f"{unknown.acceptance:.0%} of the "
                + unknown.calibrated_on.replace("valid", "validation") + " pictures"
                + (f"; the _unknown folder: {unknown.negatives} pictures, "
                   f"{unknown.negatives_flagged:.0%} called unknown" if unknown.negatives else ""),
                highlight=False)

    def on_train_interrupted(self, learner: Learner, reason: str) -> None:
        out = console()
        if learner.output is not None and (learner.output / CHECKPOINT).exists():
            out.print(
                f"[yellow]{reason} after {len(learner.history)} finished epoch(s). The last "
                f"checkpoint is {learner.output / CHECKPOINT}; continue with "
                f"Learner.resume({str(learner.output)!r}, data) or imgclf train ... --out "
                f"{learner.output} --resume")
        else:
            out.print(f"[yellow]{reason} before the first epoch finished; nothing saved.")
