"""The data module's hand-over of batches to the device."""
import torch

from rankers.training.train import build


def test_a_cpu_run_hands_batches_over_as_built_and_another_device_gets_them_moved(cfg_factory):
    dm, _ = build(cfg_factory("loss.negatives.shared=32"))
    batch = next(iter(dm.train_dataloader()))
    assert dm.transfer_batch_to_device(batch, torch.device("cpu"), 0) is batch
    moved = dm.transfer_batch_to_device(batch, torch.device("meta"), 0)
    assert moved is not batch and moved.items.device.type == "meta" and moved.users.history.device.type == "meta"
    assert batch.items.device.type == "cpu"  # the original stays where it was
