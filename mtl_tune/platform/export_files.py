"""The file names of an exported model folder (`export.export_checkpoint`) that only mtl-tune
reads: the task heads and the run's config beside the Hugging Face files."""

from pathlib import Path

HEADS_FILE = "heads.safetensors"
HEADS_CONFIG = "heads.json"
EXPORT_FORMAT = "mtl-tune export 1"


def is_exported(folder: Path) -> bool:
    """Whether `folder` is an exported model (rather than a training checkpoint)."""
    return (Path(folder) / HEADS_CONFIG).is_file()
