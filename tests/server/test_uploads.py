"""Hostile uploads against a real `oldphoto serve` process (issue "Security", item 5).

Every case of `hostile_corpus()` goes to one server as multipart, under its own file name and content type; each
must get its documented answer (never a 5xx), the accepted ones must come back as PNGs of the right size, upright
and with their transparency, and the process must stay up with a bounded memory footprint. A second server with a
1 MB limit shows that an oversized body is refused without being held in memory, with or without Content-Length.
Files land under generated names only, and nothing the server serves reaches its data dir.

Rate limits are per user (30 jobs a minute) and per address (60 a minute), so the corpus is sent by several users,
each from its own loopback address (Linux routes all of 127.0.0.0/8 to the loopback interface).
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import jwt
import numpy as np
import psutil
import pytest
from PIL import Image

from tests.helpers.hostile import UPRIGHT_QUADRANTS, UPRIGHT_SIZE, Case, hostile_corpus
from tests.helpers.server import ServerProcess, start_server

SECRET = "uploads-test-secret-0123456789-0123456789-abcdef"
STATUS = {"ok": 202, "unsupported_format": 415, "too_many_pixels": 413, "too_large": 413, "invalid_image": 422}
BATCH = 25  # cases per user and address: under job:user (30/minute) and job:address (60/minute)
FINAL = {"succeeded", "failed", "cancelled"}

# How much the web process may grow while it answers the whole corpus. It decodes every upload itself (to refuse
# a bad one before queueing it), so this bounds what the bombs, the truncated files and the odd modes cost it.
CORPUS_PEAK_GROWTH_MB = 64
CORPUS_KEPT_GROWTH_MB = 32
# An oversized body must be cut off, not read into memory: the peak may not grow by anything like its size.
OVERSIZED_BODY_MB = 64
OVERSIZED_PEAK_GROWTH_MB = 8


# ------------------------------------------------------------------------------------------------- helpers


def token(user: str, ttl: int = 600) -> str:
    return jwt.encode({"sub": user, "exp": int(time.time()) + ttl}, SECRET, algorithm="HS256")


def client_from(server: ServerProcess, user: str, address: str) -> httpx.Client:
    """A client of `user` whose connections come from `address` (its own rate-limit bucket)."""
    return httpx.Client(
        base_url=server.url,
        headers={"Authorization": f"Bearer {token(user)}"},
        transport=httpx.HTTPTransport(local_address=address),
        timeout=60,
    )


def rss_mb(server: ServerProcess) -> float:
    return psutil.Process(server.process.pid).memory_info().rss / 2**20


def reset_peak(server: ServerProcess) -> None:
    """Reset the kernel's high-water mark of the server's resident memory (VmHWM) to its current RSS."""
    Path(f"/proc/{server.process.pid}/clear_refs").write_text("5")


def peak_mb(server: ServerProcess) -> float:
    status = Path(f"/proc/{server.process.pid}/status").read_text()
    return int(re.search(r"^VmHWM:\s+(\d+) kB", status, re.MULTILINE).group(1)) / 1024


def assert_healthy(server: ServerProcess) -> dict[str, Any]:
    assert server.process.poll() is None, f"the server exited with {server.process.returncode}:\n{server.log()[-4000:]}"
    response = httpx.get(f"{server.url}/healthz", timeout=10)
    assert response.status_code == 200, response.text
    health = response.json()
    assert health["status"] == "ok" and health["workers"] >= 1, health
    return health


def png(width: int, height: int, seed: int = 0) -> bytes:
    """Noise: it does not compress, so the file is about 3 x width x height bytes."""
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "PNG", compress_level=0)
    return out.getvalue()


def raw_get(server: ServerProcess, target: str) -> tuple[int, bytes]:
    """GET with the request-target exactly as given: httpx would normalise `..` away before sending it."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


def wait_final(http: httpx.Client, job_ids: list[str], timeout: float = 90) -> dict[str, dict[str, Any]]:
    """The final view of each job, polling the caller's job list (one request a round for all of them)."""
    deadline = time.monotonic() + timeout
    while True:
        views = {job["job_id"]: job for job in http.get("/api/jobs").json()}
        if all(views.get(j, {}).get("status") in FINAL for j in job_ids) or time.monotonic() > deadline:
            return {j: views.get(j, {}) for j in job_ids}
        time.sleep(0.2)


