"""DDColor's precision: which format each model runs in on each device, and the lowered engine that runs it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from oldphoto.engine.cancel import CancelToken
from oldphoto.engine.context import NodeContext, RunOptions
from oldphoto.engine.graph import NodeSpec
from oldphoto.engine.nodes.colorize import DDColorNode
from oldphoto.engine.reporter import Reporter
from oldphoto.models.ddcolor import Colorizer, load_colorizer, precision
from oldphoto.models.ddcolor import colorizer as colorizer_module
from oldphoto.models.ddcolor.precision import (
    FAITHFUL,
    Measured,
    PrecisionPlan,
    candidate_dtype,
    cpu_flags,
    encoder_name,
    has_native_bf16,
    lower_segments,
    parse_flags,
    plan,
)
from oldphoto.models.ddcolor.segments import build_segments, run_segments_torch
from oldphoto.protocol import Note
from tests.models.conftest import CPU, FAST_INPUT

BF16_CPU = frozenset({"fpu", "avx512f", "avx512_bf16"})
OLD_CPU = frozenset({"fpu", "avx2", "fma"})
GOOD = Measured(mean_de00=0.2, p99_de00=1.0, speedup=1.8)
BF16 = PrecisionPlan(requested="fast", dtype="bfloat16", reason="fast")
# bfloat16 keeps 8 bits of mantissa: on random weights whose ab spreads by tens, the encoder and decoder in bfloat16
# move ab by about 0.5 at most (benchmarks/precision.py turns this into colour differences on real photos).
BF16_AB_TOLERANCE = 3.0


def gray(size: int = FAST_INPUT, seed: int = 3) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(1, 1, size, size, generator=generator).expand(1, 3, -1, -1).contiguous()


@pytest.fixture
def measured(monkeypatch: pytest.MonkeyPatch) -> dict[str, Measured]:
    """precision.py's table, replaced for the test (the real one follows this machine's measurements)."""
    table: dict[str, Measured] = {}
    monkeypatch.setattr(precision, "CPU_BF16", table)
    return table


# -- the decision ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("device", ["cpu", "cuda", "mps"])
def test_faithful_is_float32_everywhere(device: str) -> None:
    assert plan("faithful", device, "convnext-t", BF16_CPU) == FAITHFUL
    assert FAITHFUL.dtype == "float32" and not FAITHFUL.lowered and FAITHFUL.reason == "faithful"


def test_fast_on_cuda_is_float16_whatever_the_cpu() -> None:
    chosen = plan("fast", "cuda", "convnext-l", OLD_CPU)
    assert (chosen.dtype, chosen.reason, chosen.requested) == ("float16", "fast", "fast")


def test_fast_on_a_cpu_with_native_bf16_and_a_model_measured_to_keep_colours(measured: dict[str, Measured]) -> None:
    measured["convnext-l"] = GOOD
    assert plan("fast", "cpu", "convnext-l", BF16_CPU).dtype == "bfloat16"
    assert plan("fast", "cpu", "convnext-l", {"amx_bf16"}).dtype == "bfloat16"


@pytest.mark.parametrize(
    ("numbers", "reason"),
    [
        (Measured(mean_de00=1.0, p99_de00=1.0, speedup=3.0), "colour_limit"),  # the limits are strict
        (Measured(mean_de00=0.5, p99_de00=2.5, speedup=3.0), "colour_limit"),
        (Measured(mean_de00=0.5, p99_de00=2.0, speedup=1.05), "not_faster"),
        (Measured(mean_de00=0.99, p99_de00=2.49, speedup=1.1), "fast"),
    ],
)
def test_fast_falls_back_to_float32_where_the_measurement_says_no(measured: dict[str, Measured], numbers: Measured, reason: str) -> None:
    measured["convnext-t"] = numbers
    chosen = plan("fast", "cpu", "convnext-t", BF16_CPU)
    assert chosen.reason == reason
    assert chosen.dtype == ("bfloat16" if reason == "fast" else "float32")


def test_fast_falls_back_to_float32_without_native_bf16_an_unmeasured_model_or_another_device(measured: dict[str, Measured]) -> None:
    measured["convnext-t"] = GOOD
    assert plan("fast", "cpu", "convnext-t", OLD_CPU).reason == "no_native_bf16"
    assert plan("fast", "cpu", "convnext-b", BF16_CPU).reason == "unmeasured_model"
    assert plan("fast", "cpu", None, BF16_CPU).reason == "unmeasured_model"
    assert plan("fast", "mps", "convnext-t", BF16_CPU).reason == "device"
    for reason in ("no_native_bf16", "unmeasured_model", "device"):
        assert reason in precision.REASONS


def test_an_unknown_precision_is_refused() -> None:
    with pytest.raises(ValueError, match="faithful, fast"):
        plan("turbo", "cpu", "convnext-t", BF16_CPU)


def test_the_shipped_table_holds_both_models_and_agrees_with_its_limits() -> None:
    assert set(precision.CPU_BF16) == {"convnext-t", "convnext-l"}
    for numbers in precision.CPU_BF16.values():
        assert numbers.reason in precision.REASONS


def test_cpu_flags_from_cpuinfo(tmp_path: Path) -> None:
    x86 = "processor\t: 0\nmodel name\t: Xeon\nflags\t\t: fpu avx512f avx512_bf16 amx_tile\n\nprocessor\t: 1\nflags\t: fpu\n"
    assert parse_flags(x86) == {"fpu", "avx512f", "avx512_bf16", "amx_tile"}  # the first CPU's
    assert parse_flags("processor\t: 0\nFeatures\t: fp asimd bf16\n") == {"fp", "asimd", "bf16"}  # ARM: not x86's flags
    assert parse_flags("") == frozenset()
    (tmp_path / "cpuinfo").write_text(x86)
    assert has_native_bf16(cpu_flags(tmp_path / "cpuinfo"))
    assert cpu_flags(tmp_path / "absent") == frozenset()
    assert not has_native_bf16({"fp", "asimd", "bf16"}) and not has_native_bf16(OLD_CPU)
    assert candidate_dtype("cuda", OLD_CPU) == "float16"
    assert candidate_dtype("cpu", BF16_CPU) == "bfloat16"
    assert candidate_dtype("cpu", OLD_CPU) == "float32"
    assert candidate_dtype("mps", BF16_CPU) == "float32"


def test_the_encoder_is_read_from_the_network(tiny_network: torch.nn.Module) -> None:
    assert encoder_name(tiny_network) == "convnext-t"
    assert encoder_name(torch.nn.Linear(2, 2)) is None


def test_the_plan_says_which_blocks_run_low() -> None:
    assert BF16.runs_low("encoder.stage3") and BF16.runs_low("decoder.upsample2")
    assert not BF16.runs_low("color_decoder.layer1") and not BF16.runs_low("refine_net") and not BF16.runs_low("decoder.last_shuf")
    assert not FAITHFUL.runs_low("encoder.stage3")
    assert BF16.fallback("half_probe").event() == {"requested": "fast", "dtype": "float32", "reason": "half_probe"}


# -- the lowered engine ---------------------------------------------------------------------------------------------


def test_lowered_segments_are_copies_and_leave_the_network_in_float32(tiny_network: torch.nn.Module) -> None:
    Colorizer(tiny_network, CPU)._forget_features()  # spandrel's dry run leaves gradient-tracking features
    segments = build_segments(tiny_network, FAST_INPUT, fold_tail=True)
    lowered = lower_segments(segments, BF16)
    by_name = {s.name: s for s in lowered}
    stage = by_name["encoder.stage3"].module
    assert stage is not next(s for s in segments if s.name == "encoder.stage3").module
    assert {p.dtype for name, p in stage.named_parameters() if name.endswith("pwconv1.weight")} == {torch.bfloat16}
    assert all(p.dtype == torch.float32 for p in tiny_network.parameters())
    assert by_name["color_decoder.layer1"].module is next(s for s in segments if s.name == "color_decoder.layer1").module
    # the decoder's spectral norm is baked into the copy, and stays on the network
    upsample = by_name["decoder.upsample1"].module
    assert not any("weight_orig" in name for name, _ in upsample.named_parameters())
    assert any("weight_orig" in name for name, _ in tiny_network.named_parameters())
    x = gray()
    full = run_segments_torch(segments, x)
    low = run_segments_torch(lowered, x, autocast=torch.bfloat16, low_blocks=BF16.runs_low)
    assert low.dtype == torch.float32
    assert 0 < float((full - low).abs().max()) < BF16_AB_TOLERANCE


def test_a_colorizer_runs_float32_until_told_otherwise_and_says_what_it_ran(tiny_network: torch.nn.Module) -> None:
    colorizer = Colorizer(tiny_network, CPU, runtime="torch")
    assert colorizer.precision == FAITHFUL and colorizer.precision_used(FAST_INPUT) == FAITHFUL
    x = gray()
    full = colorizer.infer(x)
    colorizer.use_runtime("auto", precision=BF16)
    assert colorizer.planned_runtime() == "torch"  # ONNX Runtime is float32: a lowered plan runs the torch segments
    low = colorizer.infer(x)
    assert colorizer.precision_used(FAST_INPUT) == BF16
    assert 0 < float(np.abs(full - low).max()) < BF16_AB_TOLERANCE
    colorizer.use_runtime("auto", precision=FAITHFUL)
    assert colorizer.engine_sizes == []  # another precision: the lowered engine is let go


def test_the_network_s_own_forward_cannot_run_low_and_says_so(tiny_network: torch.nn.Module) -> None:
    colorizer = Colorizer(tiny_network, CPU)
    colorizer.use_runtime("exact", precision=BF16)
    colorizer.infer(gray())
    assert colorizer.precision_used(FAST_INPUT) == BF16.fallback("runtime")


def test_float16_runs_only_when_the_probe_stays_within_tolerance(tiny_network: torch.nn.Module, monkeypatch: pytest.MonkeyPatch) -> None:
    """The CUDA path's check, run here on the CPU (PyTorch's CPU autocast does float16 too): no GPU needed."""
    half = PrecisionPlan(requested="fast", dtype="float16", reason="fast")
    colorizer = Colorizer(tiny_network, CPU, runtime="torch")
    colorizer.use_runtime("torch", precision=half)
    monkeypatch.setattr(colorizer_module, "HALF_TOLERANCE_AB", 100.0)
    colorizer.prepare(FAST_INPUT)
    assert colorizer.precision_used(FAST_INPUT) == half
    monkeypatch.setattr(colorizer_module, "HALF_TOLERANCE_AB", 0.0)
    colorizer.use_runtime("torch", precision=FAITHFUL)
    colorizer.use_runtime("torch", precision=half)
    colorizer.prepare(FAST_INPUT)
    assert colorizer.precision_used(FAST_INPUT) == half.fallback("half_probe")
    assert np.array_equal(colorizer.infer(gray()), Colorizer(tiny_network, CPU, runtime="torch").infer(gray()))


def test_load_colorizer_plans_the_precision_for_the_model_and_device(
    tiny_checkpoint: Path, measured: dict[str, Measured], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(precision, "cpu_flags", lambda: BF16_CPU)
    measured["convnext-t"] = GOOD
    colorizer, _ = load_colorizer(tiny_checkpoint, CPU, "auto", precision="fast")
    try:
        assert colorizer.precision.dtype == "bfloat16" and colorizer.planned_runtime() == "torch"
        measured["convnext-t"] = Measured(mean_de00=0.2, p99_de00=1.0, speedup=0.9)
        load_colorizer(tiny_checkpoint, CPU, "auto", precision="fast")
        assert colorizer.precision.reason == "not_faster"
        load_colorizer(tiny_checkpoint, CPU, "torch")  # no precision: left as it is
        assert colorizer.precision.reason == "not_faster" and colorizer.requested_runtime == "torch"
    finally:
        load_colorizer(tiny_checkpoint, CPU, "exact", precision="faithful")  # as the other tests expect it


def test_the_inference_event_carries_the_precision(
    tiny_checkpoint: Path, tmp_path: Path, measured: dict[str, Measured], monkeypatch: pytest.MonkeyPatch
) -> None:
    image = np.random.default_rng(2).integers(0, 256, (40, 50, 3), dtype=np.uint8)

    def inference_event(**options: object) -> Note:
        notes: list[Note] = []
        run = RunOptions(model=str(tiny_checkpoint), models_dir=tmp_path, device="cpu", input_size=FAST_INPUT, runtime="torch", **options)  # type: ignore[arg-type]
        node = DDColorNode.build(NodeSpec("c", "DDColor"))
        node.run(NodeContext(Reporter(notes.append, CancelToken()).for_node("c", node.source, 0.0, 1.0), run, image), image=image)
        assert [n.stage for n in notes if n.precision is not None] == ["inference"]  # the stage event only, not its steps
        return next(n for n in notes if n.precision is not None)

    event = inference_event()
    assert event.precision is not None and event.precision.model_dump() == FAITHFUL.event()
    monkeypatch.setattr(precision, "cpu_flags", lambda: OLD_CPU)
    event = inference_event(precision="fast")
    assert event.precision is not None and event.precision.model_dump() == {"requested": "fast", "dtype": "float32", "reason": "no_native_bf16"}
    monkeypatch.setattr(precision, "cpu_flags", lambda: BF16_CPU)
    measured["convnext-t"] = GOOD
    event = inference_event(precision="fast")
    assert event.precision is not None and event.precision.dtype == "bfloat16"
    inference_event()  # back to faithful for the tests after this one


def test_the_setting_reaches_the_run_options(monkeypatch: pytest.MonkeyPatch) -> None:
    from pydantic import ValidationError

    from oldphoto.settings import Settings
    from oldphoto.wiring import run_options

    monkeypatch.delenv("OLDPHOTO_PRECISION", raising=False)
    assert run_options(Settings()).precision == "faithful" == RunOptions().precision
    monkeypatch.setenv("OLDPHOTO_PRECISION", "fast")
    assert run_options(Settings()).precision == "fast"
    monkeypatch.setenv("OLDPHOTO_PRECISION", "turbo")
    with pytest.raises(ValidationError):
        Settings()


def test_the_precision_field_survives_the_job_log_and_reaches_the_wire() -> None:
    from oldphoto.jobs.store import restored_event, stored_body
    from oldphoto.protocol import JobEvent, translate

    event = JobEvent(job_id="j", seq=3, stage="inference", message_key="inference", progress=15, precision=BF16.event())
    back = restored_event("j", 3, stored_body(event))
    assert back.to_wire()["precision"] == {"requested": "fast", "dtype": "bfloat16", "reason": "fast"}
    assert "precision" not in JobEvent(job_id="j", seq=4, stage="inference", message_key="inference", progress=16).to_wire()
    for reason in precision.REASONS:  # every reason has its sentence, in both languages
        for lang in ("en", "zh-CN"):
            assert "float32" in translate(f"precision.{reason}", lang, dtype="float32")
