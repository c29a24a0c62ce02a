"""`mtl-tune export`: a checkpoint as a Hugging Face BERT and a sentence-transformers folder, with
the task heads beside, checked against transformers and sentence-transformers themselves."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from mtl_tune.cli import app
from mtl_tune.exceptions import CheckpointError, MtlTuneError
from mtl_tune.platform.batches import Segment
from mtl_tune.platform.bundle import build_bundle
from mtl_tune.platform.checkpoint import load_model, save_checkpoint
from mtl_tune.platform.export import export_checkpoint
from mtl_tune.platform.predict import predict_data
from mtl_tune.platform.presets import resolve_config
from mtl_tune.platform.train import Trainer

pytestmark = pytest.mark.usefixtures("one_torch_thread")
SENTENCES = ["a gripping , funny film .", "the plot is thin and the acting worse .",
             "Is this the best way to learn Python?"]


@pytest.fixture(scope="module", params=["pooler", "cls", "mean"])
def checkpoint(request: pytest.FixtureRequest, tiny_bert_dir: Path, tiny_data_dir: Path,
               tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A trained (one epoch) tiny checkpoint of each pooling."""
    config = resolve_config("it7-cosrelu-tuned", {
        "backbone": str(tiny_bert_dir), "data_dir": str(tiny_data_dir), "epochs": 1,
        "batch_size": 8, "max_length": 32, "eval_batch_size": 64, "max_examples": 16,
        "pooling": request.param})
    trainer = Trainer(config, build_bundle(config).for_config(config))
    trainer.run_epoch(1)
    return save_checkpoint(trainer, tmp_path_factory.mktemp("ckpt") / "best", {},
                           optimizer=False)


def _ours(folder: Path) -> tuple[torch.nn.Module, Segment]:
    model, tokenizer, _ = load_model(folder)
    batch = tokenizer.encode(SENTENCES)
    mask = (torch.arange(batch.input_ids.shape[1])[None] < batch.lengths[:, None]).long()
    return model, Segment(batch.input_ids.long(), mask, batch.token_type_ids.long())


def test_transformers_loads_the_encoder_with_our_outputs(checkpoint: Path, tmp_path: Path) -> None:
    from transformers import AutoModel, AutoTokenizer

    out = export_checkpoint(checkpoint, tmp_path / "exported")
    model, segment = _ours(checkpoint)
    hf = AutoModel.from_pretrained(out).eval()
    # the tokenizer files tokenize as ours does
    hf_batch = AutoTokenizer.from_pretrained(out)(SENTENCES, padding=True, return_tensors="pt")
    assert torch.equal(hf_batch["input_ids"], segment.input_ids)
    with torch.no_grad():
        theirs = hf(input_ids=segment.input_ids, attention_mask=segment.attention_mask,
                    token_type_ids=segment.token_type_ids)
        ours = model.encoder(segment.input_ids, segment.attention_mask, segment.token_type_ids)
    mask = segment.attention_mask.bool()
    # the same hidden states on every real token, and the same pooler output
    assert (theirs.last_hidden_state[mask] - ours["last_hidden_state"][mask]).abs().max() < 1e-5
    assert (theirs.pooler_output - ours["pooler_output"]).abs().max() < 1e-5


def test_sentence_transformers_embeds_as_the_trained_model(checkpoint: Path,
                                                           tmp_path: Path) -> None:
    from sentence_transformers import SentenceTransformer

    out = export_checkpoint(checkpoint, tmp_path / "exported")
    model, segment = _ours(checkpoint)
    with torch.no_grad():
        ours = model.embed(segment)
    st = SentenceTransformer(str(out), device="cpu", local_files_only=True)
    theirs = st.encode(SENTENCES, convert_to_tensor=True)
    # the trial's own sentence vectors (its pooling: pooler, [CLS] or mean), within 1e-5
    assert theirs.shape == ours.shape and (theirs - ours).abs().max() < 1e-5
    modules = [m["type"].rsplit(".", 1)[1] for m in json.loads((out / "modules.json").read_text())]
    pooling = model.heads.pooling
    assert modules == (["Transformer", "Pooling", "Dense"] if pooling == "pooler"
                       else ["Transformer", "Pooling"])


def test_predict_on_the_exported_folder_gives_the_checkpoints_scores(
    checkpoint: Path, tiny_data_dir: Path, tmp_path: Path
) -> None:
    out = export_checkpoint(checkpoint, tmp_path / "exported")
    before = predict_data(checkpoint, tiny_data_dir, "dev", None)
    after = predict_data(out, tiny_data_dir, "dev", None)
    assert after.metrics == before.metrics and after.metrics
    # and heads.json keeps where it came from, and its epoch and scores
    record = json.loads((out / "heads.json").read_text())
    assert record["source"] == str(checkpoint.resolve()) and record["epochs_done"] == 1


