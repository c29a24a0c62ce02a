import json
from pathlib import Path

import pytest
import torch

from mtl_tune.exceptions import CheckpointError
from mtl_tune.platform.bert import BertModel
from mtl_tune.platform.tokenizer import WordPieceTokenizer
from tests.conftest import minilm_path
from tests.helpers import need_module, save_tiny_bert

SENTENCES = [
    "a gripping , funny and moving film .",
    "it 's not the worst movie ever , but it 's close",
    "the cat sat .",
]


def _padded_batch(folder: Path) -> dict[str, torch.Tensor]:
    batch = WordPieceTokenizer.from_pretrained(folder).encode(SENTENCES, SENTENCES[::-1])
    ids = batch.input_ids.long()
    mask = (torch.arange(ids.size(1))[None, :] < batch.lengths[:, None]).long()
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": batch.token_type_ids.long()}


@pytest.mark.parametrize("which", ["tiny", "minilm"])
def test_outputs_equal_transformers(which: str, tiny_bert_dir: Path) -> None:
    transformers = need_module("transformers", "pip install -e '.[test]'")
    folder = tiny_bert_dir if which == "tiny" else minilm_path()
    ours = BertModel.from_pretrained(folder)
    theirs = transformers.BertModel.from_pretrained(str(folder), attn_implementation="eager").eval()
    batch = _padded_batch(folder)
    # the batch really is padded, so the mask matters
    assert (batch["attention_mask"] == 0).any()
    with torch.no_grad():
        a = ours(**batch)
        b = theirs(**batch)
    # hidden states equal HF's within 1e-5 (max abs over every position, padding included)
    assert (a["last_hidden_state"] - b.last_hidden_state).abs().max().item() < 1e-5
    # pooler outputs equal HF's within 1e-5
    assert (a["pooler_output"] - b.pooler_output).abs().max().item() < 1e-5


def test_loads_bert_prefixed_pytorch_bin(tmp_path: Path, tiny_bert_dir: Path) -> None:
    from safetensors.torch import load_file

    state = load_file(str(tiny_bert_dir / "model.safetensors"))
    torch.save({f"bert.{k}": v for k, v in state.items()}, tmp_path / "pytorch_model.bin")
    (tmp_path / "config.json").write_text((tiny_bert_dir / "config.json").read_text())
    model = BertModel.from_pretrained(tmp_path)
    # the `bert.` prefix is stripped and every weight loaded
    torch.testing.assert_close(
        model.state_dict()["pooler.dense.weight"], state["pooler.dense.weight"]
    )


def test_missing_weight_is_named(tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    save_tiny_bert(tmp_path)
    state = load_file(str(tmp_path / "model.safetensors"))
    del state["encoder.layer.1.output.dense.weight"]
    state["extra.head.weight"] = torch.zeros(2)
    save_file(state, tmp_path / "model.safetensors")
    # missing and unexpected weights are both reported by name
    with pytest.raises(
        CheckpointError,
        match=r"missing weights \['encoder.layer.1.output.dense.weight'\]"
        r".*unexpected weights \['extra.head.weight'\]",
    ):
        BertModel.from_pretrained(tmp_path)


@pytest.mark.parametrize("name", ["bert-base-uncased", "sentence-transformers/all-MiniLM-L6-v2"])
def test_hub_name_fails_clearly(name: str) -> None:
    # a hub name is never downloaded; the message says to pass a local folder
    with pytest.raises(CheckpointError, match="not a local folder.*never downloads"):
        BertModel.from_pretrained(name)


def test_folder_without_config(tmp_path: Path) -> None:
    # a folder without config.json is refused with its path
    with pytest.raises(CheckpointError, match="has no config.json"):
        BertModel.from_pretrained(tmp_path)


def test_non_gelu_config_refused(tmp_path: Path, tiny_bert_dir: Path) -> None:
    config = json.loads((tiny_bert_dir / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, "hidden_act": "relu"}))
    # minBERT implements GELU only
    with pytest.raises(CheckpointError, match="hidden_act must be 'gelu'.*'relu'"):
        BertModel.from_pretrained(tmp_path)
