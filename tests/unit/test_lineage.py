"""Lineage capture on real git repos, real files and real pandas/numpy data."""

from __future__ import annotations

import hashlib
import json
import platform
import re
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from modelreg.domain import DataFingerprint, EnvironmentInfo, GitInfo, LineageRecord
from modelreg.errors import InvalidInputError, LineageError
from modelreg.lineage import (
    TAG_PREFIX,
    build_record,
    capture_environment,
    capture_git,
    dvc_entries,
    fingerprint,
    lineage_tags,
    pip_freeze,
    record_from_json,
    record_to_json,
    strip_credentials,
)

# --- git -----------------------------------------------------------------------------------


def _git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-c", "user.name=Test", "-c", "user.email=test@example.com", *args],
        cwd=repo,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    # Isolate from the developer's git config (signing, default branch, diff settings).
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(tmp_path / "no-global-config"))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    root = tmp_path / "repo"
    root.mkdir()
    _git(root, "init", "-q", "-b", "main")
    (root / "train.py").write_text("print('train')\n")
    (root / "params.yaml").write_text("alpha: 0.1\n")
    _git(root, "add", ".")
    _git(root, "commit", "-q", "-m", "initial")
    return root


def test_clean_repo(repo: Path) -> None:
    info = capture_git(repo)
    assert info is not None
    assert info.commit == _git(repo, "rev-parse", "HEAD")
    assert len(info.commit) == 40
    assert info.branch == "main"
    assert info.dirty is False
    assert info.diff_sha256 is None
    assert info.remote is None


def test_subdirectory_of_repo_is_captured(repo: Path) -> None:
    (repo / "src").mkdir()
    info = capture_git(repo / "src")
    assert info is not None
    assert info.commit == _git(repo, "rev-parse", "HEAD")


def test_modified_tracked_file_makes_tree_dirty(repo: Path) -> None:
    (repo / "train.py").write_text("print('train harder')\n")
    info = capture_git(repo)
    assert info is not None
    assert info.dirty is True
    assert info.diff_sha256 is not None
    # Same change, same hash; a different change, a different hash.
    assert capture_git(repo) == info
    (repo / "train.py").write_text("print('train even harder')\n")
    changed = capture_git(repo)
    assert changed is not None
    assert changed.diff_sha256 != info.diff_sha256


def test_untracked_file_makes_tree_dirty_and_its_content_counts(repo: Path) -> None:
    (repo / "notes").mkdir()
    (repo / "notes" / "scratch.py").write_text("x = 1\n")
    first = capture_git(repo)
    assert first is not None
    assert first.dirty is True
    assert first.diff_sha256 is not None
    (repo / "notes" / "scratch.py").write_text("x = 2\n")
    second = capture_git(repo)
    assert second is not None
    assert second.diff_sha256 != first.diff_sha256
    (repo / "notes" / "scratch.py").rename(repo / "notes" / "renamed.py")
    (repo / "notes" / "renamed.py").write_text("x = 1\n")
    third = capture_git(repo)
    assert third is not None
    assert third.diff_sha256 not in {first.diff_sha256, second.diff_sha256}


def test_ignored_files_do_not_make_tree_dirty(repo: Path) -> None:
    (repo / ".gitignore").write_text("*.log\n")
    _git(repo, "add", ".gitignore")
    _git(repo, "commit", "-q", "-m", "ignore logs")
    (repo / "run.log").write_text("noise\n")
    info = capture_git(repo)
    assert info is not None
    assert info.dirty is False


def test_detached_head_has_no_branch(repo: Path) -> None:
    commit = _git(repo, "rev-parse", "HEAD")
    _git(repo, "checkout", "-q", "--detach", commit)
    info = capture_git(repo)
    assert info is not None
    assert info.branch is None
    assert info.commit == commit


