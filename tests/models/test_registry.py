from __future__ import annotations

from oldphoto.models.registry import DDCOLOR_MODELS, HF_WEIGHT_FILES, known_model


def test_the_four_official_checkpoints_are_known_by_their_zoo_names() -> None:
    assert set(DDCOLOR_MODELS) == {"ddcolor_paper_tiny", "ddcolor_paper", "ddcolor_modelscope", "ddcolor_artistic"}
    for name, model in DDCOLOR_MODELS.items():
        assert model.name == name
        assert model.source.hub == "huggingface"
        assert model.source.repo == f"piddnad/{name}"
        assert model.source.files == HF_WEIGHT_FILES == ("model.safetensors", "pytorch_model.bin")
        assert model.input_size == 512
        assert model.description


def test_only_the_tiny_model_has_the_convnext_t_encoder() -> None:
    encoders = {name: model.encoder for name, model in DDCOLOR_MODELS.items()}
    assert encoders == {
        "ddcolor_paper_tiny": "convnext-t",
        "ddcolor_paper": "convnext-l",
        "ddcolor_modelscope": "convnext-l",
        "ddcolor_artistic": "convnext-l",
    }


def test_modelscope_copy_is_recorded_as_an_alternative_of_ddcolor_modelscope_only() -> None:
    modelscope = DDCOLOR_MODELS["ddcolor_modelscope"]
    (alternative,) = modelscope.alternatives
    assert alternative.hub == "modelscope"
    assert alternative.repo == "damo/cv_ddcolor_image-colorization"
    assert alternative.files == ("pytorch_model.pt",)
    assert modelscope.weight_files == ("model.safetensors", "pytorch_model.bin", "pytorch_model.pt")
    assert all(not m.alternatives for n, m in DDCOLOR_MODELS.items() if n != "ddcolor_modelscope")
    assert known_model("ddcolor_modelscope") is modelscope
    assert known_model("ddcolor_huge") is None
