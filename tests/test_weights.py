"""Weight loading: local files with weights_only, unwrap rules, and the offline error naming file and flag."""
import pytest
import torch

from misc.weights import PretrainedWeightsError, load_checkpoint, load_pretrained, unwrap_state_dict


def test_unwrap_model_and_module_prefix(tmp_path):
    sd = {"module.a": torch.ones(2), "module.b": torch.zeros(1)}
    assert set(unwrap_state_dict({"model": sd, "epoch": 3})) == {"a", "b"}
    path = tmp_path / "ckpt.pth"
    torch.save({"state_dict": sd, "best_map": 0.5}, path)
    assert set(load_checkpoint(path)) == {"a", "b"}


def test_local_file_and_missing_file(tmp_path):
    path = tmp_path / "w.pth"
    torch.save({"model": {"x": torch.arange(3)}}, path)
    assert torch.equal(load_pretrained(str(path), "unused", flag="--f", download_hint="h")["x"], torch.arange(3))
    with pytest.raises(PretrainedWeightsError, match="--f"):
        load_pretrained(str(tmp_path / "nope.pth"), "unused", flag="--f", download_hint="get it here")


def test_unknown_name_names_flag_and_file():
    with pytest.raises(PretrainedWeightsError) as e:
        load_pretrained("no_such_model_name_xyz", "x", flag="--deit_pretrained", download_hint="deit.pth from X")
    msg = str(e.value)
    assert "--deit_pretrained" in msg and "deit.pth from X" in msg and "--no_pretrained" in msg