def test_force_replaces_only_an_earlier_export(checkpoint: Path, tmp_path: Path) -> None:
    out = tmp_path / "exported"
    out.mkdir()
    (out / "mine.txt").write_text("keep")
    # a folder that is not empty is refused without --force ...
    with pytest.raises(MtlTuneError, match=rf"--out {out} already exists and is not empty; "
                                           "pass another --out, or --force to replace it"):
        export_checkpoint(checkpoint, out)
    # ... and with it, when it is not an earlier export: the user's file stays
    with pytest.raises(MtlTuneError, match=rf"--out {out} is not the output of an earlier "
                                           r"`mtl-tune export` \(it has no heads.json\) and "
                                           "holds mine.txt; --force replaces only the command's "
                                           "own output"):
        export_checkpoint(checkpoint, out, force=True)
    assert [p.name for p in out.iterdir()] == ["mine.txt"]
    # an earlier export is replaced whole
    (out / "mine.txt").unlink()
    export_checkpoint(checkpoint, out)
    (out / "config.json").write_text("stale")
    export_checkpoint(checkpoint, out, force=True)
    assert (out / "config.json").read_text() != "stale"
    # an earlier export with a file of the user's beside it is refused, naming the file
    (out / "notes.txt").write_text("mine")
    with pytest.raises(MtlTuneError, match=r"holds the output of an earlier `mtl-tune export` "
                                           "and also notes.txt, which it did not write"):
        export_checkpoint(checkpoint, out, force=True)
    assert (out / "notes.txt").read_text() == "mine"
    # and never the checkpoint itself
    before = sorted(p.name for p in checkpoint.iterdir())
    with pytest.raises(MtlTuneError, match=rf"--out {checkpoint} is the checkpoint {checkpoint}; "
                                           "`mtl-tune export` never writes over what it reads, "
                                           "whatever the flags"):
        export_checkpoint(checkpoint, checkpoint, force=True)
    assert sorted(p.name for p in checkpoint.iterdir()) == before


def test_a_damaged_export_is_refused_by_name(checkpoint: Path, tmp_path: Path) -> None:
    out = export_checkpoint(checkpoint, tmp_path / "exported")
    heads = out / "heads.safetensors"
    heads.write_bytes(heads.read_bytes()[:-4] + b"xxxx")
    with pytest.raises(CheckpointError, match=rf"{heads} does not match the sha256 recorded in "
                                              "heads.json"):
        load_model(out)
    record = json.loads((out / "heads.json").read_text())
    (out / "heads.json").write_text(json.dumps({**record, "format": "other 9"}))
    with pytest.raises(CheckpointError, match=r"has format 'other 9', not 'mtl-tune export 1'; "
                                              "export the checkpoint again"):
        load_model(out)


def test_the_export_command(checkpoint: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "exported"
    result = runner.invoke(app, ["export", str(checkpoint), "--out", str(out)])
    assert result.exit_code == 0, result.output
    # it says how to load the folder with each tool
    assert f"AutoModel.from_pretrained({str(out)!r})" in result.output
    assert f"SentenceTransformer({str(out)!r})" in result.output
    again = runner.invoke(app, ["export", str(checkpoint), "--out", str(out)])
    assert again.exit_code == 1 and again.stderr.startswith(f"Error: --out {out} already "
                                                            "exists and is not empty; pass")


def test_a_checkpoint_on_an_object_store_is_exported(checkpoint: Path, s3_bucket: str,
                                                     tmp_path: Path) -> None:
    import pyarrow.fs as pafs

    fs, base = pafs.FileSystem.from_uri(f"{s3_bucket}/ckpt")
    for path in checkpoint.iterdir():
        with fs.open_output_stream(f"{base}/{path.name}") as stream:
            stream.write(path.read_bytes())
    out = tmp_path / "exported"
    result = CliRunner().invoke(app, ["export", f"{s3_bucket}/ckpt", "--out", str(out)])
    assert result.exit_code == 0, result.output
    # the export of the stored copy holds the checkpoint's weights, tensor for tensor
    exported, local = load_model(out)[0].state_dict(), load_model(checkpoint)[0].state_dict()
    assert exported.keys() == local.keys()
    for key, tensor in local.items():
        assert torch.equal(exported[key], tensor), key
