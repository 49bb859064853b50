import gzip
import shutil

import pytest
import torch

from experiments.data.mnist import BUNDLED_ROOT, MD5, MEAN, STD, DataError, load_mnist, normalize, read_idx


@pytest.fixture(scope="module")
def mnist() -> dict[str, torch.Tensor]:
    return load_mnist()


def test_bundled_files_load_with_official_shapes_and_normalisation(mnist):
    assert mnist["train_x"].shape == (60_000, 784) and mnist["test_x"].shape == (10_000, 784)
    assert mnist["train_y"].dtype == torch.int64 and set(mnist["train_y"].unique().tolist()) == set(range(10))
    # normalised with the published mean/std: the training set has mean ~0 and std ~1
    assert abs(mnist["train_x"].mean().item()) < 0.01
    assert abs(mnist["train_x"].std().item() - 1.0) < 0.01


def test_altered_file_is_refused_by_checksum_naming_the_file(tmp_path):
    for name in MD5:
        shutil.copy(BUNDLED_ROOT / f"{name}.gz", tmp_path)
    target = tmp_path / "train-labels-idx1-ubyte.gz"
    raw = bytearray(gzip.decompress(target.read_bytes()))
    raw[100] ^= 0xFF
    target.write_bytes(gzip.compress(bytes(raw)))
    with pytest.raises(DataError, match="train-labels-idx1-ubyte.gz: checksum failed"):
        load_mnist(tmp_path, download=False)


def test_truncated_gzip_is_refused(tmp_path):
    src = (BUNDLED_ROOT / "t10k-labels-idx1-ubyte.gz").read_bytes()
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(src[: len(src) // 2])
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte.gz: checksum failed"):
        read_idx(tmp_path / "t10k-labels-idx1-ubyte.gz")


def test_missing_directory_and_missing_files_are_named(tmp_path):
    with pytest.raises(DataError, match=r"data.root=.*nope does not exist"):
        load_mnist(tmp_path / "nope")
    with pytest.raises(DataError, match="lacks train-images-idx3-ubyte"):
        load_mnist(tmp_path, download=False)


def test_unpacked_files_are_accepted(tmp_path):
    for name in MD5:
        (tmp_path / name).write_bytes(gzip.decompress((BUNDLED_ROOT / f"{name}.gz").read_bytes()))
    assert load_mnist(tmp_path, download=False)["test_y"].shape == (10_000,)


def test_raw_pixels_normalise_to_the_same_values_without_touching_the_input():
    raw, ready = load_mnist(raw=True), load_mnist()
    assert raw["train_x"].dtype == torch.uint8
    before = raw["test_x"][:10].clone()
    assert torch.allclose(normalize(raw["test_x"][:10]), ready["test_x"][:10])
    assert torch.equal(raw["test_x"][:10], before)
    floats = ready["test_x"][:10].clone()
    normalize(floats)
    assert torch.equal(floats, ready["test_x"][:10])  # a float input is copied, not changed in place


def test_normalize_matches_the_published_statistics():
    pixels = torch.tensor([[0, 1, 128, 255]], dtype=torch.uint8)
    expected = (pixels.double() / 255 - MEAN) / STD
    assert torch.allclose(normalize(pixels).double(), expected, atol=1e-6)
    assert normalize(pixels).dtype == torch.float32 and pixels.dtype == torch.uint8


def test_unit_normalisation_maps_pixels_to_zero_one():
    pixels = torch.tensor([[0, 51, 255]], dtype=torch.uint8)
    assert torch.allclose(normalize(pixels, "unit"), torch.tensor([[0.0, 0.2, 1.0]]))
    assert torch.allclose(normalize(pixels, "standardize"), normalize(pixels))  # the default


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
        load_mnist(tmp_path, download=True)
    message = str(error.value)
    assert message.startswith(f"data.root={tmp_path}: MNIST files are missing and torchvision could not download them")
    assert "Network is unreachable" in message and str(BUNDLED_ROOT) in message
    assert calls == [(str(tmp_path), True, True)]

    class Fetches:  # what torchvision leaves: the raw files under MNIST/raw
        def __init__(self, root, train, download):
            calls.append((root, train, download))
            raw = tmp_path / "MNIST" / "raw"
            raw.mkdir(parents=True, exist_ok=True)
            for name in MD5:
                (raw / name).write_bytes(gzip.decompress((BUNDLED_ROOT / f"{name}.gz").read_bytes()))

    calls.clear()
    monkeypatch.setattr(torchvision.datasets, "MNIST", Fetches)
    assert load_mnist(tmp_path, download=True)["test_y"].shape == (10_000,)
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
    with pytest.raises(DataError, match=rf"its MD5 is [0-9a-f]{{32}}, expected {MD5['t10k-labels-idx1-ubyte']}\. "):
        read_idx(tmp_path / "t10k-labels-idx1-ubyte")


def test_missing_files_are_listed_and_fetched_unless_told_not_to(tmp_path, monkeypatch):
    import torchvision.datasets

    with pytest.raises(DataError, match="lacks train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images"):
        load_mnist(tmp_path, download=False)
    calls = []

    class Offline:
        def __init__(self, root, train, download):
            calls.append(download)
            raise RuntimeError("offline")

    monkeypatch.setattr(torchvision.datasets, "MNIST", Offline)
    with pytest.raises(DataError, match="could not download"):
        load_mnist(tmp_path)  # downloading is the default, as data.download is
    assert calls == [True]


def test_an_unknown_normalisation_lists_the_valid_ones():
    with pytest.raises(ValueError, match="must be one of standardize, unit$"):
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