def test_repo_without_commits(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(tmp_path / "no-global-config"))
    root = tmp_path / "fresh"
    root.mkdir()
    _git(root, "init", "-q", "-b", "trunk")
    (root / "a.txt").write_text("a\n")
    info = capture_git(root)
    assert info is not None
    assert info.commit is None
    assert info.branch == "trunk"
    assert info.dirty is True
    assert info.diff_sha256 is not None


def test_remote_prefers_origin_and_strips_credentials(repo: Path) -> None:
    _git(repo, "remote", "add", "backup", "https://example.com/backup.git")
    _git(repo, "remote", "add", "origin", "https://alice:s3cret@github.com/org/model.git")
    info = capture_git(repo)
    assert info is not None
    assert info.remote == "https://github.com/org/model.git"


def test_first_remote_used_without_origin(repo: Path) -> None:
    _git(repo, "remote", "add", "upstream", "https://ghp_token@github.com/org/up.git")
    info = capture_git(repo)
    assert info is not None
    assert info.remote == "https://github.com/org/up.git"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://user:pw@host.example/r.git", "https://host.example/r.git"),
        ("https://token@host.example:8443/r.git", "https://host.example:8443/r.git"),
        ("ssh://git@host.example/r.git", "ssh://host.example/r.git"),
        ("git@github.com:org/repo.git", "git@github.com:org/repo.git"),
        ("https://host.example/r.git", "https://host.example/r.git"),
        ("/srv/git/r.git", "/srv/git/r.git"),
    ],
)
def test_strip_credentials(url: str, expected: str) -> None:
    assert strip_credentials(url) == expected


