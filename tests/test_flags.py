"""Each flag declared once (pipeline/flags.py): the declarations are consistent, the parser, presets and checks come
from them, and every flag a step reads is named by its declaration, so that a step's fingerprint holds every flag
that shapes its outputs."""
import argparse
import dataclasses
import json

import pytest

from pipeline import flags as F
from pipeline import presets
from pipeline.config import parse_args
from pipeline.steps import ALL_STEPS, BY_NAME
from tests.flag_reads import READS


def test_declarations_are_consistent_and_presets_fit_them():
    assert F.declaration_problems() == []
    presets.check_all()
    assert len({f.name for f in F.FLAGS}) == len(F.FLAGS)
    aliases = [a for f in F.FLAGS for a in f.aliases]
    assert not set(aliases) & set(F.BY_FLAG) and len(aliases) == len(set(aliases))


def test_a_preset_with_an_unknown_flag_or_a_bad_value_is_refused():
    with pytest.raises(ValueError, match="--cam_lrr is not a declared flag"):
        F.check_overrides({"cam_lrr": 0.1}, "PRESETS['x']")
    with pytest.raises(ValueError, match=r"--exp_times 40: must be an integer in \[0, 12\]"):
        F.check_overrides({"exp_times": 40}, "PRESETS['x']")
    with pytest.raises(ValueError, match="--cam_optimizer sgd: must be one of poly_sgd, adamw"):
        F.check_overrides({"cam_optimizer": "sgd"}, "PRESETS['x']")


def test_the_parser_has_every_declared_flag_with_its_default_and_aliases():
    parser = F.build_parser()
    by_dest = {a.dest: a for a in parser._actions}
    for f in F.FLAGS:
        action = by_dest[f.name]
        assert action.option_strings == [f"--{f.name}", *(f"--{a}" for a in f.aliases)]
        if f.name != "num_workers":
            assert action.default == f.default, f.name
    args = parse_args(["--cam_lr", "0.05", "--irn_num_epochs", "2", "--cam_scales", "1.0,0.5"])
    assert (args.cam_learning_rate, args.irn_num_epoches, args.cam_scales) == (0.05, 2, (1.0, 0.5))
    assert not hasattr(parse_args(["--cam_network_branch1", "net.resnet50_cam"]), "cam_network_branch1")


def test_value_problems_come_from_the_declared_bounds():
    args = parse_args(["--exp_times", "13", "--cam_eval_thres", "1.5", "--deeplab_scales", "0.5,0", "--nproc", "0"])
    problems = F.value_problems(args)
    assert sorted(problems) == sorted(["--nproc 0: must be an integer >= 1",
                                       "--cam_eval_thres 1.5: must be in [0, 1]",
                                       "--exp_times 13: must be an integer in [0, 12]",
                                       "--deeplab_scales 0.5 0.0: every value must be > 0"])


def test_paths_and_writable_outputs_come_from_the_declarations(tmp_path):
    args = parse_args(["--work_dir", str(tmp_path)])
    for name in F.PATH_FLAGS:
        value = getattr(args, name)
        assert value is None or value.startswith(str(tmp_path)), name
    assert F.written_by("make_cam") == ["cam_out_dir"]
    assert set(F.written_by("train_wsol")) == {"wsol_out_dir", "wsol_weights_name", "wsol_cnn_weights_name"}


def test_a_step_fingerprint_changes_with_every_flag_that_shapes_it():
    args = parse_args([])
    for step in (s.name for s in ALL_STEPS):
        base = F.step_config(args, step)
        for f in F.FLAGS:
            if step not in f.shapes:
                continue
            changed = argparse.Namespace(**vars(args))
            setattr(changed, f.name, ("changed", getattr(args, f.name)))
            assert F.step_config(changed, step) != base, (step, f.name)


def test_the_fingerprints_on_disk_hold_the_shaping_flags(tiny_voc_run):
    work, _ = tiny_voc_run
    manifest = json.loads((work / "result" / "cam" / ".crt_manifest.json").read_text())
    shaping = {f.name for f in F.FLAGS if "make_cam" in f.shapes}
    inputs = {f.name for f in F.FLAGS if "make_cam" in f.reads}
    assert set(manifest["config"]) == shaping | inputs
    assert manifest["config"]["cam_scales"] == [1.0, 0.5] and manifest["config"]["vit_depth"] == 2
    assert manifest["config"]["cam2_weights_name"].startswith("run:")  # the identity of train_cam's weights
    state = json.loads((work / "sess" / "train_cam.state.json").read_text())
    assert state["config"]["cam_num_epoches"] == 3 and state["config"]["train_list"] != "train_aug"


def test_every_flag_a_step_reads_is_declared_for_it(tiny_voc_run, tiny_coco_run, tiny_cub_run):
    """The tiny VOC (with the instance steps), COCO and CUB runs record every flag each step reads
    (tests/flag_reads.py); each must be named by its declaration for that step, or be a setting."""
    assert set(READS) >= set(BY_NAME)  # every step ran and was recorded
    assert F.undeclared_reads(READS) == []


def test_the_completeness_check_fails_when_a_flag_leaves_a_step(monkeypatch, tiny_voc_run):
    """Taking train_cam out of --cam_learning_rate's steps (so out of its fingerprint) is caught."""
    flag = F.BY_FLAG["cam_learning_rate"]
    monkeypatch.setitem(F.BY_FLAG, "cam_learning_rate", dataclasses.replace(flag, shapes=()))
    assert F.undeclared_reads({"train_cam": sorted(READS["train_cam"])}) == [
        "train_cam reads --cam_learning_rate, whose declaration names neither it (shapes/reads/writes/uses) nor is "
        "a setting"]
    assert F.undeclared_reads({"train_cam": ["cam_lr_typo"]}) == ["train_cam reads 'cam_lr_typo', which is no "
                                                                  "declared flag"]


def test_the_flag_reference_page_is_current():
    from tests.conftest import REPO_ROOT

    assert (REPO_ROOT / "docs" / "flags.md").read_text() == F.markdown_reference(), \
        "docs/flags.md is stale: python -m pipeline.flags > docs/flags.md"
