import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from experiments.data.datamodule import MNISTDataModule, TensorBatches
from experiments.data.idx import load, split


@pytest.fixture(scope="module")
def mnist() -> dict[str, torch.Tensor]:
    return load()


def test_validation_split_is_seeded_disjoint_and_never_the_test_set(mnist):
    parts, again = split(mnist, 5000, split_seed=0), split(mnist, 5000, split_seed=0)
    assert parts["train_x"].shape[0] == 55_000 and parts["val_x"].shape[0] == 5000
    assert torch.equal(parts["val_x"], again["val_x"])
    # every validation image comes from the official training set, none from the test set
    train_rows = {r.tobytes() for r in mnist["train_x"][:, 200:260].numpy()}
    assert all(r.tobytes() in train_rows for r in parts["val_x"][:200, 200:260].numpy())
    assert torch.equal(parts["test_x"], mnist["test_x"])
    assert not torch.equal(parts["val_y"], split(mnist, 5000, split_seed=1)["val_y"])
    limited = split(mnist, 5000, split_seed=0, limit_train=300)
    assert limited["train_x"].shape[0] == 300 and torch.equal(limited["val_x"], parts["val_x"])


def test_datamodule_prepares_the_split_once_and_batches_on_the_trainer_device():
    dm = MNISTDataModule(batch_size=100, limit_train=1000)
    dm.prepare_data()
    first = dm.tensors
    dm.prepare_data()
    assert dm.tensors is first
    assert len(dm.train_dataloader()) == 10 and len(dm.val_dataloader()) == 1 and len(dm.test_dataloader()) == 2


def _epoch(loader: TensorBatches) -> torch.Tensor:
    return torch.cat([x[:, 0] for x, _ in loader])


def test_batches_cover_every_example_once_per_epoch_in_a_new_order():
    x = torch.arange(1000, dtype=torch.float32).unsqueeze(1)
    loader = TensorBatches(x, torch.zeros(1000), batch_size=64, shuffle=True, seed=3)
    assert len(loader) == 16
    first = _epoch(loader)
    loader.sampler.set_epoch(1)  # what Lightning does at the start of every epoch
    second = _epoch(loader)
    assert sorted(first.tolist()) == list(range(1000)) == sorted(second.tolist())
    assert not torch.equal(first, second)
    replay = TensorBatches(x, torch.zeros(1000), batch_size=64, shuffle=True, seed=3)
    replay.sampler.set_epoch(1)
    assert torch.equal(_epoch(replay), second)  # epoch 1's order, whatever came before it


@pytest.mark.parametrize("overfit_batches, fixed", [(0, False), (3, True), (0.5, True)])
def test_under_overfit_batches_every_epoch_sees_the_same_batches(overfit_batches, fixed):
    from types import SimpleNamespace

    dm = MNISTDataModule(batch_size=100, limit_train=500)
    dm.prepare_data()
    dm.trainer = SimpleNamespace(overfit_batches=overfit_batches, global_rank=0, world_size=1)
    epochs = []
    for epoch in (0, 1):
        loader = dm.train_dataloader()
        loader.sampler.set_epoch(epoch)  # what Lightning does at the start of every epoch
        epochs.append([y for _, y in loader][0])
    assert torch.equal(*epochs) is fixed


def test_loader_resumes_mid_epoch_with_the_unseen_batches():
    x = torch.arange(100, dtype=torch.float32).unsqueeze(1)
    loader = TensorBatches(x, torch.zeros(100), batch_size=10, shuffle=True, seed=0)
    loader.sampler.set_epoch(2)
    it = iter(loader)
    seen = torch.cat([next(it)[0][:, 0] for _ in range(4)])
    state = loader.state_dict()
    assert state == {"epoch": 2, "batches_done": 4}
    rest = torch.cat([b[0][:, 0] for b in it])
    fresh = TensorBatches(x, torch.zeros(100), batch_size=10, shuffle=True, seed=0)
    fresh.load_state_dict(state)
    fresh.sampler.set_epoch(2)
    resumed = torch.cat([b[0][:, 0] for b in fresh])
    assert torch.equal(resumed, rest)
    assert sorted(torch.cat([seen, resumed]).tolist()) == list(range(100))


def test_a_state_from_an_earlier_epoch_starts_the_next_epoch_from_its_first_batch():
    # a checkpoint at an epoch's end (or after limit_train_batches stopped it early) resumes in the next epoch
    x = torch.arange(100, dtype=torch.float32).unsqueeze(1)
    fresh = TensorBatches(x, torch.zeros(100), batch_size=10, shuffle=True, seed=0)
    fresh.load_state_dict({"epoch": 0, "batches_done": 3})
    fresh.sampler.set_epoch(1)
    reference = TensorBatches(x, torch.zeros(100), batch_size=10, shuffle=True, seed=0)
    reference.sampler.set_epoch(1)
    assert torch.equal(_epoch(fresh), _epoch(reference))


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


@pytest.mark.parametrize("mode, low, high", [("unit", 0.0, 1.0), ("standardize", -0.4243, 2.8215)])
def test_batches_and_probes_are_scaled_as_data_normalize_says(mode, low, high):
    dm = MNISTDataModule(batch_size=500, limit_train=1000, normalize=mode)
    dm.setup("fit")
    x, _ = next(iter(dm.train_dataloader()))
    probe = dm.images("val", 200)
    for t in (x, probe):
        assert t.min().item() == pytest.approx(low, abs=1e-3) and t.max().item() == pytest.approx(high, abs=1e-3)
    assert dm.hparams["normalize"] == mode  # saved in checkpoints, for eval.py


# ---------------------------------------------------------------- properties (hypothesis)


@settings(max_examples=50, deadline=None)
@given(
    rows=st.integers(1, 300),
    batch=st.integers(1, 64),
    world=st.integers(1, 4),
    seed=st.integers(0, 2**31),
    epoch=st.integers(0, 50),
    shuffle=st.booleans(),
    data=st.data(),
)
def test_every_index_once_per_epoch_across_ranks_and_resumable_anywhere(rows, batch, world, seed, epoch, shuffle, data):
    x = torch.arange(rows, dtype=torch.float32).unsqueeze(1)
    y = torch.arange(rows)

    def loader(rank: int) -> TensorBatches:
        batches = TensorBatches(x, y, batch, shuffle=shuffle, seed=seed, rank=rank, world_size=world)
        batches.sampler.set_epoch(epoch)
        return batches

    shares = [[int(v) for xb, yb in loader(rank) for v in yb] for rank in range(world)]
    seen = [v for share in shares for v in share]
    assert len(seen) == len(set(seen)) == rows - rows % world  # each once; DDP drops the remainder (< world)
    assert all(len(share) == rows // world for share in shares)  # equal shares: no rank waits
    assert all(len(loader(r)) == -(-(rows // world) // batch) for r in range(world))
    # stop after any number of batches, save, resume in a fresh loader: the unseen batches, in order
    rank = data.draw(st.integers(0, world - 1))
    first = loader(rank)
    stop = data.draw(st.integers(0, len(first)))
    it = iter(first)
    before = [int(v) for _ in range(stop) for v in next(it)[1]]
    resumed = TensorBatches(x, y, batch, shuffle=shuffle, seed=seed, rank=rank, world_size=world)
    resumed.load_state_dict(first.state_dict())
    resumed.sampler.set_epoch(epoch)
    assert before + [int(v) for _, yb in resumed for v in yb] == shares[rank]
