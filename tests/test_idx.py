import gzip
import shutil

import pytest
import torch

from conftest import write_idx_set
from experiments.data.idx import (
    BUNDLED_ROOT,
    FILES,
    DataError,
    Shape,
    checksums,
    describe,
    load,
    read_idx,
)
from experiments.data.normalization import PixelStats, normalize, statistics

MD5 = checksums(BUNDLED_ROOT)  # the bundled files' published sums, raw names
PUBLISHED = PixelStats(0.1307, 0.3081)


@pytest.fixture(scope="module")
def mnist() -> dict[str, torch.Tensor]:
    return load()


def test_bundled_files_load_with_official_shapes_and_normalisation(mnist):
    assert mnist["train_x"].shape == (60_000, 784) and mnist["test_x"].shape == (10_000, 784)
    assert mnist["train_y"].dtype == torch.int64 and set(mnist["train_y"].unique().tolist()) == set(range(10))
    # normalised with the published mean/std: the training set has mean ~0 and std ~1
    assert abs(mnist["train_x"].mean().item()) < 0.01
    assert abs(mnist["train_x"].std().item() - 1.0) < 0.01


def test_altered_file_is_refused_by_checksum_naming_the_file(tmp_path):
    for name in [*FILES.values(), "MD5SUMS"]:
        shutil.copy(BUNDLED_ROOT / (name if name == "MD5SUMS" else f"{name}.gz"), tmp_path)
    target = tmp_path / "train-labels-idx1-ubyte.gz"
    raw = bytearray(gzip.decompress(target.read_bytes()))
    raw[100] ^= 0xFF
    target.write_bytes(gzip.compress(bytes(raw)))
    with pytest.raises(DataError, match="train-labels-idx1-ubyte.gz: checksum failed"):
        load(tmp_path, download=False)


