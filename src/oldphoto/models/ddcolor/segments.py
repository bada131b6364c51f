"""DDColor's forward pass cut into its 22 reported blocks, each a module with explicit inputs and outputs.

The network itself hands encoder features to the decoder through forward hooks kept on shared objects, which an
exported graph cannot follow and which let only one pass run at a time. Here the same submodules are called in
the same order, but every tensor a later block needs travels as a named value: the encoder's stages return their
normalised feature beside their output, the decoder's blocks take their skip feature as an input, and the colour
decoder's layers pass the queries along. Running the segments one after another gives the network's output
(checked against it before any segment is used; see `check_segments`), and each segment can be exported on its
own (ONNX) so the progress between blocks and the cancel checks survive any runtime.

Every official checkpoint (ConvNeXt-T or -L encoder, the multi-scale colour decoder with 100 queries, 3 scales,
9 layers) fits; any other layout raises `UnsupportedLayout` and the caller keeps the plain network.

`fold_tail=True` changes the tail, exactly by algebra. The network ends with `refine_net`, a 1x1 convolution
without activation, applied to `einsum(colour_embed, last_shuf(out2))` concatenated with the input; `last_shuf` is
a 1x1 convolution to 16x256 channels, a ReLU, a 4x pixel shuffle, a replication pad and a 2x2 average (the last
three linear and channel by channel). So the refine weights can be applied to the colour embedding first (2 x 256
numbers per image) and that mix moved before the shuffle and the blur. Because the colour decoder reads only the
decoder's three coarser outputs, never `last_shuf`'s, `last_shuf` can then run after it, with the mix applied to its
convolution's output a few hundred pixels at a time: the 4096-channel map (256 MB at 512 px), the full-resolution
256-channel feature map, the 100-channel product and the 103-channel concatenation are never made. The blocks are
then reported in the order they run: `decoder.last_shuf` after `color_decoder.layer9`. Only the order of float
sums changes (outputs equal to about 1e-5 of their range).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from oldphoto.models.ddcolor.values import INPUT, OUTPUT, batch_axis, last_uses


class UnsupportedLayout(Exception):
    """The network is not laid out as the official DDColor checkpoints are; segments cannot be cut from it."""


@dataclass(frozen=True)
class Segment:
    name: str  # the block name people see (the same as the hook-based progress)
    module: nn.Module
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]


# Pixels of `last_shuf` per step of the folded tail: its 4096-channel slice (4 MB at 256) stays in the CPU's cache.
TAIL_CHUNK = 256


def _normalize(network: Any, x: Tensor) -> Tensor:
    # DDColor normalises a 3-channel input with ImageNet statistics (mean and std are buffers of the network).
    return (x - network.mean) / network.std


class _Stem(nn.Module):
    def __init__(self, network: Any) -> None:
        super().__init__()
        self.register_buffer("mean", network.mean.detach().clone())
        self.register_buffer("std", network.std.detach().clone())
        self.down = network.encoder.arch.downsample_layers[0]

    def forward(self, x: Tensor) -> Tensor:
        return self.down(_normalize(self, x))


class _Down(nn.Module):
    def __init__(self, down: nn.Module) -> None:
        super().__init__()
        self.down = down

    def forward(self, x: Tensor) -> Tensor:
        return self.down(x)


class _Stage(nn.Module):
    """A ConvNeXt stage and the extra norm whose output the decoder reads (DDColor hooks `norm{i}`)."""

    def __init__(self, stage: nn.Module, norm: nn.Module, keep_output: bool) -> None:
        super().__init__()
        self.stage, self.norm, self.keep_output = stage, norm, keep_output

    def forward(self, x: Tensor) -> tuple[Tensor, ...]:
        x = self.stage(x)
        return (x, self.norm(x)) if self.keep_output else (self.norm(x),)


class _Upsample(nn.Module):
    """UnetBlockWide with its skip feature as an input instead of a hook."""

    def __init__(self, block: Any) -> None:
        super().__init__()
        self.shuf, self.bn, self.conv, self.relu = block.shuf, block.bn, block.conv, block.relu

    def forward(self, up_in: Tensor, skip: Tensor) -> Tensor:
        up_out = self.shuf(up_in)
        return self.conv(self.relu(torch.cat([up_out, self.bn(skip)], dim=1)))


class _LastShuf(nn.Module):
    def __init__(self, last_shuf: nn.Module) -> None:
        super().__init__()
        self.last_shuf = last_shuf

    def forward(self, x: Tensor) -> Tensor:
        return self.last_shuf(x)


class _ColorLayer(nn.Module):
    """One layer of the multi-scale colour decoder: cross-attention to one scale, self-attention, FFN.

    The first layer of each scale also projects that scale's feature map into the memory (`src`) that the later
    layers at the same scale reuse; the first layer of all makes the initial queries. The sine position code
    depends only on the feature map's height and width, fixed by the export's input size, so it is a buffer.
    """

    def __init__(self, decoder: Any, index: int, level_shape: tuple[int, int], first_at_level: bool) -> None:
        super().__init__()
        self.index = index
        self.level = index % decoder.num_feature_levels
        self.first_at_level = first_at_level
        self.cross = decoder.transformer_cross_attention_layers[index]
        self.self_attn = decoder.transformer_self_attention_layers[index]
        self.ffn = decoder.transformer_ffn_layers[index]
        self.query_embed = decoder.query_embed
        # Any: spandrel's modules, untyped; None unless this layer makes the queries / projects its scale.
        self.query_feat: Any = decoder.query_feat if index == 0 else None
        self.proj: Any = decoder.input_proj[self.level] if first_at_level else None
        self.level_embed: Any = decoder.level_embed if first_at_level else None
        height, width = level_shape
        probe = torch.zeros(1, 1, height, width)
        with torch.no_grad():
            pos = decoder.pe_layer(probe, None).flatten(2).permute(2, 0, 1)  # (HW, 1, C)
        self.register_buffer("pos", pos.contiguous())

    def forward(self, *args: Tensor) -> tuple[Tensor, ...]:
        if self.index == 0:
            (feature,) = args
            batch = feature.shape[0]
            output = self.query_feat.weight.unsqueeze(1).repeat(1, batch, 1)
        else:
            output, feature = args
        if self.first_at_level:
            src = self.proj(feature).flatten(2) + self.level_embed.weight[self.level][None, :, None]
            src = src.permute(2, 0, 1)
        else:
            src = feature
        # (tokens, 1, C): the additions inside the attention layers broadcast them over the batch, copying nothing.
        query_pos = self.query_embed.weight.unsqueeze(1)
        pos = self.pos
        output = self.cross(output, src, memory_mask=None, memory_key_padding_mask=None, pos=pos, query_pos=query_pos)
        output = self.self_attn(output, tgt_mask=None, tgt_key_padding_mask=None, query_pos=query_pos)
        output = self.ffn(output)
        return (output, src) if self.first_at_level else (output,)


class _Refine(nn.Module):
    """The colour decoder's head (norm, colour embedding, product with the upsampled feature) and refine_net."""

    def __init__(self, network: Any) -> None:
        super().__init__()
        decoder = network.decoder.color_decoder
        self.decoder_norm, self.color_embed = decoder.decoder_norm, decoder.color_embed
        self.refine = network.refine_net
        self.register_buffer("mean", network.mean.detach().clone())
        self.register_buffer("std", network.std.detach().clone())

    def forward(self, queries: Tensor, image_features: Tensor, x: Tensor) -> Tensor:
        embed = self.color_embed(self.decoder_norm(queries).transpose(0, 1))  # (B, Q, C)
        out = torch.einsum("bqc,bchw->bqhw", embed, image_features)
        return self.refine(torch.cat([out, _normalize(self, x)], dim=1))


