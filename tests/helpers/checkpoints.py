"""DDColor checkpoints for tests: the real tiny architecture with seeded random weights, in every official form.

The official weights cannot be downloaded here, so tests make their own: the network the authors ship as
`ddcolor_paper_tiny` (ConvNeXt-T encoder, 100 color queries, 3 scales, 9 decoder layers, spectral norm,
nf 512, 2 output channels), initialised from a fixed seed and saved as the authors' training saves it.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

SEED = 20230515  # the day the authors released their code
TINY_CONFIG = {
    "encoder_name": "convnext-t",
    "decoder_name": "MultiScaleColorDecoder",
    "input_size": [512, 512],
    "num_output_channels": 2,
    "last_norm": "Spectral",
    "do_normalize": False,
    "num_queries": 100,
    "num_scales": 3,
    "dec_layers": 9,
    "nf": 512,
}
# Random weights predict ab of about +-0.5; real checkpoints predict tens of units. The color embedding's last
# linear layer (not spectrally normalised) is scaled so ab spreads like real predictions (this standard
# deviation on a gray ramp), and colour edges, gamut limits and the upsampling of ab are exercised as with
# real weights.
AB_STD = 20.0
POWER_ITERATIONS = 30
# The paper's model (`ddcolor_paper`, `ddcolor_modelscope`, `ddcolor_artistic`): ConvNeXt-L, the same decoder.
LARGE_CONFIG = {**TINY_CONFIG, "encoder_name": "convnext-l"}


def tiny_network() -> nn.Module:
    """The tiny DDColor network with the seeded random weights (eval mode, CPU)."""
    return _random_network(TINY_CONFIG)


def large_network() -> nn.Module:
    """The large DDColor network (ConvNeXt-L, as the three large official checkpoints) with seeded random weights."""
    return _random_network(LARGE_CONFIG)


def _random_network(full_config: dict[str, object]) -> nn.Module:
    from spandrel_extra_arches.architectures.DDColor import DDColor

    with torch.random.fork_rng():
        torch.manual_seed(SEED)
        config = {k: v for k, v in full_config.items() if k != "input_size"}
        # `input_size` only sizes a dry run of the encoder that reads channel counts; 64 gives the same network
        # as the official 512, faster.
        network = DDColor(input_size=(64, 64), **config)
        with torch.no_grad():
            _converge_spectral_norms(network)
            network.eval()
            last = network.decoder.color_decoder.color_embed.layers[-1]
            for _ in range(2):  # ab is nearly linear in this scale; a second pass corrects the rest
                scale = AB_STD / float(network(_gray_ramp()).std())
                last.weight.mul_(scale)
                last.bias.mul_(scale)
    return network


def _gray_ramp(side: int = 64) -> torch.Tensor:
    ramp = torch.linspace(0.05, 0.95, side)
    return (ramp[None, :] * ramp[:, None]).sqrt().expand(1, 3, side, side).contiguous()


def _converge_spectral_norms(network: nn.Module) -> None:
    """Set each spectral norm's u and v to its weight's top singular vectors, as long training leaves them.

    Fresh u and v are random, so u.W.v (the divisor) can be near zero or negative and the outputs explode.
    """
    for module in network.modules():
        if not hasattr(module, "weight_orig"):
            continue
        matrix = module.weight_orig.flatten(1)
        v = nn.functional.normalize(torch.randn(matrix.shape[1]), dim=0)
        for _ in range(POWER_ITERATIONS):
            u = nn.functional.normalize(matrix @ v, dim=0)
            v = nn.functional.normalize(matrix.T @ u, dim=0)
        module.weight_u.copy_(u)
        module.weight_v.copy_(v)


def tiny_state_dict() -> dict[str, torch.Tensor]:
    return {k: v.detach().clone().contiguous() for k, v in tiny_network().state_dict().items()}


def write_tiny_checkpoint(path: Path) -> Path:
    """The authors' training output form: `torch.save({"params": state_dict}, "*.pth")`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"params": tiny_state_dict()}, path)
    return path


def write_large_checkpoint(path: Path) -> Path:
    """The large network (ConvNeXt-L) in the same form; about 900 MB and a minute to make: for benchmarks."""
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().clone().contiguous() for k, v in large_network().state_dict().items()}
    torch.save({"params": state}, path)
    return path


def read_params(checkpoint: Path) -> dict[str, torch.Tensor]:
    return torch.load(checkpoint, map_location="cpu", weights_only=True)["params"]


def write_raw(checkpoint: Path, path: Path) -> Path:
    """A bare state dict, as ModelScope's `pytorch_model.pt`, a `.pth` without `params`, or `pytorch_model.bin`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(read_params(checkpoint), path)
    return path


def write_modelscope_pt(checkpoint: Path, path: Path) -> Path:
    """ModelScope's `pytorch_model.pt`: a bare state dict whose ConvNeXt still has its unused 4-way `head_cls`."""
    params = read_params(checkpoint)
    width = params["encoder.arch.norm.weight"].shape[0]
    generator = torch.Generator().manual_seed(SEED)
    params["encoder.arch.head_cls.weight"] = torch.randn(4, width, generator=generator) * 0.02
    params["encoder.arch.head_cls.bias"] = torch.zeros(4)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(params, path)
    return path


def write_safetensors(checkpoint: Path, path: Path) -> Path:
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(read_params(checkpoint), str(path))
    return path


def write_hf_folder(checkpoint: Path, folder: Path, weights: str = "model.safetensors") -> Path:
    """What PyTorchModelHubMixin's `save_pretrained` leaves: `config.json` and the weights."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(TINY_CONFIG, indent=2))
    if weights.endswith(".safetensors"):
        write_safetensors(checkpoint, folder / weights)
    else:
        write_raw(checkpoint, folder / weights)
    return folder
