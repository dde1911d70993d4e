"""File digests remembered by (path, size, mtime, inode): unchanged files are not read again,
edited ones always are."""

import os

import mixc.build.digest
from mixc.build.digest import DigestMemo
from mixc.hashing import file_digest


def test_unchanged_files_are_hashed_once_and_edits_are_seen(tmp_path, monkeypatch):
    reads = []
    real = mixc.build.digest.file_digest
    monkeypatch.setattr(mixc.build.digest, "file_digest", lambda p: reads.append(p) or real(p))
    memo = DigestMemo(tmp_path / "cache" / "digests.sqlite")
    audio = tmp_path / "a.bin"
    audio.write_bytes(b"first version")
    first = memo(audio)
    assert first == file_digest(audio) and memo(audio) == first and len(reads) == 1
    assert DigestMemo(tmp_path / "cache" / "digests.sqlite")(audio) == first and len(reads) == 1  # persisted
    audio.write_bytes(b"other version")  # same size, new bytes, new mtime
    os.utime(audio, ns=(1, 2))
    assert memo(audio) == file_digest(audio) != first and len(reads) == 2
