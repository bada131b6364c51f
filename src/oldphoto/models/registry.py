"""The known DDColor weights: the authors' four official checkpoints (their MODEL_ZOO) and where each is published.

Each is one Hugging Face repo saved by `PyTorchModelHubMixin` (a `config.json` and the weights, as
`model.safetensors` or `pytorch_model.bin` depending on the hub library that saved it). `ddcolor_modelscope`
is also published on ModelScope as a single `pytorch_model.pt`; that copy is recorded as an alternative a user
may place by hand (this service downloads from Hugging Face only).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

# Weight file names a Hugging Face repo saved by PyTorchModelHubMixin may hold, the preferred first.
HF_WEIGHT_FILES: tuple[str, ...] = ("model.safetensors", "pytorch_model.bin")
# DDColor halves its input five times (ConvNeXt's stem /4, then /2 three times) and the decoder doubles back.
INPUT_MULTIPLE = 32
# Model input sizes a workflow may ask for (besides the server's own OLDPHOTO_INPUT_SIZE). Each size a worker runs
# is an ONNX export on disk (0.1-1 GB) and an engine in memory, so the sizes are few: the official 512 (every
# checkpoint was trained at it) and two smaller ones for faster colour. Larger sizes are for the operator to choose
# (OLDPHOTO_INPUT_SIZE): their first use exports with a peak of 2.9 GB above the worker at 768 (tiny; docs/jobs.md).
INPUT_SIZES: tuple[int, ...] = (256, 384, 512)
# Checkpoint file suffixes the loader reads (SPEC: official `.pth` with or without `params`, `.pt`, `.safetensors`, `.bin`).
CHECKPOINT_SUFFIXES: tuple[str, ...] = (".pth", ".pt", ".safetensors", ".bin")


@dataclass(frozen=True)
class Source:
    """One place a model is published: a repo on a hub and the weight file names it may hold."""

    hub: Literal["huggingface", "modelscope"]
    repo: str
    files: tuple[str, ...]

    @property
    def url(self) -> str:
        if self.hub == "huggingface":
            return f"https://huggingface.co/{self.repo}"
        return f"https://www.modelscope.cn/models/{self.repo}"


@dataclass(frozen=True)
class KnownModel:
    name: str
    encoder: Literal["convnext-t", "convnext-l"]
    description: str
    source: Source
    alternatives: tuple[Source, ...] = ()
    # The authors' input size for every official checkpoint (spandrel cannot infer it from the weights).
    input_size: int = 512
    approx_mb: int = 0

    @property
    def weight_files(self) -> tuple[str, ...]:
        """Every weight file name this model may be cached under, from its own source and the alternatives."""
        names = [*self.source.files]
        for alternative in self.alternatives:
            names.extend(f for f in alternative.files if f not in names)
        return tuple(names)


def _hf(name: str) -> Source:
    return Source("huggingface", f"piddnad/{name}", HF_WEIGHT_FILES)


DDCOLOR_MODELS: dict[str, KnownModel] = {
    model.name: model
    for model in (
        KnownModel(
            "ddcolor_paper_tiny",
            "convnext-t",
            "DDColor-T trained on ImageNet: the lightest (ConvNeXt-T encoder), same training as ddcolor_paper.",
            _hf("ddcolor_paper_tiny"),
            approx_mb=220,
        ),
        KnownModel(
            "ddcolor_paper",
            "convnext-l",
            "DDColor-L trained on ImageNet: the paper's model, for reproducing its figures.",
            _hf("ddcolor_paper"),
            approx_mb=912,
        ),
        KnownModel(
            "ddcolor_modelscope",
            "convnext-l",
            "DDColor-L trained on ImageNet with BigColor's data cleaning: the authors' default for photos outside ImageNet.",
            _hf("ddcolor_modelscope"),
            alternatives=(Source("modelscope", "damo/cv_ddcolor_image-colorization", ("pytorch_model.pt",)),),
            approx_mb=912,
        ),
        KnownModel(
            "ddcolor_artistic",
            "convnext-l",
            "DDColor-L trained on ImageNet plus artistic images, without colorfulness loss: fewer colour artifacts.",
            _hf("ddcolor_artistic"),
            approx_mb=912,
        ),
    )
}


def known_model(name: str) -> KnownModel | None:
    return DDCOLOR_MODELS.get(name)
