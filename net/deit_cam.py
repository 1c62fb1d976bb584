"""TS-CAM / CRT transformer CAM branch (docs/networks.md#transformer-branch; CUB variant docs/wsol_cub.md#models).

A DeiT whose Linear head is replaced by a 3×3 conv on the patch-token grid. Key names follow timm / the original
(``cls_token``, ``pos_embed``, ``patch_embed.proj``, ``blocks.N.{norm1,attn.qkv,attn.proj,norm2,mlp.fc1,mlp.fc2}``,
``norm``, ``head``), so DeiT ImageNet weights and the original CRT checkpoints load as is.

VOC (``tiled=True``, ``num_passes=3``): pos_embed is never interpolated, so inputs are cut into tile×tile crops at
stride tile/2, each run at its native size, and the tile outputs are merged by averaging overlaps. The 12 blocks run
``num_passes`` times with an extra outer residual ``z ← z + F(z)``.

CUB (``tiled=False``, ``num_passes=1``, ``outer_residual=False``): the plain TS-CAM forward on a tile×tile input.

Attention: training and the block outputs always use fused attention (``F.scaled_dot_product_attention``); the CAM
path additionally computes only the cls-query row ``softmax(q_cls·Kᵀ·scale)`` per head (head-mean), summed over all
block calls.
"""
from __future__ import annotations

import logging
import math
from typing import Any, Mapping

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import DropPath, Mlp, trunc_normal_

from misc.method.torchutils import gap2d

log = logging.getLogger(__name__)

DEIT_SMALL_URL = "https://dl.fbaipublicfiles.com/deit/deit_small_patch16_224-cd65a155.pth"


