"""metrics.json's ``software``: the commit a result was made from, told apart from a
checkout with changes, and nothing invented outside a checkout."""

from __future__ import annotations

import subprocess

from lightning_deblur.core import provenance


def git(folder, *arguments) -> str:
    return subprocess.run(["git", *arguments], cwd=folder, capture_output=True, text=True, check=True).stdout.strip()


def test_the_commit_is_the_checkouts_and_a_change_to_a_tracked_file_is_told(tmp_path, monkeypatch):
    git(tmp_path, "init", "-q")
    (tmp_path / "a.txt").write_text("one\n")
    git(tmp_path, "add", "a.txt")
    git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "first")
    monkeypatch.setattr(provenance, "CHECKOUT", tmp_path)
    assert provenance.code_commit() == {"commit": git(tmp_path, "rev-parse", "HEAD"), "modified": False}
    (tmp_path / "new.txt").write_text("untracked: not part of the code\n")
    assert provenance.code_commit()["modified"] is False
    (tmp_path / "a.txt").write_text("two\n")
    assert provenance.code_commit()["modified"] is True


def test_outside_a_checkout_there_is_no_commit(tmp_path, monkeypatch):
    monkeypatch.setattr(provenance, "CHECKOUT", tmp_path)
    assert provenance.code_commit() is None