def test_outside_a_repo_is_none(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Stop the search at tmp_path so a repo enclosing the temp dir cannot be found.
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    plain = tmp_path / "plain"
    plain.mkdir()
    assert capture_git(plain) is None
    assert capture_git(tmp_path / "does-not-exist") is None


def test_without_git_installed_is_none(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(repo / "no-bin-here"))
    assert capture_git(repo) is None


# --- data fingerprints ---------------------------------------------------------------------


def _frame() -> pd.DataFrame:
    return pd.DataFrame(
        {"age": [31, 45, 27], "income": [52.5, 61.0, 38.25], "city": ["Oslo", "Rome", "Lima"]}
    )


def test_dataframe_fingerprint_is_stable_and_describes_the_data() -> None:
    first = fingerprint(_frame(), name="train", version="v3")
    assert first == fingerprint(_frame(), name="train", version="v3")
    assert first.kind == "pandas"
    assert first.rows == 3
    assert first.columns == ["age", "income", "city"]
    assert first.version == "v3"
    assert len(first.sha256) == 64


def test_dataframe_fingerprint_changes_with_any_change() -> None:
    base = fingerprint(_frame()).sha256
    value = _frame()
    value.loc[1, "income"] = 61.5
    renamed = _frame().rename(columns={"city": "town"})
    retyped = _frame().astype({"age": "int32"})
    reordered = _frame().iloc[[1, 0, 2]]
    reindexed = _frame().iloc[[1, 0, 2]].reset_index(drop=True)
    swapped_columns = _frame()[["income", "age", "city"]]
    variants = [value, renamed, retyped, reordered, reindexed, swapped_columns]
    shas = [fingerprint(v).sha256 for v in variants]
    assert base not in shas
    assert len(set(shas)) == len(shas)


def test_column_names_zero_and_string_zero_differ() -> None:
    assert fingerprint(pd.DataFrame({0: [1]})) != fingerprint(pd.DataFrame({"0": [1]}))


def test_series_fingerprint() -> None:
    series = pd.Series([1.0, 2.0, 3.0], name="target")
    result = fingerprint(series, name="labels")
    assert result.kind == "pandas"
    assert result.rows == 3
    assert result.columns == ["target"]
    assert result == fingerprint(series.copy(), name="labels")
    assert fingerprint(series.iloc[::-1]).sha256 != result.sha256


def test_unhashable_cells_are_invalid_input() -> None:
    with pytest.raises(InvalidInputError, match="unhashable"):
        fingerprint(pd.DataFrame({"tags": [["a"], ["b"]]}))


def test_numpy_fingerprint() -> None:
    array = np.arange(12, dtype=np.float64).reshape(3, 4)
    result = fingerprint(array)
    assert result.kind == "numpy"
    assert result.rows == 3
    assert result == fingerprint(array.copy())
    # A Fortran-ordered copy holds the same values, so it fingerprints the same.
    assert fingerprint(np.asfortranarray(array)) == result
    changed = array.copy()
    changed[2, 3] = -1.0
    others = [changed, array.astype(np.float32), array.reshape(4, 3), array[::-1]]
    shas = {fingerprint(o).sha256 for o in others}
    assert result.sha256 not in shas
    assert len(shas) == len(others)


def test_numpy_object_arrays_fingerprint_by_value() -> None:
    first = np.array(["a", "bb", None], dtype=object)
    second = np.array(["a", "bb", None], dtype=object)
    assert fingerprint(first) == fingerprint(second)
    assert fingerprint(first) != fingerprint(np.array(["a", "bc", None], dtype=object))


def test_file_fingerprint(tmp_path: Path) -> None:
    path = tmp_path / "train.csv"
    path.write_text("a,b\n1,2\n")
    result = fingerprint(path, name="csv")
    assert result.kind == "file"
    assert result.sha256 == hashlib.sha256(b"a,b\n1,2\n").hexdigest()
    assert result.source == str(path.resolve())
    assert fingerprint(str(path), name="csv") == result


def test_directory_fingerprint(tmp_path: Path) -> None:
    data = tmp_path / "data"
    (data / "part").mkdir(parents=True)
    (data / "part" / "0.csv").write_text("1\n")
    (data / "part" / "1.csv").write_text("2\n")
    (data / ".git").mkdir()
    (data / ".git" / "HEAD").write_text("x")
    result = fingerprint(data)
    assert result.kind == "directory"
    assert result.source == str(data.resolve())
    (data / ".git" / "HEAD").write_text("y")
    assert fingerprint(data) == result  # .git is skipped
    (data / "part" / "1.csv").rename(data / "part" / "2.csv")
    renamed = fingerprint(data)
    assert renamed.sha256 != result.sha256
    (data / "part" / "2.csv").write_text("3\n")
    assert fingerprint(data).sha256 not in {result.sha256, renamed.sha256}


def test_missing_path_names_the_path(tmp_path: Path) -> None:
    absent = tmp_path / "nope.parquet"
    with pytest.raises(InvalidInputError, match=r"nope\.parquet"):
        fingerprint(absent)


@pytest.mark.parametrize("data", [42, [1, 2, 3], {"a": 1}, b"bytes", None])
def test_unsupported_types_say_what_is_supported(data: object) -> None:
    with pytest.raises(InvalidInputError, match="DataFrame or Series, a numpy ndarray"):
        fingerprint(data)


# --- dvc -----------------------------------------------------------------------------------

DVC_LOCK = """\
schema: '2.0'
stages:
  prepare:
    cmd: python src/prepare.py data/data.xml
    deps:
    - path: data/data.xml
      hash: md5
      md5: 22a1a2931c8370d3aeedd7183606fd7f
      size: 14445097
    outs:
    - path: data/prepared
      hash: md5
      md5: 153aad06d376b6595932470e459ef42a.dir
      size: 8437363
      nfiles: 2
  featurize:
    cmd: python src/featurization.py data/prepared data/features
    deps:
    - path: data/prepared
      hash: md5
      md5: 153aad06d376b6595932470e459ef42a.dir
    params:
      params.yaml:
        featurize.max_features: 100
    outs:
    - path: data/features/train.pkl
      hash: md5
      md5: 9e1e5fb3e2fd0c0f2d8cb5b2fd6f8b07
      size: 2189300
    - path: data/features/test.pkl
      sha256: aa11bb22cc33dd44ee55ff6677889900aa11bb22cc33dd44ee55ff6677889900
      size: 546000
  evaluate:
    cmd: python src/evaluate.py model.pkl data/features
    deps:
    - path: model.pkl
      md5: 0a1b2c3d4e5f60718293a4b5c6d7e8f9
"""


def test_dvc_lock_outputs(tmp_path: Path) -> None:
    (tmp_path / "dvc.lock").write_text(DVC_LOCK)
    entries = dvc_entries(tmp_path)
    assert [(e.name, e.version, e.sha256) for e in entries] == [
        ("data/prepared", "prepare", "md5:153aad06d376b6595932470e459ef42a.dir"),
        ("data/features/train.pkl", "featurize", "md5:9e1e5fb3e2fd0c0f2d8cb5b2fd6f8b07"),
        (
            "data/features/test.pkl",
            "featurize",
            "aa11bb22cc33dd44ee55ff6677889900aa11bb22cc33dd44ee55ff6677889900",
        ),
    ]
    assert {e.kind for e in entries} == {"dvc"}
    assert entries[0].source == str(tmp_path.resolve() / "data" / "prepared")
    assert dvc_entries(tmp_path / "dvc.lock") == entries


def test_dvc_lock_schema_one(tmp_path: Path) -> None:
    (tmp_path / "dvc.lock").write_text(
        "train:\n  cmd: python train.py\n  outs:\n  - path: model.pkl\n    md5: abc123\n"
    )
    [entry] = dvc_entries(tmp_path)
    assert (entry.name, entry.version, entry.sha256) == ("model.pkl", "train", "md5:abc123")


def test_no_dvc_lock_gives_nothing(tmp_path: Path) -> None:
    assert dvc_entries(tmp_path) == []


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("stages: [unclosed", "not valid YAML"),
        ("- just\n- a list\n", "top level"),
        ("stages: 3\n", "stages"),
        ("stages:\n  train: nope\n", "stage 'train'"),
        ("stages:\n  train:\n    outs: {path: x}\n", "not a list"),
        ("stages:\n  train:\n    outs:\n    - md5: abc\n", '"path"'),
        ("stages:\n  train:\n    outs:\n    - path: m.pkl\n", "no md5 or sha256"),
    ],
)
def test_malformed_dvc_lock(tmp_path: Path, text: str, match: str) -> None:
    (tmp_path / "dvc.lock").write_text(text)
    with pytest.raises(LineageError, match=match) as caught:
        dvc_entries(tmp_path)
    assert "dvc.lock" in caught.value.message


