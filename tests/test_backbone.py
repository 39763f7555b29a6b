"""The compact BERT: Hugging Face checkpoint parity, attention modes and the KV cache."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from conftest import save_tiny_model

from textgen.models.backbone import BertBackbone, BertConfig

TOL = 1e-4


def _config(**kw) -> BertConfig:
    return BertConfig(vocab_size=120, hidden_size=48, num_hidden_layers=2, num_attention_heads=4,
                      intermediate_size=96, max_position_embeddings=64, **kw)


@pytest.fixture()
def model() -> BertBackbone:
    torch.manual_seed(0)
    return BertBackbone(_config()).eval()


def test_hf_bert_checkpoint_gives_the_same_mlm_logits(tmp_path):
    from transformers import BertConfig as HFConfig
    from transformers import BertForMaskedLM

    torch.manual_seed(0)
    hf = BertForMaskedLM(HFConfig(vocab_size=120, hidden_size=48, num_hidden_layers=2, num_attention_heads=4,
                                  intermediate_size=96, max_position_embeddings=64)).eval()
    hf.save_pretrained(tmp_path / "hf")
    ours = BertBackbone.load(tmp_path / "hf").eval()
    ids = torch.randint(5, 120, (3, 12))
    ids[1, 8:] = 0
    mask = ids.ne(0)
    types = torch.zeros_like(ids)
    types[:, 6:] = 1
    with torch.no_grad():
        expected = hf(input_ids=ids, attention_mask=mask.long(), token_type_ids=types).logits
        got = ours(ids, attention_mask=mask, token_type_ids=types)
    assert (expected - got)[mask].abs().max() <= TOL
    # and back: our save loads in transformers with the same logits
    ours.save(tmp_path / "ours")
    again = BertForMaskedLM.from_pretrained(tmp_path / "ours").eval()
    with torch.no_grad():
        assert (again(input_ids=ids, attention_mask=mask.long(), token_type_ids=types).logits - got)[mask].abs().max() <= TOL


def test_bare_bert_model_without_head_loads_and_pickles_need_permission(tmp_path):
    from transformers import BertConfig as HFConfig
    from transformers import BertModel

    BertModel(HFConfig(vocab_size=120, hidden_size=48, num_hidden_layers=1, num_attention_heads=4,
                       intermediate_size=96)).save_pretrained(tmp_path / "bare")
    assert BertBackbone.load(tmp_path / "bare").config.num_hidden_layers == 1
    (tmp_path / "bare" / "model.safetensors").rename(tmp_path / "bare" / "x")
    torch.save({}, tmp_path / "bare" / "pytorch_model.bin")
    with pytest.raises(PermissionError, match="allow-pickle"):
        BertBackbone.load(tmp_path / "bare")


def test_modes_differ_where_they_should(model):
    ids = torch.randint(5, 120, (1, 10))
    types = torch.tensor([[0] * 6 + [1] * 4])
    with torch.no_grad():
        bi = model(ids, mode="bidirectional")
        causal = model(ids, mode="causal")
        unilm = model(ids, mode="unilm", token_type_ids=types)
        changed = ids.clone()
        changed[0, 8] = (changed[0, 8] + 1) % 120
        unilm2 = model(changed, mode="unilm", token_type_ids=types)
        causal2 = model(changed, mode="causal")
    assert (bi[0, 0] - causal[0, 0]).abs().max() > 1e-3  # the first token sees everything only bidirectionally
    # UniLM: the source (positions < 6) never sees the target; target position 7 does not see 8
    assert (unilm[0, :8] - unilm2[0, :8]).abs().max() <= TOL
    assert (unilm[0, 8:] - unilm2[0, 8:]).abs().max() > 1e-3
    assert (causal[0, :8] - causal2[0, :8]).abs().max() <= TOL
    # UniLM source is bidirectional: source position 0 depends on source position 5
    src_changed = ids.clone()
    src_changed[0, 5] = (src_changed[0, 5] + 1) % 120
    with torch.no_grad():
        assert (model(src_changed, mode="unilm", token_type_ids=types)[0, 0] - unilm[0, 0]).abs().max() > 1e-3


def _incremental(model, prefix, steps, mode, types_prefix):
    """Logits from feeding ``steps`` one at a time after ``prefix`` through the cache."""
    hidden, cache = model.encode(prefix, mode=mode, token_type_ids=types_prefix, use_cache=True)
    logits = [model.lm_logits(hidden)[:, -1]]
    for j in range(steps.shape[1]):
        step_types = torch.ones_like(steps[:, j : j + 1]) if mode == "unilm" else None
        hidden, cache = model.encode(steps[:, j : j + 1], token_type_ids=step_types, cache=cache, use_cache=True)
        logits.append(model.lm_logits(hidden)[:, -1])
    return torch.stack(logits, 1)


@pytest.mark.parametrize("mode", ["causal", "unilm"])
def test_cached_decoding_equals_recomputation(model, mode):
    torch.manual_seed(1)
    prefix = torch.randint(5, 120, (2, 7))
    steps = torch.randint(5, 120, (2, 5))
    types_prefix = torch.zeros_like(prefix)
    with torch.no_grad():
        inc = _incremental(model, prefix, steps, mode, types_prefix)
        full_ids = torch.cat([prefix, steps], 1)
        full_types = torch.cat([types_prefix, torch.ones_like(steps)], 1) if mode == "unilm" else None
        full = model(full_ids, mode=mode, token_type_ids=full_types)[:, 6:]
    assert (inc - full).abs().max() <= TOL


def test_cache_handles_right_padded_prompts(model):
    """Rows of different lengths in one batch: each row's cached result equals its unpadded run."""
    prompts = [[2, 11, 12, 13, 3], [2, 21, 3]]
    batch = torch.tensor([p + [0] * (5 - len(p)) for p in prompts])
    new = torch.tensor([[40], [50]])
    with torch.no_grad():
        _, cache = model.encode(batch, mode="unilm", token_type_ids=torch.zeros_like(batch), use_cache=True)
        hidden, _ = model.encode(new, token_type_ids=torch.ones_like(new), cache=cache, use_cache=True)
        got = model.lm_logits(hidden)[:, 0]
        for r, p in enumerate(prompts):
            ids = torch.tensor([p + [new[r, 0].item()]])
            types = torch.tensor([[0] * len(p) + [1]])
            assert (model(ids, mode="unilm", token_type_ids=types)[0, -1] - got[r]).abs().max() <= TOL


def test_too_long_input_is_a_clear_error(model):
    with pytest.raises(ValueError, match="positions"):
        model(torch.ones(1, 65, dtype=torch.long))


def test_saved_weights_get_the_usual_file_mode(tmp_path: Path):
    model = save_tiny_model(tmp_path / "m")
    umask = os.umask(0)
    os.umask(umask)
    assert (model / "model.safetensors").stat().st_mode & 0o777 == 0o666 & ~umask
