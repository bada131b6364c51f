from __future__ import annotations

from pathlib import Path

import pytest

SHARED_PHOTOS = Path(__file__).resolve().parents[1].parent / "shared" / "photos"


def shared_photos() -> list[Path]:
    return sorted(SHARED_PHOTOS.glob("*.jpg")) if SHARED_PHOTOS.is_dir() else []


@pytest.fixture(scope="session")
def photos() -> list[Path]:
    """The real historical photographs of ../shared/photos; tests that need them skip where it is absent."""
    found = shared_photos()
    if not found:
        pytest.skip("../shared/photos is not present")
    return found


@pytest.fixture(scope="session")
def photo(photos: list[Path]) -> Path:
    return next((p for p in photos if p.name.startswith("detroit")), photos[0])


@pytest.fixture(scope="session")
def shared_models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A models dir the test servers of this test process share: the tiny checkpoint's ONNX graphs are exported once
    per input size (10-20 s each on two cores), not once per test module. Tests about the export itself, or that look
    into the cache, make their own."""
    return tmp_path_factory.mktemp("shared-models")


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A DDColor checkpoint in the authors' official form: the real tiny architecture with random weights."""
    from tests.helpers.checkpoints import write_tiny_checkpoint

    return write_tiny_checkpoint(tmp_path_factory.mktemp("checkpoints") / "ddcolor_tiny_random.pth")


@pytest.fixture
def lens_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """One entry per run of DDColor's query lens (segments.QueryLens) in this process while the test runs."""
    from oldphoto.models.ddcolor.segments import QueryLens

    calls: list[int] = []
    original = QueryLens.forward

    def counted(self: QueryLens, *args: object) -> object:
        calls.append(1)
        return original(self, *args)

    monkeypatch.setattr(QueryLens, "forward", counted)
    return calls