class _FusedLastShuf(nn.Module):
    """`last_shuf`'s convolution and ReLU with the folded refine mix applied, chunk by chunk (see the module doc).

    mixed[b, o*s*s + k, p] = sum_c (R_q . E)[b, o, c] * relu(W[c*s*s + k] . out2[b, :, p] + bias[c*s*s + k]),
    with E the colour embedding (B, Q, C) and R_q the refine weights of the queries (2, Q): the channels of `last_shuf`'s
    output before the pixel shuffle, reduced to 2 per sub-pixel position (2*s*s in all).
    """

    weight: Tensor  # the buffers, for the type checker
    bias: Tensor
    w_queries: Tensor

    def __init__(self, network: Any, chunk: int) -> None:
        super().__init__()
        decoder = network.decoder.color_decoder
        last_shuf = network.decoder.last_shuf
        self.decoder_norm, self.color_embed = decoder.decoder_norm, decoder.color_embed
        self.scale = int(last_shuf.shuf.upscale_factor)
        ss = self.scale * self.scale
        conv = _single_conv(last_shuf.conv)
        assert conv is not None
        weight = _effective_weight(conv).flatten(1)  # (C*s*s, Cin), row c*s*s + k
        channels = weight.shape[0] // ss
        # Rows reordered to k*C + c: one (C, Cin) block per sub-pixel position k.
        self.register_buffer("weight", weight.view(channels, ss, -1).transpose(0, 1).reshape(ss * channels, -1).contiguous())
        bias = conv.bias.detach() if conv.bias is not None else torch.zeros(weight.shape[0])
        self.register_buffer("bias", bias.view(channels, ss).t().reshape(ss * channels, 1).contiguous())
        refine = _refine_conv(network)
        assert refine is not None
        queries = decoder.num_queries
        self.register_buffer("w_queries", _effective_weight(refine).flatten(1)[:, :queries].contiguous())  # (2, Q)
        self.chunk = chunk
        self.channels = channels

    def forward(self, queries: Tensor, out2: Tensor) -> Tensor:
        embed = self.color_embed(self.decoder_norm(queries).transpose(0, 1))  # (B, Q, C)
        mix = torch.matmul(self.w_queries, embed).unsqueeze(1)  # (B, 1, 2, C)
        batch, cin, height, width = out2.shape
        ss = self.scale * self.scale
        x = out2.reshape(batch, cin, height * width)
        parts = []
        for start in range(0, height * width, self.chunk):
            piece = x[:, :, start : start + self.chunk]  # (B, Cin, n)
            z = torch.relu(torch.matmul(self.weight, piece) + self.bias)  # (B, s*s*C, n)
            z = z.reshape(batch, ss, self.channels, piece.shape[-1])
            parts.append(torch.matmul(mix, z))  # (B, s*s, 2, n)
        mixed = torch.cat(parts, dim=-1) if len(parts) > 1 else parts[0]
        return mixed.transpose(1, 2).reshape(batch, -1, height, width)  # channel o*s*s + k, as pixel_shuffle reads


