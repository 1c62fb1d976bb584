"""Resume rule shared by the training steps."""
import torch

from misc.checkpoint import save_state_dict, try_resume
from misc.torchutils import PolySGD


def test_resume_restores_model_and_optimizer(tmp_path):
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    opt = PolySGD(model.parameters(), lr=0.1, weight_decay=1e-4, max_step=10)
    model(torch.randn(4, 3)).sum().backward()
    opt.step()
    path = tmp_path / "last.pt"
    save_state_dict({"epoch": 4, "max_step": 10, "model": model.state_dict(), "opt": opt.state_dict()}, path)

    fresh = torch.nn.Linear(3, 2)
    fresh_opt = PolySGD(fresh.parameters(), lr=0.1, weight_decay=1e-4, max_step=10)
    state = try_resume(path, torch.device("cpu"), {"model": fresh, "opt": fresh_opt}, {"max_step": 10})
    assert state["epoch"] == 4 and fresh_opt.global_step == 1
    assert torch.equal(fresh.weight, model.weight)
    assert try_resume(path, torch.device("cpu"), {"model": fresh}, {"max_step": 20}) is None  # other schedule
    assert try_resume(path, torch.device("cpu"), {"model": fresh}, {"max_step": 10}, overwrite=True) is None
    assert try_resume(tmp_path / "none.pt", torch.device("cpu"), {"model": fresh}, {}) is None
    assert not list(tmp_path.glob(".*.tmp"))  # atomic save leaves no temp file
