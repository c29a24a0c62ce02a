"""The file names of a checkpoint folder, for code that moves checkpoints without loading them
(no torch here): `checkpoint` writes and reads them, the object store copies them, a study's
driver drops the optimizer state of ended trials."""

from pathlib import Path

MODEL_FILE = "model.safetensors"
OPTIMIZER_FILE = "optimizer.pt"
STATE_FILE = "trainer_state.json"
PREDICTIONS_FILE = "dev_predictions.json"
SIMULATED_STATE_FILE = "simulated_state.json"  # a simulated trial's checkpoint: no weights
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "tokenizer_config.json")


def drop_optimizer_state(folder: Path) -> int:
    """Deletes a checkpoint's optimizer state (kept weights still predict); returns bytes freed."""
    path = Path(folder) / OPTIMIZER_FILE
    try:
        size = path.stat().st_size
        path.unlink()
    except FileNotFoundError:
        return 0
    return size
