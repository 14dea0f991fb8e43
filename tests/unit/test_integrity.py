"""sha256 manifests: build, verify, digest and JSON round trip on real files."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modelreg.errors import InvalidInputError
from modelreg.integrity import Manifest, build_manifest, sha256_file, verify


@pytest.fixture
def artifacts(tmp_path: Path) -> Path:
    root = tmp_path / "model"
    (root / "sub" / "deeper").mkdir(parents=True)
    (root / "MLmodel").write_text("flavors: {}\n")
    (root / "model.pkl").write_bytes(bytes(range(256)) * 10)
    (root / "sub" / "conda.yaml").write_text("name: env\n")
    (root / "sub" / "deeper" / "empty.bin").write_bytes(b"")
    return root


def test_sha256_file_matches_hashlib(tmp_path: Path) -> None:
    path = tmp_path / "big.bin"
    content = os.urandom(3 * 1024 * 1024 + 17)  # crosses several 1 MiB chunks
    path.write_bytes(content)
    assert sha256_file(path) == hashlib.sha256(content).hexdigest()


def test_build_lists_every_file_sorted_with_posix_paths(artifacts: Path) -> None:
    manifest = build_manifest(artifacts)
    assert [path for path, _ in manifest.files] == [
        "MLmodel",
        "model.pkl",
        "sub/conda.yaml",
        "sub/deeper/empty.bin",
    ]
    assert len(manifest) == 4
    assert dict(manifest.files)["sub/deeper/empty.bin"] == hashlib.sha256(b"").hexdigest()


def test_digest_is_sha256_of_canonical_lines(artifacts: Path) -> None:
    manifest = build_manifest(artifacts)
    canonical = "".join(f"{sha}  {path}\n" for path, sha in manifest.files)
    assert manifest.digest == "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


def test_intact_directory_verifies_clean(artifacts: Path) -> None:
    assert verify(artifacts, build_manifest(artifacts)) == []


def test_one_changed_byte_is_reported_as_modified(artifacts: Path) -> None:
    manifest = build_manifest(artifacts)
    target = artifacts / "model.pkl"
    content = bytearray(target.read_bytes())
    content[1000] ^= 0x01
    target.write_bytes(bytes(content))
    assert verify(artifacts, manifest) == ["modified: model.pkl"]
    assert build_manifest(artifacts).digest != manifest.digest


def test_deleted_and_added_files_are_reported(artifacts: Path) -> None:
    manifest = build_manifest(artifacts)
    (artifacts / "sub" / "conda.yaml").unlink()
    (artifacts / "sub" / "extra.txt").write_text("surprise")
    assert verify(artifacts, manifest) == ["missing: sub/conda.yaml", "unexpected: sub/extra.txt"]
    assert build_manifest(artifacts).digest != manifest.digest


def test_renamed_file_changes_digest(artifacts: Path) -> None:
    before = build_manifest(artifacts).digest
    (artifacts / "MLmodel").rename(artifacts / "MLmodel.bak")
    assert build_manifest(artifacts).digest != before


def test_symlinks_are_refused_when_building(artifacts: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_text("not shipped")
    (artifacts / "link.txt").symlink_to(outside)
    with pytest.raises(InvalidInputError, match="symlink"):
        build_manifest(artifacts)


def test_symlinked_directory_is_refused(artifacts: Path, tmp_path: Path) -> None:
    (tmp_path / "elsewhere").mkdir()
    (artifacts / "linked_dir").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(InvalidInputError, match="linked_dir"):
        build_manifest(artifacts)


def test_symlink_replacing_a_file_fails_verification(artifacts: Path, tmp_path: Path) -> None:
    manifest = build_manifest(artifacts)
    copy = tmp_path / "copy"
    shutil.copy(artifacts / "MLmodel", copy)
    (artifacts / "MLmodel").unlink()
    (artifacts / "MLmodel").symlink_to(copy)
    assert verify(artifacts, manifest) == ["modified: MLmodel"]


def test_followed_symlinks_and_excluded_dirs(artifacts: Path, tmp_path: Path) -> None:
    outside = tmp_path / "cache.bin"
    outside.write_bytes(b"cached")
    (artifacts / "data.bin").symlink_to(outside)
    (artifacts / ".git").mkdir()
    (artifacts / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    manifest = build_manifest(artifacts, exclude_dirs={".git"}, follow_symlinks=True)
    files = dict(manifest.files)
    assert files["data.bin"] == hashlib.sha256(b"cached").hexdigest()
    assert not any(path.startswith(".git") for path in files)


def test_root_must_be_a_directory(tmp_path: Path) -> None:
    file = tmp_path / "file.txt"
    file.write_text("x")
    for root in (file, tmp_path / "absent"):
        with pytest.raises(InvalidInputError, match="not a directory"):
            build_manifest(root)
        with pytest.raises(InvalidInputError, match="not a directory"):
            verify(root, Manifest(()))


def test_json_round_trip(artifacts: Path) -> None:
    manifest = build_manifest(artifacts)
    text = manifest.to_json()
    assert json.loads(text)["digest"] == manifest.digest
    again = Manifest.from_json(text)
    assert again == manifest
    assert again.digest == manifest.digest
    assert again.to_json() == text


def test_constructor_sorts_pairs() -> None:
    a, b = ("a.txt", "1" * 64), ("b.txt", "2" * 64)
    assert Manifest((b, a)) == Manifest((a, b))
    assert Manifest((b, a)).files == (a, b)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("not json", "not valid JSON"),
        ("[]", '"files"'),
        ('{"files": []}', '"files"'),
        ('{"files": {"a.txt": "xyz"}}', "sha256"),
        ('{"files": {"../escape": "' + "0" * 64 + '"}}', "relative"),
        ('{"files": {"/abs": "' + "0" * 64 + '"}}', "relative"),
        ('{"files": {"a.txt": "' + "0" * 64 + '"}, "digest": "sha256:00"}', "altered"),
    ],
)
def test_from_json_rejects_bad_input(text: str, match: str) -> None:
    with pytest.raises(InvalidInputError, match=match):
        Manifest.from_json(text)


_names = st.lists(
    st.text(alphabet="abcdefghij_-", min_size=1, max_size=8),
    min_size=1,
    max_size=6,
    unique=True,
)


@settings(max_examples=40, deadline=None)
@given(
    files=_names.flatmap(
        lambda names: st.tuples(
            st.just(names),
            st.lists(st.binary(max_size=64), min_size=len(names), max_size=len(names)),
            st.permutations(list(range(len(names)))),
        )
    )
)
def test_digest_is_independent_of_creation_order(
    files: tuple[list[str], list[bytes], list[int]],
) -> None:
    names, contents, order = files
    # Half the files go into a subdirectory so nested paths are covered as well.
    relative = [name if i % 2 else f"nested/{name}" for i, name in enumerate(names)]
    digests = []
    with tempfile.TemporaryDirectory() as tmp:
        for attempt, sequence in enumerate((range(len(names)), order)):
            root = Path(tmp) / str(attempt)
            (root / "nested").mkdir(parents=True)
            for i in sequence:
                (root / relative[i]).write_bytes(contents[i])
            digests.append(build_manifest(root).digest)
    assert digests[0] == digests[1]
