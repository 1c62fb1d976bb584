"""DeiT CAM branch: batching, pair fusion, fused vs explicit attention, CUB mode, weights, bf16."""
from __future__ import annotations

import math

import pytest
import torch

from net.deit_cam import DeiTCAM, deit_cam_small, encode_explicit, fuse_flip_pair, load_deit_imagenet

TILE, PATCH = 64, 16  # tiny geometry: 4x4 token grid, tiles at stride 32


def tiny(**kw) -> DeiTCAM:
    torch.manual_seed(0)
    cfg = dict(num_classes=5, embed_dim=24, depth=2, num_heads=3, patch_size=PATCH, tile_size=TILE)
    cfg.update(kw)
    model = DeiTCAM(**cfg)
    with torch.no_grad():  # non-trivial values everywhere (the init leaves biases at 0)
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return model.eval()


# ------------------------------------------------------------------ explicit reference (docs/networks.md#progressive-forward, loop style)
def ref_tilling(x: torch.Tensor, t: int) -> tuple[torch.Tensor, int, int]:
    s = t // 2
    num_h, num_w = (x.shape[2] - t) // s + 1, (x.shape[3] - t) // s + 1
    tiles = [x[:, :, i * s:i * s + t, j * s:j * s + t] for i in range(num_h) for j in range(num_w)]
    return torch.cat(tiles, 0), num_h, num_w


def ref_merging(f: torch.Tensor, num_h: int, num_w: int, bs: int) -> torch.Tensor:
    g = f.shape[-1]
    half = g // 2
    canvas = torch.zeros(bs, f.shape[1], half * (num_h + 1), half * (num_w + 1))
    mask = torch.zeros_like(canvas)
    chunks = torch.split(f, bs)
    for i in range(num_h):
        for j in range(num_w):
            canvas[:, :, i * half:i * half + g, j * half:j * half + g] += chunks[i * num_w + j]
            mask[:, :, i * half:i * half + g, j * half:j * half + g] += 1
    return canvas / mask


def ref_head(model: DeiTCAM, tokens: torch.Tensor) -> torch.Tensor:
    n, length, d = tokens.shape
    g = int(length ** 0.5)
    return model.head(tokens.reshape(n, g, g, d).permute(0, 3, 1, 2))


def ref_train_forward(model: DeiTCAM, x: torch.Tensor) -> torch.Tensor:
    tiles, nh, nw = ref_tilling(x, model.tile_size)
    tokens, _ = encode_explicit(model, tiles)
    return ref_merging(ref_head(model, tokens), nh, nw, x.shape[0])


