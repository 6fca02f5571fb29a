"""What a run prints: libraries kept quiet, and one progress bar per long phase, named for what it does."""

from __future__ import annotations

import logging
import warnings

from lightning.pytorch.callbacks.progress.progress_bar import ProgressBar
from tqdm.auto import tqdm


def quiet_libraries() -> None:
    """Keep the console for what matters: Lightning's start-up banners, the libraries' own progress bars
    (weights loading, tokenizing) and known-harmless warnings off."""
    import transformers

    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
        logging.getLogger(name).setLevel(logging.WARNING)
    for pattern in (".*LeafSpec.*", ".*does not have many workers.*", ".*is_gradient_checkpointing.*",
                    ".*modules? in eval mode.*", ".*litlogger.*", ".*smaller than the logging interval.*",
                    ".*`training_step` returned `None`.*"):
        warnings.filterwarnings("ignore", message=pattern)


class PhaseBar(ProgressBar):
    """Lightning's progress bar replaced by one bar for the whole fit: optimiser batches done of the phase's
    budget (the step budget when there is one, else the stream's batch plan), the loss, and how many stream
    steps are evaluated. Epochs are an implementation detail of the stream walk and are not shown."""

    def __init__(self, desc: str):
        super().__init__()
        self.desc = desc
        self.bar: tqdm | None = None
        self._enabled = True

    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    @property
    def is_enabled(self) -> bool:
        return self._enabled and self.bar is not None

    def on_train_start(self, trainer, pl_module):
        total = trainer.max_steps if trainer.max_steps > 0 else trainer.num_training_batches
        done = getattr(pl_module, "batches_done", trainer.global_step)  # a resumed run starts where it stopped
        self.bar = tqdm(total=total, initial=min(done, total), desc=self.desc, unit="batch", dynamic_ncols=True,
                        disable=not (self._enabled and trainer.is_global_zero))

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.bar.update(1)
        postfix = {}
        loss = trainer.callback_metrics.get("train/loss")
        if loss is not None:
            postfix["loss"] = f"{float(loss):.3f}"
        history = getattr(pl_module, "history", None)
        if history:
            postfix["evaluated"] = len(history)
        self.bar.set_postfix(postfix, refresh=False)

    def on_train_end(self, trainer, pl_module):
        if self.bar is not None:
            self.bar.close()
