"""`encoder_throughput.py`'s training step: an encoder (ours or transformers.BertModel) with a
linear 5-class head on `pooler_output`, cross-entropy and `torch.optim.AdamW`, timed a step at a
time; the two encoders built with the same pretrained weights and the same head."""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from mtl_tune.platform.batches import Batch
from mtl_tune.platform.bert import BertModel

NUM_CLASSES = 5


@dataclass
class Trainer:
    """An encoder with a linear head and its AdamW optimizer; `step` runs one training step."""

    name: str
    encoder: nn.Module
    head: nn.Linear
    optimizer: torch.optim.Optimizer

    @classmethod
    def build(
        cls, name: str, encoder: nn.Module, head: nn.Linear, lr: float, fused: bool
    ) -> Trainer:
        encoder.train()
        head.train()
        params = [*encoder.parameters(), *head.parameters()]
        # fused=None is torch's default, on CPU the per-parameter for-loop implementation
        return cls(name, encoder, head, torch.optim.AdamW(params, lr=lr, fused=fused or None))

    def step(self, batch: Batch) -> float:
        """One forward + loss + backward + AdamW step; returns its wall time in seconds."""
        return sum(self.timed_step(batch))

    def timed_step(self, batch: Batch) -> tuple[float, float, float]:
        """One training step; returns the seconds of (forward + loss, backward, AdamW + zero)."""
        seg = batch.segments[0]
        t0 = time.perf_counter()
        out = self.encoder(
            input_ids=seg.input_ids,
            attention_mask=seg.attention_mask,
            token_type_ids=seg.token_type_ids,
        )
        loss = F.cross_entropy(self.head(out["pooler_output"]), batch.labels)
        t1 = time.perf_counter()
        loss.backward()
        t2 = time.perf_counter()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return t1 - t0, t2 - t1, time.perf_counter() - t2


def padded_tokens(batch: Batch) -> int:
    ids = batch.segments[0].input_ids
    return ids.size(0) * ids.size(1)


def build_trainers(
    model_dir: str, hf_attn: str, lr: float, seed: int, fused: bool
) -> tuple[Trainer, Trainer]:
    import transformers

    ours = BertModel.from_pretrained(model_dir)
    theirs = transformers.BertModel.from_pretrained(model_dir, attn_implementation=hf_attn)
    torch.manual_seed(seed)
    head = nn.Linear(ours.config.hidden_size, NUM_CLASSES)
    return (
        Trainer.build("ours", ours, head, lr, fused),
        Trainer.build(f"transformers({hf_attn})", theirs, copy.deepcopy(head), lr, fused),
    )