def test_truncated_gzip_is_refused(tmp_path):
    src = (BUNDLED_ROOT / "t10k-labels-idx1-ubyte.gz").read_bytes()
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(src[: len(src) // 2])
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte.gz: checksum failed"):
        read_idx(tmp_path / "t10k-labels-idx1-ubyte.gz")


def test_missing_directory_and_missing_files_are_named(tmp_path):
    with pytest.raises(DataError, match=r"data.root=.*nope does not exist"):
        load(tmp_path / "nope")
    with pytest.raises(DataError, match="lacks train-images-idx3-ubyte"):
        load(tmp_path, download=False)


def test_unpacked_files_are_accepted(tmp_path):
    for name in FILES.values():
        (tmp_path / name).write_bytes(gzip.decompress((BUNDLED_ROOT / f"{name}.gz").read_bytes()))
    assert load(tmp_path, download=False)["test_y"].shape == (10_000,)


def test_raw_pixels_normalise_to_the_same_values_without_touching_the_input():
    raw, ready = load(raw=True), load()
    assert raw["train_x"].dtype == torch.uint8
    before = raw["test_x"][:10].clone()
    assert torch.allclose(normalize(raw["test_x"][:10], "standardize", PUBLISHED), ready["test_x"][:10])
    assert torch.equal(raw["test_x"][:10], before)
    floats = ready["test_x"][:10].clone()
    normalize(floats, "standardize", PUBLISHED)
    assert torch.equal(floats, ready["test_x"][:10])  # a float input is copied, not changed in place


def test_normalize_matches_the_published_statistics():
    pixels = torch.tensor([[0, 1, 128, 255]], dtype=torch.uint8)
    expected = (pixels.double() / 255 - 0.1307) / 0.3081
    assert torch.allclose(
        normalize(pixels, "standardize", statistics(BUNDLED_ROOT, pixels)).double(), expected, atol=1e-6
    )
    assert normalize(pixels, "unit").dtype == torch.float32 and pixels.dtype == torch.uint8


def test_unit_normalisation_maps_pixels_to_zero_one():
    pixels = torch.tensor([[0, 51, 255]], dtype=torch.uint8)
    assert torch.allclose(normalize(pixels, "unit"), torch.tensor([[0.0, 0.2, 1.0]]))


def test_an_unknown_normalisation_is_refused_by_name():
    with pytest.raises(ValueError, match="data.normalize='minmax'"):
        normalize(torch.zeros(1, 3, dtype=torch.uint8), "minmax")


def test_missing_files_are_fetched_with_torchvision_and_a_failed_fetch_is_named(tmp_path, monkeypatch):
    import torchvision.datasets

    calls = []

    class Offline:
        def __init__(self, root, train, download):
            calls.append((root, train, download))
            raise RuntimeError("Network is unreachable")

    monkeypatch.setattr(torchvision.datasets, "MNIST", Offline)
    with pytest.raises(DataError) as error:
        load(tmp_path, download=True)
    message = str(error.value)
    assert message.startswith(
        f"data.root={tmp_path}: the IDX files are missing and torchvision could not download MNIST's"
    )
    assert "Network is unreachable" in message and str(BUNDLED_ROOT) in message
    assert calls == [(str(tmp_path), True, True)]

    class Fetches:  # what torchvision leaves: the raw files under MNIST/raw
        def __init__(self, root, train, download):
            calls.append((root, train, download))
            raw = tmp_path / "MNIST" / "raw"
            raw.mkdir(parents=True, exist_ok=True)
            for name in FILES.values():
                (raw / name).write_bytes(gzip.decompress((BUNDLED_ROOT / f"{name}.gz").read_bytes()))

    calls.clear()
    monkeypatch.setattr(torchvision.datasets, "MNIST", Fetches)
    assert load(tmp_path, download=True)["test_y"].shape == (10_000,)
    assert calls == [(str(tmp_path), True, True), (str(tmp_path), False, True)]


def test_an_idx_file_reads_with_the_shape_its_header_gives(tmp_path):
    # recompressed: other bytes than the bundled files', so they are decoded here, not taken from an earlier read
    for name in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        bundled = (BUNDLED_ROOT / f"{name}.gz").read_bytes()
        (tmp_path / f"{name}.gz").write_bytes(gzip.compress(gzip.decompress(bundled), compresslevel=1, mtime=0))
        assert (tmp_path / f"{name}.gz").read_bytes() != bundled
    images, labels = read_idx(tmp_path / "t10k-images-idx3-ubyte.gz"), read_idx(tmp_path / "t10k-labels-idx1-ubyte.gz")
    assert images.shape == (10_000, 28, 28) and labels.shape == (10_000,) and images.dtype == torch.uint8
    raw = gzip.decompress((BUNDLED_ROOT / "t10k-images-idx3-ubyte.gz").read_bytes())
    assert images[0].flatten().tolist() == list(raw[16 : 16 + 784])  # the first image, after the 16-byte header


def test_a_damaged_file_names_what_is_wrong_with_it(tmp_path):
    src = (BUNDLED_ROOT / "t10k-labels-idx1-ubyte.gz").read_bytes()
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(src[: len(src) // 2])
    with pytest.raises(DataError, match=r"checksum failed, it is not a valid gzip file \("):
        read_idx(tmp_path / "t10k-labels-idx1-ubyte.gz")
    raw = bytearray(gzip.decompress(src))
    raw[100] ^= 0xFF
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(bytes(raw))
    with pytest.raises(
        DataError, match=rf"its MD5 is [0-9a-f]{{32}}, .*MD5SUMS says {MD5['t10k-labels-idx1-ubyte']}\. "
    ):
        read_idx(tmp_path / "t10k-labels-idx1-ubyte", MD5)


def test_missing_files_are_listed_and_fetched_unless_told_not_to(tmp_path, monkeypatch):
    import torchvision.datasets

    with pytest.raises(DataError, match="lacks train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images"):
        load(tmp_path, download=False)
    calls = []

    class Offline:
        def __init__(self, root, train, download):
            calls.append(download)
            raise RuntimeError("offline")

    monkeypatch.setattr(torchvision.datasets, "MNIST", Offline)
    with pytest.raises(DataError, match="could not download"):
        load(tmp_path)  # downloading is the default, as data.download is
    assert calls == [True]


def test_an_unknown_normalisation_lists_the_valid_ones():
    with pytest.raises(ValueError, match="must be one of standardize, unit, with the data's stats$"):
        normalize(torch.zeros(1, 3, dtype=torch.uint8), "minmax")


def test_a_process_unpacks_a_file_once_and_again_after_any_byte_of_it_changed(tmp_path, monkeypatch):
    """Sweep jobs in one process share the decoded files; an altered file is checked again, however it changed."""
    shutil.copy(BUNDLED_ROOT / "t10k-labels-idx1-ubyte.gz", tmp_path)
    path = tmp_path / "t10k-labels-idx1-ubyte.gz"
    first = read_idx(path)
    expected = first.clone()
    unpacked, decompress = [], gzip.decompress
    monkeypatch.setattr(gzip, "decompress", lambda data: unpacked.append(len(data)) or decompress(data))
    second = read_idx(path)
    assert unpacked == [] and torch.equal(first, second)
    second[0] = 99  # each call's tensor is its own: a caller that writes into it changes no later read
    assert torch.equal(read_idx(path), expected) and torch.equal(first, expected)
    stored = bytearray(path.read_bytes())
    stored[-5] ^= 0xFF  # one byte of the gzip trailer's CRC: the same size, the same deflate data
    path.write_bytes(bytes(stored))
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte.gz: checksum failed"):
        read_idx(path)
    assert len(unpacked) == 1


def test_a_set_of_another_shape_is_described_from_its_files_and_measured(tmp_path):
    root = write_idx_set(tmp_path / "own", image=(5, 7), classes=3, train=600, test=90)
    assert describe(root) == Shape(600, 90, (5, 7), 3) and describe(root).input_size == 35
    data = load(root, download=False, raw=True)
    assert data["train_x"].shape == (600, 35) and data["test_x"].shape == (90, 35)
    assert set(data["train_y"].tolist()) == {0, 1, 2}
    pixels = data["train_x"].double() / 255
    stats = statistics(root, data["train_x"])  # measured: no normalization.json beside these files
    assert stats.mean == pytest.approx(pixels.mean().item(), abs=1e-12) and stats.mean != 0.1307
    assert stats.std == pytest.approx(pixels.std().item(), abs=1e-12) and not stats.declared
    ready = load(root, download=False)["train_x"]  # standardised by its own statistics, not MNIST's
    assert abs(ready.mean().item()) < 1e-4 and ready.std().item() == pytest.approx(1.0, abs=1e-3)


def test_declared_statistics_beside_the_files_are_used_and_bad_ones_refused(tmp_path):
    root = write_idx_set(tmp_path / "own")
    (root / "normalization.json").write_text('{"mean": 0.25, "std": 0.5}')
    assert statistics(root, torch.zeros(2, 35, dtype=torch.uint8)) == PixelStats(0.25, 0.5)
    assert statistics(root, torch.zeros(2, 35, dtype=torch.uint8)).declared  # the run's record says where from
    for text in ('{"mean": 0.25}', "[1, 2]", '{"mean": 0.2, "std": 0}', '{"mean": NaN, "std": 1}'):
        (root / "normalization.json").write_text(text)
        with pytest.raises(DataError, match=r"normalization.json: .*(mean|std)"):
            statistics(root, torch.zeros(2, 35, dtype=torch.uint8))


def test_checksums_are_optional_and_checked_where_given(tmp_path):
    root = write_idx_set(tmp_path / "own")
    load(root, download=False)  # no MD5SUMS: nothing to check
    stored = (root / "t10k-labels-idx1-ubyte.gz").read_bytes()
    (root / "MD5SUMS").write_text(f"{'0' * 32}  t10k-labels-idx1-ubyte.gz\n")  # a sum of the file as stored
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte.gz: checksum failed, its MD5 is .*MD5SUMS says 0{32}"):
        load(root, download=False)
    import hashlib

    (root / "MD5SUMS").write_text(f"{hashlib.md5(stored).hexdigest()}  t10k-labels-idx1-ubyte.gz\n")
    assert load(root, download=False)["test_y"].shape == (90,)
    (root / "MD5SUMS").write_text("not a sum line\n")
    with pytest.raises(DataError, match=r"MD5SUMS, line 1: not '<md5>  <file name>'"):
        load(root, download=False)


def _write(path, header: bytes, body: bytes) -> None:
    path.write_bytes(gzip.compress(header + body))


def test_files_that_do_not_make_one_data_set_are_refused_naming_why(tmp_path):
    root = write_idx_set(tmp_path / "own", train=600)
    _write(root / "train-labels-idx1-ubyte.gz", bytes([0, 0, 8, 1]) + (599).to_bytes(4, "big"), bytes(599))
    with pytest.raises(DataError, match="do not make one data set .600 training images with 599 labels"):
        describe(root)
    root = write_idx_set(tmp_path / "one_class", classes=1)
    with pytest.raises(DataError, match="every label is 0"):
        load(root, download=False)
    root = write_idx_set(tmp_path / "floats")
    _write(
        root / "t10k-images-idx3-ubyte.gz",
        bytes([0, 0, 0x0D, 3]) + b"".join(n.to_bytes(4, "big") for n in (90, 5, 7)),
        bytes(90 * 35 * 4),
    )
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte.gz: not an IDX file of unsigned bytes .*00 00 0d 03"):
        describe(root)
    root = write_idx_set(tmp_path / "short")
    _write(
        root / "t10k-images-idx3-ubyte.gz",
        bytes([0, 0, 8, 3]) + b"".join(n.to_bytes(4, "big") for n in (90, 5, 7)),
        bytes(100),
    )
    with pytest.raises(DataError, match=r"header declares 90x5x7 bytes of data"):
        load(root, download=False)


def test_a_directory_without_the_files_is_not_described_until_they_are_there(tmp_path):
    assert describe(tmp_path) is None and describe(tmp_path / "absent") is None


def test_a_set_described_once_is_described_anew_when_its_files_change(tmp_path):
    import os

    root = write_idx_set(tmp_path / "own", image=(5, 7))
    assert describe(root).image == (5, 7)
    write_idx_set(root, image=(4, 4), classes=5)
    for f in root.iterdir():  # a rewrite within the file system's time stamp resolution still counts
        os.utime(f, ns=(f.stat().st_atime_ns, f.stat().st_mtime_ns + 10**9))
    assert describe(root) == Shape(600, 90, (4, 4), 5)
