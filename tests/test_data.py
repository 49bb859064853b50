import gzip
import shutil
from pathlib import Path

import pytest
import torch

from experiments.data import BUNDLED_ROOT, MD5, DataError, MNISTDataModule, TensorBatches, load_mnist, read_idx


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


def test_validation_split_is_seeded_disjoint_and_never_the_test_set(mnist):
    dm = MNISTDataModule(val_size=5000)
    dm.tensors = dm._split(mnist)
    again = MNISTDataModule(val_size=5000)
    again.tensors = again._split(mnist)
    assert dm.tensors["train_x"].shape[0] == 55_000 and dm.tensors["val_x"].shape[0] == 5000
    assert torch.equal(dm.tensors["val_x"], again.tensors["val_x"])
    # every validation image comes from the official training set, none from the test set
    train_rows = {r.tobytes() for r in mnist["train_x"][:, 200:260].numpy()}
    assert all(r.tobytes() in train_rows for r in dm.tensors["val_x"][:200, 200:260].numpy())
    assert torch.equal(dm.tensors["test_x"], mnist["test_x"])
    other = MNISTDataModule(val_size=5000, split_seed=1)
    other.tensors = other._split(mnist)
    assert not torch.equal(dm.tensors["val_y"], other.tensors["val_y"])


def _epoch(loader: TensorBatches) -> torch.Tensor:
    return torch.cat([x[:, 0] for x, _ in loader])


def test_batches_cover_every_example_once_per_epoch_in_a_new_order():
    x = torch.arange(1000, dtype=torch.float32).unsqueeze(1)
    loader = TensorBatches(x, torch.zeros(1000), batch_size=64, shuffle=True, seed=3)
    assert len(loader) == 16
    first, second = _epoch(loader), _epoch(loader)
    assert sorted(first.tolist()) == list(range(1000)) == sorted(second.tolist())
    assert not torch.equal(first, second)
    replay = TensorBatches(x, torch.zeros(1000), batch_size=64, shuffle=True, seed=3)
    assert torch.equal(_epoch(replay), first)


def test_loader_resumes_mid_epoch_with_the_unseen_batches():
    x = torch.arange(100, dtype=torch.float32).unsqueeze(1)
    loader = TensorBatches(x, torch.zeros(100), batch_size=10, shuffle=True, seed=0)
    _epoch(loader)
    it = iter(loader)
    seen = [next(it)[0] for _ in range(4)]
    state = loader.state_dict()
    rest = torch.cat([b[0][:, 0] for b in it])
    fresh = TensorBatches(x, torch.zeros(100), batch_size=10, shuffle=True, seed=0)
    fresh.load_state_dict(state)
    assert torch.equal(torch.cat([b[0][:, 0] for b in fresh]), rest)
    assert len(seen) == 4


def test_full_batch_and_ddp_shards():
    x = torch.arange(10, dtype=torch.float32).unsqueeze(1)
    assert [len(b[0]) for b in TensorBatches(x, torch.zeros(10), batch_size=10, shuffle=True)] == [10]
    shards = [_epoch(TensorBatches(x, torch.zeros(10), 2, True, seed=1, rank=r, world_size=2)) for r in (0, 1)]
    assert set(shards[0].tolist()).isdisjoint(shards[1].tolist())
    assert sorted(shards[0].tolist() + shards[1].tolist()) == list(range(10))


def test_full_batch_setting_resolves_to_the_training_split():
    assert MNISTDataModule(batch_size="full").resolved_batch_size() == 55_000
    assert MNISTDataModule(batch_size="full", limit_train=300).resolved_batch_size() == 300
    assert MNISTDataModule(batch_size=256).resolved_batch_size() == 256
