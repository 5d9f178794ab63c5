"""Deployment: export a model for Paddle Inference (``export``), run the export (``predictor``)."""
from .export import (INFO_SUFFIX, eval_preprocess, eval_transform_from_info, export_model,
                     exported_files, read_export_info)
from .predictor import InferenceLayer, InferenceModel, relative_difference

__all__ = [
    "INFO_SUFFIX", "InferenceLayer", "InferenceModel", "eval_preprocess",
    "eval_transform_from_info", "export_model", "exported_files", "read_export_info",
    "relative_difference",
]