class QueryLens(nn.Module):
    """The colour queries' responses, exactly, at one sub-pixel of `last_shuf` per quarter-resolution pixel (lens.py).

    responses[b, q, p] = E[b, q] . relu(W_k out2[b, :, p] + bias_k): the product `einsum(colour_embed, ...)` that
    `refine_net` reads, before `last_shuf`'s 2x2 blur, at sub-pixel k of each pixel of `out2`. One of the 16 blocks
    of `last_shuf`'s convolution (1/16 of its cost), and the colour embedding the network computes anyway.
    """

    weight: Tensor  # the buffers, for the type checker
    bias: Tensor

    def __init__(self, network: Any, sub_pixel: tuple[int, int]) -> None:
        super().__init__()
        _check_layout(network)
        decoder = network.decoder.color_decoder
        last_shuf = network.decoder.last_shuf
        self.decoder_norm, self.color_embed = decoder.decoder_norm, decoder.color_embed
        scale = int(last_shuf.shuf.upscale_factor)
        row, column = sub_pixel
        if not (0 <= row < scale and 0 <= column < scale):
            raise ValueError(f"sub_pixel must lie within {scale} x {scale}, not {sub_pixel}")
        k = row * scale + column  # pixel_shuffle puts channel c*s*s + k at (y*s + k // s, x*s + k % s)
        conv = _single_conv(last_shuf.conv)
        assert conv is not None
        weight = _effective_weight(conv).flatten(1)  # (C*s*s, Cin)
        bias = conv.bias.detach() if conv.bias is not None else torch.zeros(weight.shape[0])
        self.register_buffer("weight", weight[k :: scale * scale].contiguous().view(-1, weight.shape[1], 1, 1))
        self.register_buffer("bias", bias[k :: scale * scale].clone().contiguous())

    def forward(self, queries: Tensor, out2: Tensor) -> Tensor:
        embed = self.color_embed(self.decoder_norm(queries).transpose(0, 1))  # (B, Q, C)
        features = torch.relu(F.conv2d(out2, self.weight, self.bias))  # (B, C, h, w)
        batch, channels, height, width = features.shape
        return torch.matmul(embed, features.reshape(batch, channels, height * width)).view(batch, -1, height, width)


