"""Measured quality of served images, off the response path.

A sample of returned images (``rate``) goes to a bounded queue; one background thread scores them
with the quality scorer (the tiny CLIP) into the ``argus_measured_clip_score`` histogram beside
the predicted quality. When the scorer falls behind, new images are skipped, never waited for.
"""

from __future__ import annotations

import logging
import queue
import random
import threading

import numpy as np

log = logging.getLogger("argus.frontdoor")


class QualitySampler:
    def __init__(self, metrics, rate: float = 1.0, max_pending: int = 64, seed: int = 0, scorer_dir=None):
        self.metrics = metrics
        self.scorer_dir = scorer_dir
        """None: the embedded tiny CLIP; else a transformers CLIPModel directory (``tiny_model.quality.load_scorer``)."""
        self.rate = rate
        self.pending: queue.Queue = queue.Queue(maxsize=max_pending)
        self.rng = random.Random(seed)
        self.scored = 0
        self.skipped = 0
        self._thread = threading.Thread(target=self._run, daemon=True, name="argus-quality-sampler")
        self._thread.start()

    def submit(self, images: np.ndarray, prompt: str, variant: str) -> None:
        if self.rate <= 0 or self.rng.random() >= self.rate:
            return
        try:
            self.pending.put_nowait((images, prompt, variant))
        except queue.Full:
            self.skipped += 1

    def _run(self) -> None:
        from tiny_model.quality import load_scorer

        try:
            scorer = load_scorer(self.scorer_dir)
        except Exception as e:  # noqa: BLE001 - a scorer that cannot load turns scoring off, never serving
            log.error("quality scorer %s did not load (%s): served images are not scored", self.scorer_dir, e)
            return
        while True:
            item = self.pending.get()
            if item is None:
                return
            images, prompt, variant = item
            try:
                score = float(scorer.clip_score(images, [prompt])[0])
                self.metrics.measured_clip.labels(variant=variant).observe(score)
                self.scored += 1
            except Exception as e:  # noqa: BLE001 - a scoring failure must not stop the sampler
                log.warning("quality scoring failed: %s", e)
            finally:
                self.pending.task_done()

    def flush(self, timeout_s: float = 30.0) -> bool:
        """Wait until every queued image is scored (tests and benches); True if done in time."""
        done = threading.Event()
        threading.Thread(target=lambda: (self.pending.join(), done.set()), daemon=True).start()
        return done.wait(timeout_s)

    def close(self) -> None:
        try:
            self.pending.put_nowait(None)
        except queue.Full:
            pass  # daemon thread; it ends with the process
