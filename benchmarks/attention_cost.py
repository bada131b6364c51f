"""What the colour-query maps cost (issue 13, item 4: under 10 % of the colorize time): one colorize pass with and
without the query lens, side by side, on each runtime and input size.

"Without" is the pass a job makes with OLDPHOTO_ATTENTION off (`Colorizer.infer`); "with" is what the colorize node
does more when it is on: the pass with the lens (`Colorizer.infer_lens`), the reading (dominant query, shares, top
queries) and the drawing of the PNGs (imaging/querymaps.py). Calls alternate (with, without, the order turning every
round), and each pair is compared on its own ("paired extra"). On a machine shared with other work the load moves
more between rounds than the lens costs, so the lens's own computation is also timed alone, on inputs of a pass's
shapes (the torch module or the ONNX graph), with the drawing of the maps: "lens + maps / pass" is the share the
issue bounds. The ONNX lens graph is exported before the first round (once per weights and size, like the segments).

Weights: the tiny architecture with seeded random weights (same compute as the real one; tests/helpers/checkpoints.py).

Run: .venv/bin/python benchmarks/attention_cost.py [--sizes 512 256] [--runtimes torch onnx] [--rounds 5] [--quick]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import MODELS_DIR, load_avg, print_header, table, tiny_checkpoint  # noqa: E402

if TYPE_CHECKING:
    from oldphoto.models.ddcolor import Colorizer

# The issue's bound on the maps' share of the colorize time.
BUDGET = 0.10


def gray_input(size: int):  # type: ignore[no-untyped-def]
    import numpy as np

    ramp = np.linspace(0.05, 0.95, size, dtype=np.float32)
    image = np.sqrt(ramp[None, :] * ramp[:, None])
    image[size // 4 : size // 2, size // 4 : 3 * size // 4] = 0.85
    return np.ascontiguousarray(np.broadcast_to(image, (1, 3, size, size)), dtype=np.float32)


def measure(runtime: str, size: int, rounds: int) -> dict[str, float]:
    from oldphoto.engine.nodes.colorize import query_maps
    from oldphoto.models.ddcolor import load_colorizer

    colorizer, _ = load_colorizer(tiny_checkpoint(), "cpu", runtime, cache_dir=MODELS_DIR)
    colorizer.prepare(size, lens=True)
    used = colorizer.runtime(size)
    x = gray_input(size)
    photo = (size * 3 // 4, size)
    lens_alone = _lens_alone(colorizer, size)
    drawing: list[float] = []

    def plain() -> float:
        started = time.perf_counter()
        colorizer.infer(x)
        return time.perf_counter() - started

    def with_lens() -> float:
        started = time.perf_counter()
        _, responses = colorizer.infer_lens(x)
        assert responses is not None, f"{used} gave no lens"
        drawn = time.perf_counter()
        query_maps(responses, photo)
        drawing.append(time.perf_counter() - drawn)
        return time.perf_counter() - started

    plain(), with_lens(), lens_alone()  # warm: sessions built, caches filled
    without, within, alone = [], [], []
    for index in range(rounds):
        pair = (plain, with_lens) if index % 2 == 0 else (with_lens, plain)
        for call in pair:
            (without if call is plain else within).append(call())
        alone.append(lens_alone())
    base = statistics.median(without)
    # On a shared machine the load moves between rounds: each pair of neighbouring calls is compared on its own.
    paired = statistics.median(w / o - 1.0 for w, o in zip(within, without, strict=True))
    maps = statistics.median(drawing[1:] or drawing)
    lens = statistics.median(alone)
    return {  # type: ignore[dict-item]
        "runtime": used,
        "without_s": base,
        "with_s": statistics.median(within),
        "extra": paired,
        "lens_s": lens,
        "maps_s": maps,
        "share": (lens + maps) / base,
    }


def _lens_alone(colorizer: Colorizer, size: int) -> Callable[[], float]:
    """The lens's own computation, on inputs of a pass's shapes: the module (torch) or the graph (onnx)."""
    import numpy as np

    generator = np.random.default_rng(0)
    queries = generator.standard_normal((100, 1, 256), dtype=np.float32)
    out2 = np.abs(generator.standard_normal((1, 256, size // 4, size // 4), dtype=np.float32))
    engine = colorizer._engine(size)
    if engine.name == "onnx":
        session, index = engine._lens_session()  # type: ignore[attr-defined]
        feed = dict(zip(index["inputs"], (queries, out2), strict=True))

        def run_graph() -> float:
            started = time.perf_counter()
            session.run(None, feed)
            return time.perf_counter() - started

        return run_graph
    import torch

    module = colorizer.lens_module()
    q, o = torch.from_numpy(queries), torch.from_numpy(out2)

    def run_module() -> float:
        started = time.perf_counter()
        with torch.inference_mode():
            module(q, o)
        return time.perf_counter() - started

    return run_module


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 256])
    parser.add_argument("--runtimes", nargs="+", default=["torch", "onnx"])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="64 px, one round: that the script runs, not its numbers")
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes, args.rounds = [64], 1
    print_header("Colour-query maps: colorize time with and without the lens")
    rows = []
    for runtime in args.runtimes:
        for size in args.sizes:
            result = measure(runtime, size, args.rounds)
            rows.append(
                [
                    result["runtime"],
                    size,
                    result["without_s"],
                    result["with_s"],
                    f"{result['extra'] * 100:+.1f} %",
                    result["lens_s"],
                    result["maps_s"],
                    f"{result['share'] * 100:.1f} %",
                    "yes" if result["share"] < BUDGET else "NO",
                    load_avg(),
                ]
            )
            print(f"  {result['runtime']} {size}: {result['without_s']:.3f} s -> {result['with_s']:.3f} s", file=sys.stderr, flush=True)
    headers = [
        "runtime",
        "input",
        "pass without (s)",
        "pass with lens + maps (s)",
        "paired extra",
        "lens alone (s)",
        "maps (s)",
        "lens + maps / pass",
        f"< {BUDGET:.0%}",
        "load avg",
    ]
    out = table(headers, rows)
    print(out)
    return out


if __name__ == "__main__":
    main()
