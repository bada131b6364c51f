from __future__ import annotations

import pytest
from pydantic import ValidationError

from oldphoto.protocol import JobEvent, client_message, pick_language, translate
from oldphoto.protocol.i18n import CATALOG, LANGUAGES


def test_every_sentence_exists_in_every_language_with_the_same_parameters() -> None:
    import string

    for key, sentences in CATALOG.items():
        assert set(sentences) == set(LANGUAGES), key
        fields = [{f for _, f, _, _ in string.Formatter().parse(s) if f} for s in sentences.values()]
        assert all(f == fields[0] for f in fields), key


def test_the_seed_chinese_stage_sentences_are_kept_word_for_word() -> None:
    assert translate("upload", "zh-CN") == "图像已上传，准备处理"
    assert translate("preprocess", "zh-CN") == "正在预处理图像..."
    assert translate("load_model", "zh-CN") == "加载DDColor模型中..."
    assert translate("inference", "zh-CN") == "执行颜色推理..."
    assert translate("postprocess", "zh-CN") == "后处理完成，生成彩色图像"
    assert translate("complete", "zh-CN") == "修复完成"


@pytest.mark.parametrize(
    ("query", "header", "expected"),
    [("zh-CN", None, "zh-CN"), (None, "zh-TW,zh;q=0.9", "zh-CN"), (None, "fr-FR, en;q=0.5", "en"), (None, None, "en"), ("en", "zh-CN", "en")],
)
def test_language_choice(query: str | None, header: str | None, expected: str) -> None:
    assert pick_language(query, header) == expected


def test_wire_form_keeps_the_seed_fields_and_drops_internal_ones() -> None:
    event = JobEvent(job_id="j", seq=3, type="error", stage="inference", message_key="error", message_params={"error": "boom"}, progress=0, error="boom", code="internal_error")
    wire = event.to_wire("en")
    assert {"type", "job_id", "seq", "ts", "stage", "message", "progress", "error", "code", "source"} <= set(wire)
    assert "message_key" not in wire and wire["error"] == "boom" and wire["progress"] == 0


def test_client_messages_are_validated() -> None:
    assert client_message.validate_python({"type": "subscribe", "job_id": "x", "after_seq": 4}).after_seq == 4
    with pytest.raises(ValidationError):
        client_message.validate_python({"type": "subscribe", "job_id": "x", "after_seq": -1})
    with pytest.raises(ValidationError):
        client_message.validate_python({"type": "explode"})