class PatchEmbed(nn.Module):
    """Conv p×p stride p: (N,3,t,t) → tokens (N, (t/p)², D)."""

    def __init__(self, patch_size: int, embed_dim: int, in_chans: int = 3) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_chans, embed_dim, patch_size, patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class Attention(nn.Module):
    """Multi-head self-attention with fused SDPA; optionally also the head-mean cls-query attention row."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"embed_dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim ** -0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, cls_attention: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        """x (N,L,D) → (out (N,L,D), cls row (N,L) = mean_heads softmax(q_0·Kᵀ·scale) or None)."""
        n, length, dim = x.shape
        qkv = self.qkv(x).reshape(n, length, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # (N, heads, L, hd)
        out = F.scaled_dot_product_attention(q, k, v)
        row = None
        if cls_attention:
            logits = (q[:, :, :1] * self.scale) @ k.transpose(-2, -1)  # (N, heads, 1, L)
            row = logits.float().softmax(dim=-1).mean(dim=1)[:, 0]
        out = out.transpose(1, 2).reshape(n, length, dim)
        return self.proj(out), row


class Block(nn.Module):
    """Pre-norm transformer block: x += DropPath(attn(LN1 x)); x += DropPath(MLP(LN2 x))."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, qkv_bias: bool = True,
                 drop_path: float = 0.0, norm_eps: float = 1e-6) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.attn = Attention(dim, num_heads, qkv_bias)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        self.mlp = Mlp(in_features=dim, hidden_features=int(dim * mlp_ratio), act_layer=nn.GELU)

    def forward(self, x: torch.Tensor, cls_attention: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        attn_out, row = self.attn(self.norm1(x), cls_attention)
        x = x + self.drop_path(attn_out)
        x = x + self.drop_path(self.mlp(self.norm2(x)))
        return x, row


class DeiTCAM(nn.Module):
    """DeiT with a conv head producing class score maps at stride ``patch_size``.

    Modes:
    - ``forward(x)``: raw (pre-ReLU) score map (B,C,H/p,W/p). Tiled: H and W must be multiples of tile/2 and ≥ tile
      (no padding). Not tiled: H = W = tile.
    - ``forward(x, return_cam=True)`` / ``forward_cam(x)``: per-image CAMs (B,C,ceil(H/p),ceil(W/p)) of any batch.
    - ``forward_wsol(x)``: CUB interface (logits, map).
    """

    def __init__(self, num_classes: int = 20, embed_dim: int = 384, depth: int = 12, num_heads: int = 6,
                 mlp_ratio: float = 4.0, patch_size: int = 16, tile_size: int = 224, num_passes: int = 3,
                 tiled: bool = True, outer_residual: bool = True, drop_path_rate: float = 0.0,
                 qkv_bias: bool = True, norm_eps: float = 1e-6) -> None:
        super().__init__()
        if tile_size % patch_size or (tiled and (tile_size // patch_size) % 2):
            raise ValueError("tile_size / patch_size must be an even integer (tiles overlap by half a tile)")
        self.num_classes = num_classes
        self.embed_dim = embed_dim
        self.patch_size = patch_size
        self.tile_size = tile_size
        self.tile_stride = tile_size // 2
        self.grid = tile_size // patch_size
        self.num_passes = num_passes
        self.tiled = tiled
        self.outer_residual = outer_residual

        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, self.grid * self.grid + 1, embed_dim))
        self.patch_embed = PatchEmbed(patch_size, embed_dim)
        rates = torch.linspace(0, drop_path_rate, depth).tolist()
        self.blocks = nn.ModuleList(
            Block(embed_dim, num_heads, mlp_ratio, qkv_bias, rates[i], norm_eps) for i in range(depth))
        self.norm = nn.LayerNorm(embed_dim, eps=norm_eps)
        self.head = nn.Conv2d(embed_dim, num_classes, 3, 1, 1)  # default PyTorch conv init, as the original

        trunc_normal_(self.pos_embed, std=0.02)
        trunc_normal_(self.cls_token, std=0.02)
        for m in self.blocks.modules():
            if isinstance(m, nn.Linear):
                trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    # ---------------------------------------------------------------- parameters
    def trainable_parameters(self) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
        """(all ViT params incl. pos_embed / cls_token, conv head params)."""
        head = list(self.head.parameters())
        head_ids = {id(p) for p in head}
        return [p for p in self.parameters() if id(p) not in head_ids], head

    def no_weight_decay(self) -> set[str]:
        return {"pos_embed", "cls_token"}

    # ---------------------------------------------------------------- geometry
    def pad_for_cam(self, x: torch.Tensor) -> torch.Tensor:
        """Zero-pad bottom/right to max((H//s+1)·s, tile), s = tile/2 (always ≥ 1 px, as the original)."""
        h, w = x.shape[-2:]
        s = self.tile_stride
        hp = max((h // s + 1) * s, self.tile_size)
        wp = max((w // s + 1) * s, self.tile_size)
        return F.pad(x, (0, wp - w, 0, hp - h))

    def tile(self, x: torch.Tensor) -> tuple[torch.Tensor, int, int]:
        """(B,3,H,W) → (tiles (T·B,3,t,t), num_h, num_w); tile-major order: index = (i·num_w + j)·B + b."""
        b, c, h, w = x.shape
        t, s = self.tile_size, self.tile_stride
        if h % s or w % s or h < t or w < t:
            raise ValueError(f"tiled input must have H, W multiples of {s} and >= {t}; got {h}x{w}")
        num_h, num_w = (h - t) // s + 1, (w - t) // s + 1
        tiles = x.unfold(2, t, s).unfold(3, t, s)  # (B,3,nh,nw,t,t)
        tiles = tiles.permute(2, 3, 0, 1, 4, 5).reshape(num_h * num_w * b, c, t, t)
        return tiles, num_h, num_w

    def merge(self, f: torch.Tensor, num_h: int, num_w: int, batch: int) -> torch.Tensor:
        """Tile maps (T·B,C,g,g) → canvas (B,C,(g/2)(num_h+1),(g/2)(num_w+1)), overlaps averaged.

        Accumulates in at least float32 on the input's device.
        """
        _, c, g, _ = f.shape
        half = g // 2
        acc_dtype = torch.promote_types(f.dtype, torch.float32)
        cols = f.to(acc_dtype).reshape(num_h, num_w, batch, c, g, g).permute(2, 3, 4, 5, 0, 1)
        cols = cols.reshape(batch, c * g * g, num_h * num_w)
        size = (half * (num_h + 1), half * (num_w + 1))
        canvas = F.fold(cols, size, kernel_size=g, stride=half)
        ones = torch.ones(1, g * g, num_h * num_w, dtype=acc_dtype, device=f.device)
        count = F.fold(ones, size, kernel_size=g, stride=half)
        return canvas / count

    # ---------------------------------------------------------------- ViT core
    def encode(self, tiles: torch.Tensor, cls_attention: bool = False,
               attention_rows: list[torch.Tensor] | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Tiles (N,3,t,t) → (patch tokens after the final LN (N,g²,D), cls attention (N,g²) or None).

        The cls attention is Σ over all block calls (num_passes × depth) of the head-mean cls-query row, restricted
        to the patch keys. If ``attention_rows`` is a list, each call's full row (N, g²+1) is appended (debugging).
        """
        n = tiles.shape[0]
        z = self.patch_embed(tiles).to(self.pos_embed.dtype)  # residual stream stays in the parameter dtype
        z = torch.cat([self.cls_token.expand(n, -1, -1), z], dim=1) + self.pos_embed
        want_rows = cls_attention or attention_rows is not None
        attn_sum: torch.Tensor | None = None
        for _ in range(self.num_passes):
            y = z
            for blk in self.blocks:
                y, row = blk(y, want_rows)
                if row is not None:
                    if attention_rows is not None:
                        attention_rows.append(row)
                    attn_sum = row if attn_sum is None else attn_sum + row
            z = z + y if self.outer_residual else y
        tokens = self.norm(z)[:, 1:]
        return tokens, (attn_sum[:, 1:] if cls_attention and attn_sum is not None else None)

    def head_map(self, tokens: torch.Tensor) -> torch.Tensor:
        """Patch tokens (N,g²,D) → head score map (N,C,g,g) (tokens laid out row-major)."""
        n, length, d = tokens.shape
        g = math.isqrt(length)
        return self.head(tokens.transpose(1, 2).reshape(n, d, g, g))

    def tile_scores(self, tiles: torch.Tensor, cls_attention: bool = False,
                    attention_rows: list[torch.Tensor] | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Tiles (N,3,t,t) → (head score maps (N,C,g,g), cls attention maps (N,1,g,g) or None)."""
        tokens, attn = self.encode(tiles, cls_attention, attention_rows)
        scores = self.head_map(tokens)
        if attn is not None:
            attn = attn.reshape(attn.shape[0], 1, self.grid, self.grid)
        return scores, attn

    # ---------------------------------------------------------------- maps
    def _maps(self, x: torch.Tensor, with_cam: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(B,3,H,W) → (score map, un-ReLU'd CAM or None), both (B,C,ceil(H/p),ceil(W/p))."""
        b, _, h, w = x.shape
        if not self.tiled:
            if h != self.tile_size or w != self.tile_size:
                raise ValueError(f"untiled DeiTCAM needs {self.tile_size}x{self.tile_size} inputs, got {h}x{w}")
            scores, attn = self.tile_scores(x, with_cam)
            return scores, (attn * scores.detach() if attn is not None else None)
        if with_cam:
            x = self.pad_for_cam(x)
        tiles, num_h, num_w = self.tile(x)
        scores, attn = self.tile_scores(tiles, with_cam)
        merged = self.merge(scores, num_h, num_w, b)
        cams = self.merge(attn * scores.detach(), num_h, num_w, b) if attn is not None else None
        oh, ow = -(-h // self.patch_size), -(-w // self.patch_size)
        merged = merged[:, :, :oh, :ow]
        return merged, (cams[:, :, :oh, :ow] if cams is not None else None)

    def forward_cam(self, x: torch.Tensor) -> torch.Tensor:
        """Any batch (B,3,H,W) → per-image CAMs ReLU(merge(cls-attention ⊙ score map)) (B,C,ceil(H/p),ceil(W/p)).

        Tiled: the input is first zero-padded by :meth:`pad_for_cam`. Use :func:`fuse_flip_pair` on an
        [img, flipped img] batch to get the original pair output.
        """
        _, cams = self._maps(x, with_cam=True)
        assert cams is not None
        return torch.relu(cams)

    def forward(self, x: torch.Tensor, return_cam: bool = False) -> torch.Tensor:
        """Score map (B,C,h,w) (pre-ReLU), or with ``return_cam`` the CAMs of :meth:`forward_cam`."""
        if return_cam:
            return self.forward_cam(x)
        return self._maps(x, with_cam=False)[0]

    def forward_wsol(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """CUB interface (docs/wsol_cub.md#models). Train mode: (logits = GAP(score map) (B,C), score map (B,C,h,w) pre-ReLU).
        Eval mode: (logits, ReLU(cls attention ⊙ score map)) from the same forward."""
        if self.training:
            scores, _ = self._maps(x, with_cam=False)
            return gap2d(scores), scores
        scores, cams = self._maps(x, with_cam=True)
        assert cams is not None
        return gap2d(scores), torch.relu(cams)


def encode_explicit(model: DeiTCAM, tiles: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """The original's way of running the encoder, for tests and speed comparisons (not used by the steps).

    Tiles (N,3,t,t) → (patch tokens after the final LN (N,g²,D), every block call's full attention matrix
    (N, heads, L, L), explicit softmax, num_passes × depth of them). Same result as :meth:`DeiTCAM.encode`.
    """
    n = tiles.shape[0]
    z = model.patch_embed(tiles)
    z = torch.cat([model.cls_token.expand(n, -1, -1), z], 1) + model.pos_embed
    attns = []
    for _ in range(model.num_passes):
        y = z
        for blk in model.blocks:
            a = blk.attn
            h = blk.norm1(y)
            b, length, d = h.shape
            q, k, v = a.qkv(h).reshape(b, length, 3, a.num_heads, d // a.num_heads).permute(2, 0, 3, 1, 4).unbind(0)
            attn = ((q @ k.transpose(-2, -1)) * a.scale).softmax(-1)
            attns.append(attn)
            y = y + a.proj((attn @ v).transpose(1, 2).reshape(b, length, d))
            y = y + blk.mlp(blk.norm2(y))
        z = z + y if model.outer_residual else y
    return model.norm(z)[:, 1:], attns


def fuse_flip_pair(cams: torch.Tensor) -> torch.Tensor:
    """Original pair interface: CAMs of [img, horizontally flipped img] (2,C,h,w) → cams[0] + flip_W(cams[1]) (C,h,w)."""
    if cams.shape[0] != 2:
        raise ValueError(f"expected a pair of CAMs, got batch {cams.shape[0]}")
    return cams[0] + cams[1].flip(-1)


# -------------------------------------------------------------------- weights
DEIT_TIMM_NAME = "deit_small_patch16_224.fb_in1k"
DEIT_DOWNLOAD_HINT = f"{DEIT_SMALL_URL} (file deit_small_patch16_224-cd65a155.pth)"
# DeiTCAM's own layers that DeiT ImageNet weights do not have: the 3x3 conv CAM head (``head``, same name as DeiT's
# Linear classifier but another shape). They start at their init. Listed explicitly: no other key may be missing.
DEIT_INIT_KEYS: tuple[str, ...] = ("head.weight", "head.bias")
# Classifier heads of a DeiT file, dropped (as a whole module) when the model lacks them or has another shape.
DEIT_FILE_HEADS: tuple[str, ...] = ("head.", "head_dist.")


def deit_state_for(own: Mapping[str, torch.Tensor], state: Mapping[str, torch.Tensor], *, flag: str,
                   source: str) -> dict[str, torch.Tensor]:
    """The part of a DeiT checkpoint ``state`` to load into a model whose state dict is ``own`` (shapes only, may
    be ``meta``), checked strictly.

    A file head (``head.*`` / ``head_dist.*``) is dropped as a whole when the model has no such key or one of its
    tensors has another shape (ImageNet's Linear(384→1000) vs our conv head); the model's :data:`DEIT_INIT_KEYS`
    may then stay at their init. Any other missing, unexpected or mis-shaped key (e.g. a pos_embed of another
    grid: --vit_tile_size / --vit_patch_size must give the 14×14 grid of DeiT-S/16 at 224) raises
    :class:`misc.core.weights.PretrainedWeightsError` naming ``flag``, ``source`` and the keys.
    """
    from misc.core.weights import check_state_fits

    out = dict(state)
    dropped: list[str] = []
    for prefix in DEIT_FILE_HEADS:
        keys = [k for k in out if k.startswith(prefix)]
        if any(k not in own or tuple(out[k].shape) != tuple(own[k].shape) for k in keys) or \
                any(k.startswith(prefix) and k not in out for k in own):
            dropped += keys
            for k in keys:
                del out[k]
    if dropped:
        log.info("%s: DeiT weights: dropped the file's classifier head(s) %s (another shape; the CAM head "
                 "starts at its init)", flag, dropped)
    hint = ("Expected a DeiT/ViT state dict (cls_token, pos_embed, patch_embed.proj, blocks.N.*, norm, head) for "
            f"embed dim {own['cls_token'].shape[-1] if 'cls_token' in own else '?'}, e.g. {DEIT_DOWNLOAD_HINT}; "
            "or pass --no_pretrained.")
    check_state_fits(own, out, flag=flag, source=source, what="DeiT", hint=hint,
                     may_miss=lambda key: key in DEIT_INIT_KEYS)
    return out


def load_deit_imagenet(model: DeiTCAM, source: str | None, flag: str) -> None:
    """Load DeiT ImageNet weights strictly, except the classification head(s).

    ``source``: the official file ``deit_small_patch16_224-cd65a155.pth`` (``{"model": state}``), timm's raw
    state dict, a training checkpoint (``model`` / ``model_ema`` / ``state_dict`` wrappers, ``module.`` /
    ``backbone.`` prefixes), a timm name, or None → ``deit_small_patch16_224.fb_in1k``. See :func:`deit_state_for`
    for what must match; pos_embed is never resized (the 224-px tiles at patch 16 use DeiT's 14×14 grid as is).
    """
    from misc.core.weights import load_pretrained

    state = load_pretrained(source, DEIT_TIMM_NAME, flag=flag, download_hint=DEIT_DOWNLOAD_HINT)
    state = deit_state_for(model.state_dict(), state, flag=flag, source=source or DEIT_TIMM_NAME)
    missing, _ = model.load_state_dict(state, strict=False)  # only DEIT_INIT_KEYS can be missing (checked)
    log.info("loaded DeiT weights from %s (%d tensors)%s", source or DEIT_TIMM_NAME, len(state),
             f"; at their init: {missing}" if missing else "")


# ------------------------------------------------------- factories (one per variant; from flags: pipeline/models.py)
def deit_cam_small(**kw: Any) -> DeiTCAM:
    """DeiT-S CAM branch (dim 384, 6 heads), VOC defaults: 20 classes, 3 passes, tiled."""
    return DeiTCAM(**{"embed_dim": 384, "depth": 12, "num_heads": 6, **kw})


def deit_wsol_small(**kw: Any) -> DeiTCAM:
    """CUB TS-CAM model (docs/wsol_cub.md#models): DeiT-S, 200 classes, single pass without outer residual, no tiling,
    drop_path 0.1; use ``forward_wsol``."""
    defaults = {"num_classes": 200, "num_passes": 1, "tiled": False, "outer_residual": False, "drop_path_rate": 0.1}
    return deit_cam_small(**{**defaults, **kw})
