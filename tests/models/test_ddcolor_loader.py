from __future__ import annotations

import os
import pickle
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from oldphoto.errors import ModelInvalid, ModelMissing
from oldphoto.models.cache import MODEL_CACHE
from oldphoto.models.ddcolor import build_network, checkpoint_file, is_loaded, load_colorizer, read_state_dict
from oldphoto.models.ddcolor.loader import cache_key
from tests.helpers.checkpoints import read_params
from tests.models.conftest import CPU, FAST_INPUT

FORMS = ["pth_params", "pth_raw", "pt_modelscope", "safetensors", "bin", "hf_folder", "hf_folder_bin"]


def gray_batch(side: int = FAST_INPUT) -> torch.Tensor:
    generator = torch.Generator().manual_seed(7)
    return torch.rand(1, 1, side, side, generator=generator).expand(1, 3, side, side).contiguous()


@pytest.fixture(scope="module")
def expected_ab(tiny_network: torch.nn.Module) -> torch.Tensor:
    with torch.inference_mode():
        return tiny_network(gray_batch())


@pytest.mark.parametrize("form", FORMS)
def test_every_official_form_loads_and_predicts_the_same(
    form: str, checkpoint_form: Callable[[str], Path], expected_ab: torch.Tensor
) -> None:
    MODEL_CACHE.clear()  # an earlier test of this process may have loaded the same file
    colorizer, from_memory = load_colorizer(checkpoint_form(form), CPU)
    assert not from_memory
    assert colorizer.native_input_size == 512
    assert torch.equal(torch.from_numpy(colorizer.infer(gray_batch())), expected_ab)
    MODEL_CACHE.clear()  # seven tiny models are 1.5 GB of memory


def test_the_tiny_checkpoint_is_the_authors_training_output_form(tiny_checkpoint: Path) -> None:
    raw = torch.load(tiny_checkpoint, map_location="cpu", weights_only=True)
    assert list(raw) == ["params"]
    params = raw["params"]
    assert params["refine_net.0.0.weight_orig"].shape == (2, 103, 1, 1)  # 100 queries + the 3 input channels -> ab
    assert params["decoder.color_decoder.query_feat.weight"].shape == (100, 256)
    assert params["decoder.color_decoder.level_embed.weight"].shape == (3, 256)
    assert params["encoder.arch.stages.2.8.gamma"].shape == (384,)  # ConvNeXt-T: 9 blocks in stage 3, 384 wide
    assert "decoder.color_decoder.transformer_ffn_layers.8.linear1.weight" in params
    assert "decoder.color_decoder.transformer_ffn_layers.9.linear1.weight" not in params


def test_the_tiny_network_predicts_finite_ab_of_a_real_spread(expected_ab: torch.Tensor) -> None:
    assert expected_ab.shape == (1, 2, FAST_INPUT, FAST_INPUT)
    assert torch.isfinite(expected_ab).all()
    assert 5.0 < float(expected_ab.std()) < 60.0


def test_params_win_over_params_ema_as_in_the_authors_loader(tiny_checkpoint: Path, tmp_path: Path) -> None:
    params = read_params(tiny_checkpoint)
    ema = {key: torch.zeros_like(value) for key, value in params.items()}
    torch.save({"params_ema": ema, "params": params, "iter": 40000}, tmp_path / "both.pth")
    read = read_state_dict(tmp_path / "both.pth")
    assert read.keys() == params.keys()
    assert all(torch.equal(read[key], params[key]) for key in params)


def test_wrapper_prefixes_are_stripped(tiny_checkpoint: Path, tmp_path: Path) -> None:
    params = read_params(tiny_checkpoint)
    torch.save({"module." + key: value for key, value in params.items()}, tmp_path / "dp.pth")
    assert read_state_dict(tmp_path / "dp.pth").keys() == params.keys()


def test_a_folder_without_weights_is_missing(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ModelMissing, match="holds no weights"):
        checkpoint_file(tmp_path)


def test_a_file_that_is_not_a_checkpoint_is_model_invalid(tmp_path: Path) -> None:
    (tmp_path / "noise.pth").write_bytes(os.urandom(4096))
    with pytest.raises(ModelInvalid, match="could not be read as a checkpoint") as caught:
        read_state_dict(tmp_path / "noise.pth")
    assert caught.value.code == "model_invalid"


def test_a_truncated_safetensors_is_model_invalid(checkpoint_form: Callable[[str], Path], tmp_path: Path) -> None:
    whole = checkpoint_form("safetensors").read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(whole[: len(whole) // 3])
    with pytest.raises(ModelInvalid, match="could not be read"):
        read_state_dict(tmp_path / "cut.safetensors")


def test_a_pickle_with_code_is_refused_not_run(tmp_path: Path) -> None:
    class Payload:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return (os.system, ("echo pwned > " + str(tmp_path / "pwned"),))

    (tmp_path / "evil.pth").write_bytes(pickle.dumps({"params": Payload()}))
    with pytest.raises(ModelInvalid):
        read_state_dict(tmp_path / "evil.pth")
    assert not (tmp_path / "pwned").exists()


def test_another_networks_weights_are_not_a_ddcolor_checkpoint(tmp_path: Path) -> None:
    torch.save(torch.nn.Conv2d(3, 64, 3).state_dict(), tmp_path / "conv.pth")
    with pytest.raises(ModelInvalid, match="not a DDColor checkpoint"):
        build_network(read_state_dict(tmp_path / "conv.pth"))


def test_a_ddcolor_state_dict_with_a_wrong_shape_does_not_fit(tiny_checkpoint: Path) -> None:
    params = read_params(tiny_checkpoint)
    params["decoder.color_decoder.query_embed.weight"] = torch.zeros(100, 128)
    with pytest.raises(ModelInvalid, match="does not fit the DDColor network"):
        build_network(params)


def test_a_second_load_comes_from_memory_until_the_file_changes(tiny_checkpoint: Path, tmp_path: Path) -> None:
    path = tmp_path / "model.pth"
    path.write_bytes(tiny_checkpoint.read_bytes())  # a path of its own, so no other test has loaded it
    assert not is_loaded(path, CPU)
    first, from_memory = load_colorizer(path, CPU)
    assert not from_memory and is_loaded(path, CPU)
    again, from_memory = load_colorizer(path, CPU)
    assert from_memory and again is first
    key = cache_key(path, CPU)
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))  # the file was replaced
    assert cache_key(path, CPU) != key and not is_loaded(path, CPU)
    assert cache_key(path, torch.device("meta")) != cache_key(path, CPU)  # another device is another entry


def test_the_old_pickle_format_is_read_too(tmp_path: Path) -> None:
    """Checkpoints saved before torch 1.6 are not zip files and cannot be memory-mapped; they still load."""
    params = {"refine_net.0.0.weight_orig": torch.arange(6.0).reshape(2, 3, 1, 1)}
    torch.save({"params": params}, tmp_path / "old.pth", _use_new_zipfile_serialization=False)
    read = read_state_dict(tmp_path / "old.pth")
    assert torch.equal(read["refine_net.0.0.weight_orig"], params["refine_net.0.0.weight_orig"])