# --- environment ---------------------------------------------------------------------------


def test_capture_environment() -> None:
    env = capture_environment()
    assert env.python == platform.python_version()
    assert env.cpu
    assert env.cpu_count >= 1
    assert env.packages["numpy"] == np.__version__
    assert env.packages["pandas"] == pd.__version__
    assert "scikit-learn" in env.packages
    assert isinstance(env.gpus, list)


def test_pip_freeze_lists_installed_distributions() -> None:
    lines = pip_freeze().splitlines()
    assert f"numpy=={np.__version__}" in lines
    # Sorted and de-duplicated by the PEP 503 normalised name, which ignores case and -_. .
    names = [re.sub(r"[-_.]+", "-", line.split("==")[0]).lower() for line in lines]
    assert names == sorted(names)
    assert len(names) == len(set(names))
    assert all("==" in line for line in lines)


# --- records and tags ----------------------------------------------------------------------


def _complete_record() -> LineageRecord:
    return build_record(
        run_id="abc123",
        params={"alpha": 0.1, "max_depth": 5, "criterion": "gini"},
        data=[
            DataFingerprint(name="train", kind="pandas", sha256="a" * 64, version="v2", rows=10),
            DataFingerprint(name="data/test set", kind="file", sha256="b" * 64),
        ],
        git=GitInfo(commit="c" * 40, branch="main", dirty=True, diff_sha256="d" * 64, remote="r"),
        environment=EnvironmentInfo(
            python="3.11.9", platform="Linux", cpu="x86", cpu_count=8, packages={"numpy": "2"}
        ),
    )


