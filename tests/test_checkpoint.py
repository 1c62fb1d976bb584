"""Resume rule shared by the training steps: a resume file is used only under the same fingerprint."""
import logging

import torch

from misc.core.checkpoint import load_resume, save_state_dict
from misc.method.torchutils import PolySGD


def test_resume_only_under_the_same_fingerprint(tmp_path, caplog):
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    opt = PolySGD(model.parameters(), lr=0.1, weight_decay=1e-4, max_step=10)
    model(torch.randn(4, 3)).sum().backward()
    opt.step()
    path = tmp_path / "last.pt"
    save_state_dict({"fingerprint": "aaa", "config": '{"lr": 0.1}', "update": 4, "model": model.state_dict(),
                     "opt": opt.state_dict()}, path)

    state = load_resume(path, torch.device("cpu"), "aaa")
    fresh_opt = PolySGD(torch.nn.Linear(3, 2).parameters(), lr=0.1, weight_decay=1e-4, max_step=10)
    fresh_opt.load_state_dict(state["opt"])
    assert state["update"] == 4 and fresh_opt.global_step == 1
    assert torch.equal(state["model"]["weight"], model.weight)
    caplog.set_level(logging.WARNING)
    assert load_resume(path, torch.device("cpu"), "bbb", {"lr": 0.2}) is None  # another configuration
    assert "lr: 0.1 -> 0.2" in caplog.text
    assert load_resume(path, torch.device("cpu"), "aaa", overwrite=True) is None
    assert load_resume(tmp_path / "none.pt", torch.device("cpu"), "aaa") is None
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # atomic save leaves no temp file