def query_push(network: Any) -> Tensor:
    """`refine_net`'s weights on the queries' responses (2, Q): how far one unit of response moves a and b."""
    refine = _refine_conv(network)
    assert refine is not None
    return _effective_weight(refine).flatten(1)[:, : network.decoder.color_decoder.num_queries].contiguous()


def lens_inputs(segments: Sequence[Segment]) -> tuple[str, str]:
    """The values the lens reads in this cut: the last colour-decoder layer's queries and the decoder's `out2`."""
    queries = next(s.outputs[0] for s in reversed(segments) if s.name.startswith("color_decoder.layer"))
    return queries, "out2"


class _FoldedRefine(nn.Module):
    """The rest of `last_shuf` on the 2 mixed channels (shuffle, pad, blur) plus the refine weights of the input."""

    w_image: Tensor  # the buffers, for the type checker
    bias: Tensor

    def __init__(self, network: Any) -> None:
        super().__init__()
        last_shuf = network.decoder.last_shuf
        self.scale = int(last_shuf.shuf.upscale_factor)
        self.pad, self.blur, self.do_blur = last_shuf.pad, last_shuf.blur, bool(last_shuf.do_blur)
        refine = _refine_conv(network)
        assert refine is not None
        weight = _effective_weight(refine).flatten(1)
        queries = network.decoder.color_decoder.num_queries
        self.register_buffer("w_image", weight[:, queries:].contiguous().view(weight.shape[0], -1, 1, 1))  # (2, 3, 1, 1)
        bias = refine.bias.detach().clone() if refine.bias is not None else torch.zeros(weight.shape[0])
        self.register_buffer("bias", bias)
        self.register_buffer("mean", network.mean.detach().clone())
        self.register_buffer("std", network.std.detach().clone())

    def forward(self, mixed: Tensor, x: Tensor) -> Tensor:
        ab = F.pixel_shuffle(mixed, self.scale)  # (B, 2, H, W)
        if self.do_blur:
            ab = self.blur(self.pad(ab))
        return ab + F.conv2d(_normalize(self, x), self.w_image, self.bias)


def _single_conv(module: nn.Module) -> nn.Conv2d | None:
    """The module's one 1x1 convolution, when it holds nothing else (containers aside): a linear map of channels."""
    layers = [m for m in module.modules() if not isinstance(m, nn.Sequential)]
    if len(layers) == 1 and isinstance(layers[0], nn.Conv2d) and layers[0].kernel_size == (1, 1) and layers[0].groups == 1:
        return layers[0]
    return None


def _refine_conv(network: Any) -> nn.Conv2d | None:
    return _single_conv(network.refine_net)