def test_build_record_stringifies_params_and_stamps_utc() -> None:
    record = _complete_record()
    assert record.params == {"alpha": "0.1", "max_depth": "5", "criterion": "gini"}
    assert record.captured_at is not None
    assert record.captured_at.endswith("+00:00")
    assert record.missing() == []


def test_record_json_round_trip_is_stable() -> None:
    record = _complete_record()
    text = record_to_json(record)
    assert record_from_json(text) == record
    assert record_to_json(record_from_json(text)) == text
    reordered = record.model_copy(update={"params": dict(reversed(record.params.items()))})
    assert record_to_json(reordered) == text


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "expected shape"),
        ('{"data": [{"name": "x"}]}', "expected shape"),
        ('{"surprise": 1}', "expected shape"),
        (json.dumps({"schema_version": 99}), "newer"),
    ],
)
def test_record_from_json_rejects_bad_input(text: str, match: str) -> None:
    with pytest.raises(LineageError, match=match):
        record_from_json(text)


def test_lineage_tags_for_complete_record() -> None:
    tags = lineage_tags(_complete_record())
    assert tags == {
        TAG_PREFIX + "git_commit": "c" * 40,
        TAG_PREFIX + "git_branch": "main",
        TAG_PREFIX + "git_dirty": "true",
        TAG_PREFIX + "git_remote": "r",
        TAG_PREFIX + "data_sha256": "a" * 64,
        TAG_PREFIX + "data_sha256.train": "a" * 64,
        TAG_PREFIX + "data_sha256.data/test set": "b" * 64,
        TAG_PREFIX + "data_version": "v2",
        TAG_PREFIX + "python": "3.11.9",
        TAG_PREFIX + "complete": "true",
    }


def test_lineage_tags_for_incomplete_record() -> None:
    record = build_record(
        run_id=None,
        params={},
        data=[DataFingerprint(name="only", kind="numpy", sha256="e" * 64)],
        git=None,
        environment=None,
    )
    tags = lineage_tags(record)
    assert tags == {
        TAG_PREFIX + "data_sha256": "e" * 64,
        TAG_PREFIX + "complete": "false",
        TAG_PREFIX + "missing": "git commit, hyperparameters, environment",
    }


def test_lineage_tags_sanitise_and_disambiguate_data_names() -> None:
    record = build_record(
        run_id=None,
        params={"a": 1},
        data=[
            DataFingerprint(name="s3://bucket/x", kind="file", sha256="1" * 64),
            DataFingerprint(name="s3://bucket/x", kind="file", sha256="2" * 64),
        ],
        git=GitInfo(commit="f" * 40, remote="x" * 6000),
        environment=None,
    )
    tags = lineage_tags(record)
    assert tags[TAG_PREFIX + "data_sha256.s3_//bucket/x"] == "1" * 64
    assert tags[TAG_PREFIX + "data_sha256.s3_//bucket/x_1"] == "2" * 64
    assert tags[TAG_PREFIX + "git_dirty"] == "false"
    assert len(tags[TAG_PREFIX + "git_remote"]) == 5000
    assert TAG_PREFIX + "git_branch" not in tags
    assert tags[TAG_PREFIX + "missing"] == "environment"


def test_end_to_end_capture_on_a_real_repo(repo: Path) -> None:
    record = build_record(
        run_id="run-1",
        params={"alpha": 0.1},
        data=[fingerprint(_frame())],
        git=capture_git(repo),
        environment=capture_environment(),
    )
    assert record.missing() == []
    assert lineage_tags(record)[TAG_PREFIX + "complete"] == "true"
    assert record_from_json(record_to_json(record)) == record
