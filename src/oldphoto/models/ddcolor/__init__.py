"""DDColor colorization: the authors' official checkpoints, loaded with spandrel, run through their pipeline."""

from oldphoto.models.ddcolor.batching import Batcher, shared_batcher
from oldphoto.models.ddcolor.colorizer import RUNTIMES, Colorizer
from oldphoto.models.ddcolor.loader import build_network, checkpoint_file, is_loaded, load_colorizer, read_state_dict
from oldphoto.models.ddcolor.pipeline import AB_UPSAMPLE_MODES, AbUpsample, Prepared, colorize, postprocess, preprocess
from oldphoto.models.ddcolor.progress import BlockCallback, network_blocks

__all__ = [
    "AB_UPSAMPLE_MODES",
    "RUNTIMES",
    "AbUpsample",
    "Batcher",
    "BlockCallback",
    "Colorizer",
    "Prepared",
    "build_network",
    "checkpoint_file",
    "colorize",
    "is_loaded",
    "load_colorizer",
    "network_blocks",
    "postprocess",
    "preprocess",
    "read_state_dict",
    "shared_batcher",
]
