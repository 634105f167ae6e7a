"""Output files, checked before any model is loaded and written atomically: the output goes to a
temporary file next to it and is moved into place only when it is complete, so a failed or empty
run never replaces an existing file."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from .errors import UsageError

# Output formats by extension: what soundfile (libsndfile) writes, with the sample type used.
AUDIO_FORMATS = {".wav": ("WAV", "PCM_16"), ".flac": ("FLAC", "PCM_16"), ".ogg": ("OGG", "VORBIS"),
                 ".mp3": ("MP3", "MPEG_LAYER_III"), ".aiff": ("AIFF", "PCM_16")}


def output_format(path: Path) -> tuple[str, str]:
    fmt = AUDIO_FORMATS.get(path.suffix.lower())
    if fmt is None:
        what = f"extension {path.suffix!r}" if path.suffix else "no extension"
        raise UsageError(f"output {path} has {what}: name it with one of {', '.join(AUDIO_FORMATS)}")
    import soundfile as sf

    if fmt[0] not in sf.available_formats():
        raise UsageError(f"this libsndfile ({sf.__libsndfile_version__}) cannot write {fmt[0]}: use .wav or .flac")
    return fmt


def check_output(path: Path, *, audio: bool) -> None:
    """Everything that would make writing `path` fail, found before any model is loaded."""
    if path.is_dir():
        raise UsageError(f"output {path} is a directory: give a file name, e.g. {path / 'out.wav'}")
    if audio:
        output_format(path)
    ancestor = path.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise UsageError(f"output {path} lies under {ancestor}, which is a file, not a directory")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise UsageError(f"cannot write to {ancestor}: choose another output path")
    if path.exists() and not os.access(path, os.W_OK):
        raise UsageError(f"output {path} exists and is read-only: choose another output path")


class AtomicOutput:
    """A temporary file beside `path` (created now: proves the folder is writable), moved onto
    `path` by `commit()`, removed by `discard()`: the user's file changes only when there is a
    complete new one."""

    def __init__(self, path: Path):
        self.path = path
        self.created = []  # folders made for it, removed again if nothing is committed
        folder = path.parent
        while not folder.exists():
            self.created.append(folder)
            folder = folder.parent
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
        except OSError as exc:
            self._remove_created()
            raise UsageError(f"cannot write {path}: {exc.strerror or exc}: choose another output path") from None
        os.close(fd)
        self.tmp = Path(tmp)
        self.committed = False

    def commit(self) -> None:
        if self.path.exists():  # keep the permissions the user gave the file it replaces
            os.chmod(self.tmp, self.path.stat().st_mode & 0o7777)
        else:
            os.chmod(self.tmp, 0o666 & ~_umask())
        os.replace(self.tmp, self.path)
        self.committed = True

    def discard(self) -> None:
        if not self.committed:
            self.tmp.unlink(missing_ok=True)
            self._remove_created()

    def _remove_created(self) -> None:
        for folder in self.created:  # deepest first
            try:
                folder.rmdir()
            except OSError:
                break


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