def _effective_weight(conv: nn.Module) -> Tensor:
    """A convolution's weight as its forward uses it (spectral norm divides by sigma in a pre-hook, in eval mode
    with the stored singular vectors and no power iteration)."""
    from torch.nn.utils.spectral_norm import SpectralNorm

    for hook in conv._forward_pre_hooks.values():
        if isinstance(hook, SpectralNorm):
            with torch.no_grad():
                return hook.compute_weight(conv, do_power_iteration=False).detach().clone()
    return conv.weight.detach().clone()  # type: ignore[operator]


def _check_layout(network: Any) -> None:
    try:
        arch = network.encoder.arch
        decoder = network.decoder
        color = decoder.color_decoder
        ok = (
            len(arch.downsample_layers) == 4
            and len(arch.stages) == 4
            and len(decoder.layers) == 3
            and hasattr(color, "transformer_ffn_layers")
            and color.num_feature_levels == 3
            and not getattr(network, "do_normalize", False)
            and _refine_conv(network) is not None
            and _single_conv(decoder.last_shuf.conv) is not None
            and isinstance(decoder.last_shuf.relu, nn.ReLU)
            and isinstance(decoder.last_shuf.blur, nn.AvgPool2d)
            and not color.transformer_ffn_layers[0].normalize_before
        )
    except (AttributeError, TypeError) as exc:
        raise UnsupportedLayout(f"not the official DDColor layout ({exc})") from None
    if not ok:
        raise UnsupportedLayout("not the official DDColor layout (multi-scale colour decoder, ConvNeXt encoder)")