# ------------------------------------------------------------------------------------------------- the corpus


@pytest.fixture(scope="module")
def corpus_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("uploads")
    env = {
        "OLDPHOTO_TEST_NODES": "1",
        "OLDPHOTO_JWT_SECRET": SECRET,
        "OLDPHOTO_USER_CONCURRENCY": "100",
        "OLDPHOTO_MODELS_DIR": str(root / "models"),
    }
    # Nested, so that a file name climbing out of the data dir would still land inside this test's folder.
    server = start_server(root / "a" / "b" / "data", env)
    yield server
    server.stop()


@dataclass
class Outcome:
    case: Case
    user: str
    status: int
    body: dict[str, Any]
    final: dict[str, Any] = field(default_factory=dict)
    result: bytes | None = None

    @property
    def job_id(self) -> str | None:
        return self.body.get("job_id") if self.status == 202 else None


@dataclass
class CorpusRun:
    outcomes: list[Outcome]
    health: list[dict[str, Any]]
    rss_before: float
    rss_after: float
    peak: float
    seconds: float
    warm_up_job: str


@pytest.fixture(scope="module")
def corpus(corpus_server: ServerProcess) -> CorpusRun:
    """Send every case (in batches, each by its own user from its own address), then collect the final states."""
    server = corpus_server
    cases = hostile_corpus()
    warm = client_from(server, "warm-up", "127.0.0.9")
    warm_job = warm.post("/api/jobs", files={"file": ("w.png", png(64, 48))}, data={"steps": "sharpen"}).json()["job_id"]
    wait_final(warm, [warm_job])
    rss_before = rss_mb(server)
    reset_peak(server)
    started = time.monotonic()
    outcomes: list[Outcome] = []
    health = []
    clients: dict[str, httpx.Client] = {}
    for index in range(0, len(cases), BATCH):
        user = f"corpus-{index // BATCH}"
        http = clients[user] = client_from(server, user, f"127.0.0.{10 + index // BATCH}")
        for case in cases[index : index + BATCH]:
            response = http.post("/api/jobs", files={"file": (case.filename, case.data, case.content_type)}, data={"steps": "sharpen"})
            try:
                body = response.json()
            except ValueError:
                body = {"raw": response.text[:200]}
            outcomes.append(Outcome(case, user, response.status_code, body))
        health.append(assert_healthy(server))
    for user, http in clients.items():
        mine = [o for o in outcomes if o.user == user and o.job_id]
        finals = wait_final(http, [o.job_id for o in mine])
        for outcome in mine:
            outcome.final = finals[outcome.job_id]
            if outcome.final.get("status") == "succeeded":
                result = http.get(outcome.final["result_url"])
                outcome.result = result.content if result.status_code == 200 else None
    health.append(assert_healthy(server))
    return CorpusRun(outcomes, health, rss_before, rss_mb(server), peak_mb(server), time.monotonic() - started, warm_job)


def test_the_corpus_is_the_documented_one() -> None:
    cases = hostile_corpus()
    assert len(cases) == 130
    assert {c.expect for c in cases} == {"ok", "unsupported_format", "too_many_pixels", "invalid_image"}


def test_no_upload_gets_a_server_error(corpus: CorpusRun) -> None:
    errors = [(o.case.name, o.status, o.body) for o in corpus.outcomes if o.status >= 500]
    assert not errors, errors


def test_every_upload_gets_its_documented_status_and_code(corpus: CorpusRun) -> None:
    wrong = []
    for outcome in corpus.outcomes:
        expected = STATUS[outcome.case.expect]
        code = "ok" if outcome.status == 202 else outcome.body.get("code")
        if outcome.status != expected or code != outcome.case.expect:
            wrong.append((outcome.case.name, outcome.case.expect, outcome.status, outcome.body))
    assert not wrong, "\n".join(map(str, wrong))
    for outcome in corpus.outcomes:
        if outcome.status != 202:
            assert set(outcome.body) == {"error", "code"} and outcome.body["error"], outcome.body


