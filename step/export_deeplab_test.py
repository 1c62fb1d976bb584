"""export_deeplab_test: DeepLab-v2 predictions for ``--test_list`` in the VOC evaluation server's layout.

``result/deeplab/results/VOC2012/Segmentation/comp6_test_cls/<id>.png`` (VOC palette PNGs of the image size; with the
CRF when ``--deeplab_crf``), plus ``result/deeplab/voc2012_test_comp6.tar.gz`` of the ``results/`` folder to upload.
"""
from __future__ import annotations

import logging
import tarfile
from pathlib import Path

import numpy as np
import torch

from misc.engine.distributed import barrier, is_main_process
from misc.core.paths import deeplab_server_dir, deeplab_test_archive
from misc.core.io import atomic_write, save_png
from misc.engine.per_image import device_workers, run_per_image
from misc.method.torchutils import autocast
from pipeline.datasets import open_dataset
from pipeline.tasks import DeepLabLogitsTask, probs_from_logits

log = logging.getLogger(__name__)


class TestExportTask(DeepLabLogitsTask):
    name = "export_deeplab_test"
    suffix = ".png"

    def load(self, img_id: str):
        """(mean-subtracted CHW input, the BGR uint8 image for the CRF guide) from one read of the file."""
        from dataset.deeplab_data import subtract_mean
        from dataset.images import read_image_bgr

        bgr = read_image_bgr(self.index.image_path(img_id))
        return np.ascontiguousarray(subtract_mean(bgr).transpose(2, 0, 1)), bgr.astype(np.uint8)

    def process(self, img_id: str, inputs) -> None:
        from misc.method.crf import crf_inference_softmax, deeplab_crf_guide

        img, bgr = inputs
        x = torch.as_tensor(np.asarray(img))[None].to(self.device)
        with autocast(self.device, self.args.amp):
            logits = self.model(x)[0].float().cpu().numpy()
        probs = probs_from_logits({"logits": logits, "size": np.asarray(img.shape[1:])})
        if self.args.deeplab_crf:
            probs = crf_inference_softmax(deeplab_crf_guide(bgr, quirk=self.args.deeplab_crf_guide == "original"),
                                          probs)
        save_png(self.output_path(img_id), np.argmax(probs, 0).astype(np.uint8), palette=self.index.palette())


def run(args) -> Path | None:
    index = open_dataset(args)
    try:
        ids = index.ids(args.test_list)
    except ValueError:
        log.warning("export_deeplab_test: no test list %r in %s (VOC2012 test images come in a separate archive); "
                    "skipped", args.test_list, index.root)
        return None
    out = Path(args.deeplab_out_dir)
    png_dir = deeplab_server_dir(args)
    run_per_image(TestExportTask(args, index, png_dir), ids, overwrite=args.overwrite, shard=args.shard,
                  **device_workers(args))
    barrier()  # the archive holds every rank's PNGs
    if not is_main_process():
        return None
    archive = deeplab_test_archive(args)

    def write(tmp: str) -> None:
        with tarfile.open(tmp, "w:gz") as tar:
            tar.add(out / "results", arcname="results",
                    filter=lambda info: None if Path(info.name).name.startswith(".") else info)  # no manifest

    atomic_write(archive, write)
    log.info("export_deeplab_test: %d PNGs in %s; archive %s", len(ids), png_dir, archive)
    return archive