def build_segments(network: nn.Module, input_size: int, *, fold_tail: bool = False, chunk: int = TAIL_CHUNK) -> list[Segment]:
    """The network's blocks under the names its hook-based progress uses, in the order they run here."""
    net: Any = network
    _check_layout(net)
    arch, decoder = net.encoder.arch, net.decoder
    color = decoder.color_decoder
    segments: list[Segment] = [Segment("encoder.stem", _Stem(net), (INPUT,), ("h1",))]
    current = "h1"
    for i in range(4):
        if i > 0:
            segments.append(Segment(f"encoder.downsample{i + 1}", _Down(arch.downsample_layers[i]), (current,), (f"d{i + 1}",)))
            current = f"d{i + 1}"
        last = i == 3
        module: nn.Module = _Stage(arch.stages[i], getattr(arch, f"norm{i}"), keep_output=not last)
        outputs = (f"f{i}",) if last else (f"s{i + 1}", f"f{i}")
        segments.append(Segment(f"encoder.stage{i + 1}", module, (current,), outputs))
        current = f"s{i + 1}"
    # The decoder climbs back up: each block takes the previous output and the encoder feature one level up.
    previous = "f3"
    for i in range(3):
        segments.append(Segment(f"decoder.upsample{i + 1}", _Upsample(decoder.layers[i]), (previous, f"f{2 - i}"), (f"out{i}",)))
        previous = f"out{i}"
    if not fold_tail:
        segments.append(Segment("decoder.last_shuf", _LastShuf(decoder.last_shuf), ("out2",), ("out3",)))
    # out0, out1, out2 are at 1/16, 1/8 and 1/4 of the input size.
    level_shapes = [(input_size // 16, input_size // 16), (input_size // 8, input_size // 8), (input_size // 4, input_size // 4)]
    queries = None
    for i in range(color.num_layers):
        level = i % color.num_feature_levels
        first = i < color.num_feature_levels
        module = _ColorLayer(color, i, level_shapes[level], first)
        feature = f"out{level}" if first else f"src{level}"
        inputs = (feature,) if i == 0 else (queries, feature)
        out_name = f"q{i + 1}"
        outputs = (out_name, f"src{level}") if first else (out_name,)
        segments.append(Segment(f"color_decoder.layer{i + 1}", module, inputs, outputs))  # type: ignore[arg-type]
        queries = out_name
    if fold_tail:
        # The folded tail runs after the colour decoder (it needs the colour embedding): see the module doc.
        segments.append(Segment("decoder.last_shuf", _FusedLastShuf(net, chunk), (queries, "out2"), ("mixed",)))  # type: ignore[arg-type]
        segments.append(Segment("refine_net", _FoldedRefine(net), ("mixed", INPUT), (OUTPUT,)))
    else:
        segments.append(Segment("refine_net", _Refine(net), (queries, "out3", INPUT), (OUTPUT,)))  # type: ignore[arg-type]
    for segment in segments:
        # A new wrapper module starts in training mode; an exporter that restores "the mode it found" would then
        # put the network's own BatchNorm and spectral norm layers into training mode (and update their statistics).
        segment.module.eval()
    return segments


def folded_block_names(network: nn.Module) -> list[str]:
    """The block names in the order the folded cut runs them (`decoder.last_shuf` just before `refine_net`)."""
    _check_layout(network)
    from oldphoto.models.ddcolor.progress import network_blocks

    names = [name for name, _ in network_blocks(network) if name != "decoder.last_shuf"]
    return [*names[:-1], "decoder.last_shuf", names[-1]]


def run_segments_torch(
    segments: list[Segment],
    x: Tensor,
    after_block: Callable[[int, int, str], Sequence[int] | None] | None = None,
    *,
    autocast: torch.dtype | None = None,
    low_blocks: Callable[[str], bool] | None = None,
) -> Tensor:
    """The segments one after another in PyTorch; `after_block` may name the rows of the batch to go on with.

    With `autocast` (a lower precision: precision.py), the blocks for which `low_blocks(name)` holds run under
    autocast (without `low_blocks`: every segment but the last); the others get float32 inputs.
    """
    return _run_values(segments, x, after_block, autocast=autocast, low_blocks=low_blocks)[OUTPUT]


def run_segments_torch_lens(
    segments: list[Segment],
    lens: Segment,
    x: Tensor,
    after_block: Callable[[int, int, str], Sequence[int] | None] | None = None,
    *,
    autocast: torch.dtype | None = None,
    low_blocks: Callable[[str], bool] | None = None,
) -> tuple[Tensor, Tensor]:
    """`run_segments_torch` with the lens run (float32, unreported) as soon as its inputs exist: (ab, responses)."""
    values = _run_values(segments, x, after_block, autocast=autocast, low_blocks=low_blocks, lens=lens)
    return values[OUTPUT], values[lens.outputs[0]]


def _run_values(
    segments: list[Segment],
    x: Tensor,
    after_block: Callable[[int, int, str], Sequence[int] | None] | None,
    *,
    autocast: torch.dtype | None,
    low_blocks: Callable[[str], bool] | None,
    lens: Segment | None = None,
) -> dict[str, Tensor]:
    values: dict[str, Tensor] = {INPUT: x}
    drops = last_uses(segments)
    total = len(segments)
    with torch.inference_mode():
        for index, (segment, drop) in enumerate(zip(segments, drops, strict=True), 1):
            args = [values[name] for name in segment.inputs]
            low = index < total if low_blocks is None else low_blocks(segment.name)
            if autocast is not None and low:
                with torch.autocast(device_type=x.device.type, dtype=autocast):
                    outs = segment.module(*args)
            else:
                outs = segment.module(*[arg.float() for arg in args])
            values.update(zip(segment.outputs, outs if isinstance(outs, tuple) else (outs,), strict=True))
            if lens is not None and lens.outputs[0] not in values and all(name in values for name in lens.inputs):
                # Before the drops below free its inputs; its output then travels (and loses rows) with the batch.
                values[lens.outputs[0]] = lens.module(*[values[name].float() for name in lens.inputs])
            for name in drop:
                del values[name]
            if after_block is not None:
                rows = after_block(index, total, segment.name)
                if rows is not None:
                    keep = torch.as_tensor(list(rows), dtype=torch.long, device=x.device)
                    values = {name: value.index_select(batch_axis(name), keep) for name, value in values.items()}
    return values
