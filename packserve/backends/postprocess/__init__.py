"""Post-processing backend: classification, detection decode + NMS, OCR text ops, embeddings."""

from packserve.backends.postprocess.model import OPS, PostprocessModel, build_op

__all__ = ["OPS", "PostprocessModel", "build_op"]
