"""The extractive tagger: a DGCNN over the sequence of clause vectors (algorithms.md 2.2 step 4).

``Dropout -> Linear(width, no bias) -> Dropout -> 6 x [ResGatedConv1D(k=3, dilation 1,2,4,8,1,1)
-> Dropout] -> Linear(1) -> sigmoid``, where a residual gated convolution is
``h = Conv1D(2d)(x * mask); o = LayerNorm(h[:d] * sigmoid(h[d:])); out = x + alpha * o`` with the
scalar ``alpha`` starting at 0 (ReZero): the network starts as the identity and each block is
switched in as training finds it useful.

Each clause sees 17 clauses on either side (the receptive radius of the dilations). Long documents
are scored in windows that overlap by more than that radius, so the probabilities are exactly
those of one pass over the whole document while memory stays bounded.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

NAME = "extractor"
WEIGHTS, CONFIG = f"{NAME}.safetensors", f"{NAME}.json"


@dataclass
class TaggerConfig:
    input_dim: int
    width: int = 384
    dilations: tuple[int, ...] = (1, 2, 4, 8, 1, 1)
    kernel: int = 3
    dropout: float = 0.1

    @property
    def radius(self) -> int:
        """How many clauses on each side can change a clause's probability."""
        return sum(self.dilations) * (self.kernel - 1) // 2


class ResGatedConv(nn.Module):
    """``x + alpha * LayerNorm(gated dilated conv(x))``, alpha initialised at 0."""

    def __init__(self, width: int, dilation: int, kernel: int) -> None:
        super().__init__()
        self.width = width
        self.conv = nn.Conv1d(width, 2 * width, kernel, dilation=dilation, padding=dilation * (kernel - 1) // 2)
        self.norm = nn.LayerNorm(width)
        self.alpha = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h = self.conv((x * mask).transpose(1, 2)).transpose(1, 2)
        o = h[..., : self.width] * torch.sigmoid(h[..., self.width :])
        return x + self.alpha * self.norm(o)


class ClauseTagger(nn.Module):
    """Per-clause logits ``[B, T]`` from clause vectors ``[B, T, input_dim]`` and a mask ``[B, T]``."""

    def __init__(self, cfg: TaggerConfig) -> None:
        super().__init__()
        self.config = cfg
        self.dropout = nn.Dropout(cfg.dropout)
        self.project = nn.Linear(cfg.input_dim, cfg.width, bias=False)
        self.blocks = nn.ModuleList(ResGatedConv(cfg.width, d, cfg.kernel) for d in cfg.dilations)
        self.out = nn.Linear(cfg.width, 1)

    def forward(self, vectors: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        m = mask.to(vectors.dtype)[..., None]
        x = self.dropout(self.project(self.dropout(vectors)))
        for block in self.blocks:
            x = self.dropout(block(x, m))
        return self.out(x).squeeze(-1)

    def probabilities(self, vectors: torch.Tensor, window: int = 2048) -> torch.Tensor:
        """Probabilities ``[T]`` for one document's clause vectors ``[T, input_dim]``, scored in
        windows of ``window`` clauses plus a margin wider than the receptive radius on each side."""
        margin = self.config.radius + 1
        out = torch.empty(len(vectors))
        was_training = self.training
        self.eval()
        with torch.inference_mode():
            for start in range(0, len(vectors), window):
                lo, hi = max(0, start - margin), min(len(vectors), start + window + margin)
                chunk = vectors[lo:hi][None]
                logits = self(chunk, torch.ones(chunk.shape[:2], dtype=torch.bool))[0]
                stop = min(start + window, len(vectors))
                out[start:stop] = torch.sigmoid(logits[start - lo : stop - lo].float())
        self.train(was_training)
        return out

    # ------------------------------------------------------------------ files
    def save(self, directory: str | Path, meta: dict | None = None, name: str = NAME) -> None:
        """``NAME.safetensors`` (fp16) and ``NAME.json`` (the config plus ``meta``) in
        ``directory``, normally the model directory whose backbone made the vectors. ``name``:
        ``extractor`` (summaries) or ``title-selector`` (textgen.titles)."""
        from safetensors.torch import save_file

        directory = Path(directory)
        state = {k: v.detach().to(torch.float16).contiguous() for k, v in self.state_dict().items()}
        save_file(state, str(directory / f"{name}.safetensors"), metadata={"format": "pt"})
        info = {"tagger": asdict(self.config), **(meta or {})}
        (directory / f"{name}.json").write_text(json.dumps(info, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, directory: str | Path, name: str = NAME) -> tuple[ClauseTagger, dict]:
        """The tagger saved in ``directory`` under ``name`` and its JSON."""
        from safetensors.torch import load_file

        directory = Path(directory)
        info = json.loads((directory / f"{name}.json").read_text(encoding="utf-8"))
        raw = dict(info["tagger"])
        raw["dilations"] = tuple(raw.get("dilations", TaggerConfig.dilations))
        model = cls(TaggerConfig(**raw))
        state = {k: v.float() for k, v in load_file(str(directory / f"{name}.safetensors")).items()}
        model.load_state_dict(state)
        return model.eval(), info


@dataclass
class Document:
    """One training document for the tagger: its clause vectors and oracle labels."""

    vectors: torch.Tensor  # [T, input_dim]
    labels: list[int]  # indices of the oracle clauses
    clauses: list[str] = field(default_factory=list)
    summary: str = ""