def ref_cam_pair(model: DeiTCAM, pair: torch.Tensor) -> torch.Tensor:
    """Original eval path on [img, flip]: pad, tile, per-layer attention sums, head-mean, layer sum, merge(bs=2)..."""
    h, w = pair.shape[-2:]
    s, t = model.tile_size // 2, model.tile_size
    hp, wp = max((h // s + 1) * s, t), max((w // s + 1) * s, t)
    x = torch.nn.functional.pad(pair, (0, wp - w, 0, hp - h))
    tiles, nh, nw = ref_tilling(x, t)
    tokens, attns = encode_explicit(model, tiles)
    depth = len(model.blocks)
    per_layer = [sum(attns[layer + depth * k] for k in range(model.num_passes)) for layer in range(depth)]
    weights = torch.stack(per_layer).mean(2).sum(0)[:, 0, 1:]  # (N, L-1)
    g = model.grid
    scores = ref_head(model, tokens)
    cams = ref_merging(weights.reshape(-1, 1, g, g) * scores, nh, nw, 2)
    hm, wm = cams.shape[-2:]
    cams = torch.relu(cams[:, :, :math.ceil(hm * h / hp), :math.ceil(wm * w / wp)])
    return cams[0] + cams[1].flip(-1)


# ------------------------------------------------------------------ tests
def test_train_forward_fused_equals_explicit_reference() -> None:
    model = tiny().train()
    x = torch.randn(2, 3, 96, 128)
    out = model(x)
    ref = ref_train_forward(model, x)
    assert out.shape == (2, 5, 6, 8)
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)
    grads = torch.autograd.grad(out.square().sum(), [model.blocks[0].attn.qkv.weight, model.head.weight])
    grads_ref = torch.autograd.grad(ref.square().sum(), [model.blocks[0].attn.qkv.weight, model.head.weight])
    for g, gr in zip(grads, grads_ref):
        torch.testing.assert_close(g, gr, rtol=1e-4, atol=1e-5)


def test_train_forward_rejects_untileable_sizes() -> None:
    model = tiny().train()
    with pytest.raises(ValueError):
        model(torch.randn(1, 3, 80, 64))
    with pytest.raises(ValueError):
        model(torch.randn(1, 3, 32, 64))


@pytest.mark.parametrize("hw", [(50, 70), (64, 64), (100, 37)])
def test_cam_pair_fusion_matches_original_semantics(hw) -> None:
    model = tiny()
    img = torch.randn(1, 3, *hw)
    pair = torch.cat([img, img.flip(-1)])
    with torch.no_grad():
        fused = fuse_flip_pair(model(pair, return_cam=True))
        ref = ref_cam_pair(model, pair)
    assert fused.shape == (5, math.ceil(hw[0] / PATCH), math.ceil(hw[1] / PATCH))
    assert (fused >= 0).all()
    torch.testing.assert_close(fused, ref, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError):
        fuse_flip_pair(torch.zeros(3, 5, 2, 2))


@pytest.mark.parametrize("batch", [1, 3])
def test_cam_batch_equals_per_image(batch: int) -> None:
    model = tiny()
    x = torch.randn(batch, 3, 70, 90)
    with torch.no_grad():
        cams = model.forward_cam(x)
        singles = torch.cat([model.forward_cam(x[i:i + 1]) for i in range(batch)])
    assert cams.shape == (batch, 5, 5, 6)
    torch.testing.assert_close(cams, singles, rtol=1e-5, atol=1e-6)


def test_cls_attention_mass() -> None:
    """Each softmax row sums to 1, so the patch-key mass over all block calls is ≤ passes·depth."""
    model = tiny()
    tiles = torch.randn(2, 3, TILE, TILE)
    rows: list[torch.Tensor] = []
    with torch.no_grad():
        _, attn = model.tile_scores(tiles, cls_attention=True, attention_rows=rows)
    assert len(rows) == model.num_passes * len(model.blocks)
    torch.testing.assert_close(torch.stack(rows).sum(-1), torch.ones(len(rows), 2))
    torch.testing.assert_close(attn.flatten(1).sum(-1), torch.stack(rows)[:, :, 1:].sum((0, 2)))


def test_cub_single_pass_mode() -> None:
    model = tiny(num_classes=7, num_passes=1, tiled=False, outer_residual=False, drop_path_rate=0.1)
    x = torch.randn(3, 3, TILE, TILE)
    model.train()
    torch.manual_seed(1)
    logits, scores = model.forward_wsol(x)
    assert logits.shape == (3, 7) and scores.shape == (3, 7, 4, 4)
    torch.testing.assert_close(logits, scores.mean((2, 3)))
    model.eval()
    with torch.no_grad():
        logits_eval, cams = model.forward_wsol(x)
        tokens, attns = encode_explicit(model, x)
        ref_scores = ref_head(model, tokens)
        weights = torch.stack(attns).mean(2).sum(0)[:, 0, 1:].reshape(3, 1, 4, 4)
    torch.testing.assert_close(logits_eval, ref_scores.mean((2, 3)), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(cams, torch.relu(weights * ref_scores), rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError):
        model.forward_wsol(torch.randn(1, 3, 96, 96))


def test_timm_deit_keys_and_features_match(tmp_path) -> None:
    """A timm DeiT-S checkpoint (official file layout: {'model': ...}, Linear head 1000) loads; the ViT matches timm."""
    import timm
    torch.manual_seed(0)
    reference = timm.create_model("deit_small_patch16_224", pretrained=False).eval()
    state = reference.state_dict()
    state["head_dist.weight"] = torch.zeros(1000, 384)  # the distilled checkpoints carry one; must be dropped
    path = tmp_path / "deit_small_patch16_224-cd65a155.pth"
    torch.save({"model": state}, path)
    model = deit_cam_small(num_passes=1, outer_residual=False).eval()
    head_before = model.head.weight.detach().clone()
    load_deit_imagenet(model, str(path), flag="--deit_weights")
    torch.testing.assert_close(model.head.weight, head_before)
    torch.testing.assert_close(model.pos_embed, state["pos_embed"])
    own_keys = set(model.state_dict()) - {"head.weight", "head.bias"}
    assert own_keys == set(state) - {"head.weight", "head.bias", "head_dist.weight"}
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        tokens, _ = model.encode(x)
        expected = reference.forward_features(x)[:, 1:]
    torch.testing.assert_close(tokens, expected, rtol=1e-4, atol=1e-4)


def test_trainable_parameters_and_no_weight_decay() -> None:
    model = tiny()
    vit, head = model.trainable_parameters()
    assert [id(p) for p in head] == [id(model.head.weight), id(model.head.bias)]
    assert len(vit) + len(head) == len(list(model.parameters()))
    assert any(p is model.pos_embed for p in vit) and any(p is model.cls_token for p in vit)
    assert model.no_weight_decay() == {"pos_embed", "cls_token"}


def test_bf16_autocast_runs() -> None:
    model = tiny().train()
    x = torch.randn(2, 3, 96, 96)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x)
        out.float().mean().backward()
        model.eval()
        with torch.no_grad():
            cams = model.forward_cam(x)
    ref = model.train()(x).detach()
    assert torch.isfinite(out).all() and torch.isfinite(cams).all()
    assert (out.float() - ref).abs().max() < 0.1 * ref.abs().max() + 0.05
    assert cams.shape == (2, 5, 6, 6)
