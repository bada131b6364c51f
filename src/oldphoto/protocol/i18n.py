"""Sentences for people, in English and Simplified Chinese.

The Chinese stage sentences are the ones users of the original design know (SPEC); keep them word for word.
"""

from __future__ import annotations

from collections.abc import Iterable

DEFAULT_LANG = "en"
LANGUAGES = ("en", "zh-CN")

CATALOG: dict[str, dict[str, str]] = {
    "upload": {"en": "Image uploaded, getting ready to process", "zh-CN": "图像已上传，准备处理"},
    "queued": {"en": "Waiting in the queue: position {position}", "zh-CN": "排队等待中：第 {position} 位"},
    "queued.no_worker": {
        "en": "Waiting in the queue: position {position}. No worker is running right now; your photo starts when one is back",
        "zh-CN": "排队等待中：第 {position} 位。目前没有运行中的处理节点，节点恢复后将开始处理",
    },
    "preprocess": {"en": "Preprocessing the image...", "zh-CN": "正在预处理图像..."},
    "load_model": {"en": "Loading the DDColor model...", "zh-CN": "加载DDColor模型中..."},
    "load_model.memory": {"en": "DDColor model ready (already in memory)", "zh-CN": "DDColor模型已在内存中，直接使用"},
    "load_model.download": {
        "en": "Downloading the {model} model ({percent}%)...",
        "zh-CN": "正在下载 {model} 模型（{percent}%）...",
    },
    "load_model.prepare": {
        "en": "Preparing a faster runtime for the DDColor model (once per model and input size): {percent}%",
        "zh-CN": "正在为DDColor模型准备更快的运行时（每个模型和输入尺寸只需一次）：{percent}%",
    },
    "inference": {"en": "Running color inference...", "zh-CN": "执行颜色推理..."},
    "inference.block": {
        "en": "Running color inference: {block} ({index}/{total})",
        "zh-CN": "执行颜色推理：{block}（{index}/{total}）",
    },
    # The `precision` field of the inference event, for people (docs/protocol.md, "Precision"); `{dtype}` is used.
    "precision.faithful": {"en": "Precision: faithful ({dtype})", "zh-CN": "精度：忠实（{dtype}）"},
    "precision.fast": {"en": "Precision: fast ({dtype})", "zh-CN": "精度：快速（{dtype}）"},
    "precision.no_native_bf16": {
        "en": "Precision: {dtype}; fast needs a CPU with native bfloat16 (AVX-512 BF16 or AMX), which this one lacks",
        "zh-CN": "精度：{dtype}；快速模式需要原生支持 bfloat16 的 CPU（AVX-512 BF16 或 AMX），本机没有",
    },
    "precision.unmeasured_model": {
        "en": "Precision: {dtype}; fast was never measured for this model's colours, so it runs faithful",
        "zh-CN": "精度：{dtype}；此模型的快速模式尚未测量颜色差异，因此以忠实模式运行",
    },
    "precision.colour_limit": {
        "en": "Precision: {dtype}; fast would change this model's colours visibly, so it runs faithful",
        "zh-CN": "精度：{dtype}；快速模式会明显改变此模型的颜色，因此以忠实模式运行",
    },
    "precision.not_faster": {
        "en": "Precision: {dtype}; fast is not faster for this model on this CPU, so it runs faithful",
        "zh-CN": "精度：{dtype}；在此 CPU 上快速模式对此模型并不更快，因此以忠实模式运行",
    },
    "precision.device": {
        "en": "Precision: {dtype}; fast is for the CPU and CUDA only",
        "zh-CN": "精度：{dtype}；快速模式仅适用于 CPU 和 CUDA",
    },
    "precision.half_probe": {
        "en": "Precision: {dtype}; float16 drifted from float32 on this GPU, so it runs faithful",
        "zh-CN": "精度：{dtype}；float16 在此 GPU 上与 float32 偏差过大，因此以忠实模式运行",
    },
    "precision.runtime": {
        "en": "Precision: {dtype}; this model cannot run block by block, which fast needs",
        "zh-CN": "精度：{dtype}；此模型无法逐块运行，而快速模式需要逐块运行",
    },
    "postprocess": {"en": "Postprocessing done, building the color image", "zh-CN": "后处理完成，生成彩色图像"},
    "complete": {"en": "Restoration complete", "zh-CN": "修复完成"},
    # The ComfyUI backend (comfy/relay.py): a prompt's nodes, as ComfyUI runs them.
    "comfy.start": {"en": "ComfyUI started the workflow", "zh-CN": "ComfyUI 已开始执行工作流"},
    "comfy.cached": {"en": "ComfyUI reused {count} node result(s) it already had", "zh-CN": "ComfyUI 复用了 {count} 个已缓存的节点结果"},
    "comfy.node": {"en": "ComfyUI is running {class_type} (node {node})...", "zh-CN": "ComfyUI 正在执行 {class_type}（节点 {node}）..."},
    "comfy.step": {"en": "ComfyUI: {class_type} {value}/{max}", "zh-CN": "ComfyUI：{class_type} {value}/{max}"},
    "comfy.estimate": {
        "en": "ComfyUI: {class_type}, about {percent}% (estimated from its past runs; this node reports no progress)",
        "zh-CN": "ComfyUI：{class_type}，约 {percent}%（按以往耗时估算；该节点不报告进度）",
    },
    "cancelled": {"en": "Cancelled", "zh-CN": "已取消"},
    "error": {"en": "Failed: {error}", "zh-CN": "处理失败：{error}"},
    "load_image": {"en": "Reading the photo...", "zh-CN": "正在读取照片..."},
    "save_image": {"en": "Saving the result...", "zh-CN": "正在保存结果..."},
    "denoise.preprocess": {"en": "Preparing to remove noise...", "zh-CN": "准备去除噪点..."},
    "denoise.inference": {
        "en": "Removing noise (strength {strength})...",
        "zh-CN": "正在去除噪点（强度 {strength}）...",
    },
    "denoise.postprocess": {"en": "Noise removed", "zh-CN": "噪点已去除"},
    "upscale.preprocess": {"en": "Preparing to upscale...", "zh-CN": "准备放大图像..."},
    "upscale.load_model": {"en": "Loading the {model} model...", "zh-CN": "加载 {model} 模型中..."},
    "upscale.load_model.memory": {
        "en": "{model} model ready (already in memory)",
        "zh-CN": "{model} 模型已在内存中，直接使用",
    },
    "upscale.inference": {"en": "Upscaling...", "zh-CN": "正在放大图像..."},
    "upscale.tile": {"en": "Upscaling tile {index} of {total}...", "zh-CN": "正在放大第 {index}/{total} 块..."},
    "upscale.postprocess": {"en": "Upscaled to {width}x{height}", "zh-CN": "已放大到 {width}x{height}"},
    "sharpen.preprocess": {"en": "Preparing to sharpen...", "zh-CN": "准备锐化..."},
    "sharpen.inference": {"en": "Sharpening (amount {amount})...", "zh-CN": "正在锐化（强度 {amount}）..."},
    "sharpen.postprocess": {"en": "Sharpened", "zh-CN": "锐化完成"},
}


def translate(key: str, lang: str = DEFAULT_LANG, **params: object) -> str:
    entry = CATALOG.get(key)
    if entry is None:
        return key.format(**params) if params else key
    template = entry.get(lang) or entry[DEFAULT_LANG]
    try:
        return template.format(**params)
    except (KeyError, IndexError):
        return template


def pick_language(requested: str | None, accept_language: str | None = None) -> str:
    """`?lang=` wins; otherwise the first supported tag of Accept-Language; otherwise English."""
    for tag in _candidates(requested, accept_language):
        tag = tag.strip().split(";")[0].strip().lower()
        if tag.startswith("zh"):
            return "zh-CN"
        if tag.startswith("en"):
            return "en"
    return DEFAULT_LANG


def _candidates(requested: str | None, accept_language: str | None) -> Iterable[str]:
    if requested:
        yield requested
    if accept_language:
        yield from accept_language.split(",")