def test_every_accepted_upload_succeeds_with_a_png_of_its_upright_size(corpus: CorpusRun) -> None:
    accepted = [o for o in corpus.outcomes if o.status == 202]
    assert len(accepted) == sum(c.expect == "ok" for c in hostile_corpus())
    problems = []
    for outcome in accepted:
        if outcome.final.get("status") != "succeeded" or outcome.result is None:
            problems.append((outcome.case.name, outcome.final))
            continue
        assert outcome.result.startswith(b"\x89PNG\r\n\x1a\n"), outcome.case.name
        with Image.open(io.BytesIO(outcome.result)) as result:
            if result.format != "PNG" or result.size != outcome.case.size:
                problems.append((outcome.case.name, result.format, result.size, outcome.case.size))
    assert not problems, "\n".join(map(str, problems))


def test_exif_orientation_is_applied_not_just_the_size(corpus: CorpusRun) -> None:
    """Flips (2, 3, 4) keep the size, so the quadrant colours are what shows that the photo came out upright."""
    width, height = UPRIGHT_SIZE
    checked = 0
    for outcome in corpus.outcomes:
        if "orientation" not in outcome.case.name or outcome.result is None:
            continue
        pixels = np.asarray(Image.open(io.BytesIO(outcome.result)).convert("RGB")).astype(int)
        for (row, col), colour in UPRIGHT_QUADRANTS.items():
            centre = pixels[row * height // 2 + height // 4, col * width // 2 + width // 4]
            assert np.abs(centre - colour).max() < 48, (outcome.case.name, (row, col), centre.tolist(), colour)
        checked += 1
    assert checked == 12


def test_transparency_is_kept_where_the_upload_had_it(corpus: CorpusRun) -> None:
    from oldphoto.imaging import decode_image

    checked = 0
    for outcome in corpus.outcomes:
        if outcome.case.alpha is None or outcome.result is None:
            continue
        with Image.open(io.BytesIO(outcome.result)) as result:
            has_alpha = "A" in result.getbands()
            assert has_alpha == outcome.case.alpha, (outcome.case.name, result.mode)
            if has_alpha:
                expected = decode_image(outcome.case.data, max_pixels=10**6).alpha
                assert np.array_equal(np.asarray(result.getchannel("A")), expected), outcome.case.name
        checked += 1
    assert checked == sum(c.alpha is not None for c in hostile_corpus())


def test_the_server_stays_up_and_its_memory_bounded(corpus: CorpusRun, corpus_server: ServerProcess) -> None:
    assert len(corpus.health) == -(-len(hostile_corpus()) // BATCH) + 1
    peak_growth = corpus.peak - corpus.rss_before
    kept_growth = corpus.rss_after - corpus.rss_before
    print(
        f"\ncorpus: {len(corpus.outcomes)} uploads in {corpus.seconds:.1f} s; server RSS {corpus.rss_before:.0f} MB before, "
        f"{corpus.rss_after:.0f} MB after (+{kept_growth:.1f}), peak {corpus.peak:.0f} MB (+{peak_growth:.1f})"
    )
    assert peak_growth < CORPUS_PEAK_GROWTH_MB, f"the web process peaked {peak_growth:.1f} MB above its baseline"
    assert kept_growth < CORPUS_KEPT_GROWTH_MB, f"the web process kept {kept_growth:.1f} MB after the corpus"
    assert_healthy(corpus_server)


# ------------------------------------------------------------------------------------- where files end up

ESCAPING_NAMES = (
    "../../etc/passwd.png",
    "../../escape-probe.png",
    "../../../escape-probe-3.png",
    "..\\..\\escape-probe-win.png",
    "inputs/../../escape-probe-inner.png",
)


def test_files_are_stored_under_generated_names_inside_the_data_dir(corpus: CorpusRun, corpus_server: ServerProcess, tmp_path: Path) -> None:
    server = corpus_server
    data_dir = server.data_dir
    absolute = tmp_path / "absolute-probe.png"
    http = client_from(server, "names", "127.0.0.30")
    accepted = {o.job_id for o in corpus.outcomes if o.job_id} | {corpus.warm_up_job}
    mine = []
    for name in (*ESCAPING_NAMES, str(absolute)):
        response = http.post("/api/jobs", files={"file": (name, png(16, 12), "image/png")}, data={"steps": "sharpen"})
        assert response.status_code == 202, (name, response.text)
        mine.append(response.json()["job_id"])
    finals = wait_final(http, mine)
    assert all(view["status"] == "succeeded" for view in finals.values()), finals
    accepted |= set(mine)

    # Inputs are named by job id, results by job id + .png: nothing of the uploaded name survives.
    inputs = {p.name for p in (data_dir / "inputs").iterdir()}
    assert inputs and inputs <= accepted, inputs - accepted
    results = {p.name for p in (data_dir / "results").iterdir()}
    assert results and results <= {f"{j}.png" for j in accepted}, results
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{22}", name) for name in inputs)
    # Spooled uploads are gone once each request is answered, accepted or refused.
    assert list((data_dir / "tmp").iterdir()) == []

    # No name given by a client became a path: not beside the data dir, not in the server's working directory.
    assert not absolute.exists()
    for base in (data_dir, data_dir / "inputs", data_dir / "tmp", data_dir / "results", Path.cwd()):
        for name in ESCAPING_NAMES:
            assert not (base / name).exists(), base / name
    probes = [p for p in data_dir.parents[2].rglob("*") if "probe" in p.name or "passwd" in p.name or p.suffix == ".php"]
    assert probes == []
    uploaded = {Path(o.case.filename.replace("\\", "/")).name for o in corpus.outcomes} - {""}
    stored = {p.name for p in data_dir.rglob("*")}
    assert not (stored & uploaded), stored & uploaded


TRAVERSALS = (
    "/static/../jobs.sqlite3",
    "/static/../../jobs.sqlite3",
    "/static/%2e%2e/%2e%2e/jobs.sqlite3",
    "/static/..%2f..%2fjobs.sqlite3",
    "/static/%2e%2e%2f%2e%2e%2f%2e%2e%2fsettings.py",
    "/static/../app.py",
    "/static/%2e%2e/app.py",
    "/static/..%5capp.py",
    "/static/....//app.py",
    "/static//etc/passwd",
    "/static/%2fetc%2fpasswd",
    "/static/../../../../../../../../etc/passwd",
    "/results/../jobs.sqlite3",
    "/results/..%2fjobs.sqlite3",
    "/results/..%2f..%2fjobs.sqlite3.png",
    "/results/%2e%2e%2finputs%2fx.png",
    "/jobs.sqlite3",
    "/jwt-secret",
    "/inputs/",
    "/tmp/",
)


def test_traversal_out_of_what_is_served_fails(corpus: CorpusRun, corpus_server: ServerProcess) -> None:
    server = corpus_server
    # The raw client does reach files that are served (so a 404 below is the server's answer, not ours).
    status, body = raw_get(server, "/static/app.js")
    assert status == 200 and body
    secrets_and_sources = [
        (server.data_dir / "jobs.sqlite3").read_bytes()[:16],  # "SQLite format 3\0"
        b"def create_app",
        b"root:",
        b"class Settings",
    ]
    job = next(o.job_id for o in corpus.outcomes if o.job_id)
    for target in (*TRAVERSALS, f"/results/../inputs/{job}", f"/static/../../../../data/inputs/{job}"):
        status, body = raw_get(server, target)
        assert 400 <= status < 500, (target, status, body[:100])
        assert not any(marker in body for marker in secrets_and_sources), (target, body[:100])
        assert json.loads(body)["code"] in ("not_found", "bad_request", "unauthorized"), (target, body[:100])


def big_plain_png(width: int, height: int) -> bytes:
    """A flat colour: millions of pixels in a file of a few tens of kilobytes, well within every limit."""
    out = io.BytesIO()
    Image.new("RGB", (width, height), (120, 80, 40)).save(out, "PNG")
    return out.getvalue()


def test_parallel_large_uploads_do_not_multiply_the_web_process_memory(corpus: CorpusRun, corpus_server: ServerProcess) -> None:
    server = corpus_server
    photo = big_plain_png(4500, 4500)  # 20 megapixels, half the default limit, in about 60 KB
    assert len(photo) < 256 * 1024

    def upload(n: int) -> int:
        http = client_from(server, f"big-{n}", f"127.0.0.{60 + n}")
        response = http.post("/api/jobs", files={"file": ("big.png", photo, "image/png")}, data={"steps": "sharpen"})
        if response.status_code == 202:
            http.delete(f"/api/jobs/{response.json()['job_id']}")  # spare the worker the sharpening
        return response.status_code

    reset_peak(server)
    before = peak_mb(server)
    assert upload(0) == 202
    one = peak_mb(server) - before
    reset_peak(server)
    before = peak_mb(server)
    with ThreadPoolExecutor(6) as pool:
        statuses = list(pool.map(upload, range(1, 7)))
    six = peak_mb(server) - before
    print(f"\n20-megapixel uploads: one costs the web process {one:.0f} MB at peak, six in parallel {six:.0f} MB")
    assert statuses == [202] * 6
    assert_healthy(server)
    assert six < 2.5 * one + 64, f"six parallel uploads cost {six:.0f} MB at peak, one alone {one:.0f} MB"


# ------------------------------------------------------------------------------------------- size limit


@pytest.fixture(scope="module")
def small_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    env = {"OLDPHOTO_MAX_UPLOAD_MB": "1", "OLDPHOTO_JWT_SECRET": SECRET, "OLDPHOTO_MODELS_DIR": str(tmp_path_factory.mktemp("models"))}
    server = start_server(tmp_path_factory.mktemp("small") / "data", env)
    yield server
    server.stop()


def chunked_multipart(size: int, piece: int = 64 * 1024) -> Iterator[bytes]:
    """A multipart body streamed from a generator: httpx sends it chunked, without Content-Length."""
    yield b'--BOUNDARY\r\nContent-Disposition: form-data; name="file"; filename="big.png"\r\nContent-Type: image/png\r\n\r\n'
    yield b"\x89PNG\r\n\x1a\n"
    for start in range(0, size, piece):
        yield bytes(min(piece, size - start))
    yield b"\r\n--BOUNDARY--\r\n"


def post_chunked(http: httpx.Client, size: int) -> httpx.Response:
    response = http.post("/api/jobs", content=chunked_multipart(size), headers={"Content-Type": "multipart/form-data; boundary=BOUNDARY"})
    assert response.request.headers.get("transfer-encoding") == "chunked"
    assert "content-length" not in response.request.headers
    return response


def test_a_file_within_the_limit_is_accepted_and_one_over_it_refused(small_server: ServerProcess) -> None:
    http = client_from(small_server, "limit-edges", "127.0.0.40")
    under = png(540, 540)  # about 0.87 MB
    over = png(620, 620)  # about 1.15 MB: the body fits the form's allowance, the file does not fit the limit
    assert len(under) < 2**20 < len(over) < 2**20 + 256 * 1024
    assert http.post("/api/jobs", files={"file": ("u.png", under)}, data={"steps": "sharpen"}).status_code == 202
    refused = http.post("/api/jobs", files={"file": ("o.png", over)}, data={"steps": "sharpen"})
    assert refused.status_code == 413 and refused.json()["code"] == "too_large", refused.text


def test_five_megabytes_are_refused_with_content_length(small_server: ServerProcess) -> None:
    http = client_from(small_server, "limit-declared", "127.0.0.41")
    response = http.post("/api/jobs", files={"file": ("big.png", b"\x89PNG\r\n\x1a\n" + bytes(5 * 2**20), "image/png")})
    assert int(response.request.headers["content-length"]) > 5 * 2**20
    assert response.status_code == 413 and response.json()["code"] == "too_large", response.text
    assert_healthy(small_server)


def test_five_megabytes_are_refused_when_chunked(small_server: ServerProcess) -> None:
    http = client_from(small_server, "limit-chunked", "127.0.0.42")
    response = post_chunked(http, 5 * 2**20)
    assert response.status_code == 413 and response.json()["code"] == "too_large", response.text
    assert_healthy(small_server)


def test_an_oversized_body_is_never_held_in_memory(small_server: ServerProcess) -> None:
    """64 MB bodies, declared and chunked: the server's peak resident memory must not grow by anything like it."""
    http = client_from(small_server, "limit-memory", "127.0.0.43")
    post_chunked(http, 2**20)  # warm up the multipart path
    descriptors = psutil.Process(small_server.process.pid).num_fds()
    reset_peak(small_server)
    before = peak_mb(small_server)
    body = b"\x89PNG\r\n\x1a\n" + bytes(OVERSIZED_BODY_MB * 2**20)
    declared = http.post("/api/jobs", files={"file": ("big.png", body, "image/png")})
    del body
    chunked = post_chunked(http, OVERSIZED_BODY_MB * 2**20)
    growth = peak_mb(small_server) - before
    print(f"\n{OVERSIZED_BODY_MB} MB bodies (declared and chunked): server peak RSS grew by {growth:.1f} MB")
    assert declared.status_code == chunked.status_code == 413
    assert growth < OVERSIZED_PEAK_GROWTH_MB, f"the server's peak memory grew by {growth:.1f} MB for a refused body"
    http.close()
    time.sleep(0.2)
    assert psutil.Process(small_server.process.pid).num_fds() <= descriptors, "a refused upload left a file open"
    assert list((small_server.data_dir / "tmp").glob("*")) == []
    assert_healthy(small_server)


# An oversized body must be refused while it streams, not once it has all come in: these clients send part of the
# body (or none) and then wait, so an answer that only comes at the end of the body never comes at all.
REFUSAL_WITHIN_S = 5


def raw_upload_head(server: ServerProcess, user: str, length: str) -> bytes:
    """The request line and headers of a multipart POST /api/jobs; `length`: a Content-Length or 'chunked'."""
    framing = "Transfer-Encoding: chunked" if length == "chunked" else f"Content-Length: {length}"
    return (
        f"POST /api/jobs HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\nAuthorization: Bearer {token(user)}\r\n"
        f"Content-Type: multipart/form-data; boundary=BOUNDARY\r\n{framing}\r\n\r\n"
    ).encode()


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def answer_while_the_body_is_unfinished(server: ServerProcess, address: str, head: bytes, body: list[bytes]) -> tuple[float, int, dict[str, Any]]:
    """Send `head` and the pieces of `body`, never the rest, and read the answer as it comes (a thread sends while
    this one reads: a server that stops reading must not block the test). Returns (seconds, status, JSON body)."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=REFUSAL_WITHIN_S, source_address=(address, 0)) as sock:

        def send() -> None:
            try:
                sock.sendall(head)
                for piece in body:
                    sock.sendall(piece)
            except OSError:
                pass  # the server answered and closed while we were still sending: that is the point

        began = time.monotonic()
        with ThreadPoolExecutor(max_workers=1) as pool:
            sender = pool.submit(send)
            data, waited_out = b"", False
            try:
                while b"\r\n\r\n" not in data or len(data.partition(b"\r\n\r\n")[2]) < content_length(data):
                    piece = sock.recv(65536)
                    if not piece:
                        break
                    data += piece
            except TimeoutError:
                waited_out = True
            except ConnectionResetError:
                pass
            finally:
                took = time.monotonic() - began
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)  # unblocks the sender, if the server stopped reading
            sender.result(10)
    assert not waited_out, f"no answer in {REFUSAL_WITHIN_S} s with the body unfinished: the server waits for the rest of it"
    head_bytes, _, payload = data.partition(b"\r\n\r\n")
    assert head_bytes, "the connection closed without an answer"
    return took, int(head_bytes.split(b" ", 2)[1]), json.loads(payload[: content_length(data)])


def content_length(data: bytes) -> int:
    match = re.search(rb"(?im)^content-length:\s*(\d+)", data.partition(b"\r\n\r\n")[0])
    return int(match.group(1)) if match else 1 << 30


def test_a_chunked_body_over_the_limit_is_refused_while_it_streams(small_server: ServerProcess) -> None:
    """3 MB of a chunked body against a 1 MB limit, then nothing: the 413 must come without the rest of the body."""
    piece = 64 * 1024
    body = [chunk(b'--BOUNDARY\r\nContent-Disposition: form-data; name="file"; filename="big.png"\r\nContent-Type: image/png\r\n\r\n\x89PNG\r\n\x1a\n')]
    body += [chunk(bytes(piece)) for _ in range(3 * 2**20 // piece)]
    took, status, answer = answer_while_the_body_is_unfinished(small_server, "127.0.0.44", raw_upload_head(small_server, "limit-stream", "chunked"), body)
    assert status == 413 and answer["code"] == "too_large", answer
    assert took < REFUSAL_WITHIN_S
    assert_healthy(small_server)


def test_a_declared_length_over_the_limit_is_refused_before_any_body(small_server: ServerProcess) -> None:
    """Content-Length: 64 MB and not one byte of body: the 413 must come from the headers alone."""
    head = raw_upload_head(small_server, "limit-declared-only", str(OVERSIZED_BODY_MB * 2**20))
    took, status, answer = answer_while_the_body_is_unfinished(small_server, "127.0.0.45", head, [])
    assert status == 413 and answer["code"] == "too_large", answer
    assert took < REFUSAL_WITHIN_S
    assert list((small_server.data_dir / "tmp").glob("*")) == []
    assert_healthy(small_server)
