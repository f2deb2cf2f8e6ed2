"""The p2p-teach command line: output, and one-line errors with exit status 2."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from p2p_teach.cli import main


def test_tokens_prints_the_table(capsys):
    assert main(["tokens", "A hippopotamus eating"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[2] for line in lines[3:6]] == ["hippo", "potam", "us</w>"]
    assert lines[-1].strip().startswith("… 70 padding slots")


def test_tokens_show_work(capsys):
    assert main(["tokens", "--work", "An unimaginably large house"]) == 0
    assert "uni·magin·ably" in capsys.readouterr().out


def test_too_long_prompt_is_one_line_exit_2(capsys):
    assert main(["tokens", "word " * 80]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "needs 82 slots" in err and "Traceback" not in err


def test_unknown_subcommand_exits_2():
    with pytest.raises(SystemExit) as exit_info:
        main(["paint"])
    assert exit_info.value.code == 2


def test_installed_entry_point_runs():
    result = subprocess.run(
        [sys.executable, "-m", "p2p_teach.cli", "tokens", "a cat"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "cat</w>" in result.stdout


def test_mapper_prints_the_block(capsys):
    assert main(["mapper", "A lion eating", "A hippopotamus eating"]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.split()[:2] == ["2", "lion"])
    assert row.split()[2:] == [".", ".", "1/3", "1/3", "1/3", ".", ".", "."]
    assert "1-to-N" in out


def _rows(out: str) -> dict[str, list[str]]:
    """Mapper rows by 'slot word' (e.g. '3 eating', '5 pad') → their cells."""
    rows = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) > 2 and parts[0].isdigit():
            rows[f"{parts[0]} {parts[1]}"] = parts[2:]
    return rows


def test_mapper_original_rule_and_refine(capsys):
    columns = ["BOS", "a", "hippo", "potam", "us", "eating", "EOS", "pad"]
    eating = columns.index("eating")
    assert main(["mapper", "A lion eating", "A hippopotamus eating", "--rule", "course"]) == 0
    course = _rows(capsys.readouterr().out)
    assert main(["mapper", "A lion eating", "A hippopotamus eating", "--rule", "original"]) == 0
    original = _rows(capsys.readouterr().out)
    assert course["2 lion"] == original["2 lion"] == [".", ".", "1/3", "1/3", "1/3", ".", ".", "."]
    # after the 1-to-3 swap the course keeps source 'eating' on target 'eating'; the original
    # rule's M[j, j] = 1 leaves source 'eating' unmapped and feeds target 'eating' from a pad
    assert course["3 eating"][eating] == "1" and course["5 pad"][eating] == "."
    assert set(original["3 eating"]) == {"."} and original["5 pad"][eating] == "1"
    assert main(["mapper", "a cat", "a fluffy cat", "--refine"]) == 0
    assert "(new: own attention)" in capsys.readouterr().out


def test_mapper_word_count_mismatch_is_one_line(capsys):
    assert main(["mapper", "a cat", "a fluffy cat"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "align the prompts with --refine" in err
    assert "p2p-teach mapper 'a cat' 'a fluffy cat' --refine" in err


def test_os_errors_are_one_line_not_a_traceback(capsys, monkeypatch):
    from p2p_teach import cli

    def fail(args):
        raise PermissionError(13, "Permission denied", "/root/locked")

    monkeypatch.setattr(cli, "_cmd_tokens", fail)
    assert main(["tokens", "a cat"]) == 1  # not a usage error (2): the input was fine
    err = capsys.readouterr().err
    assert err == "p2p-teach tokens: failed: Permission denied: /root/locked\n"


def test_out_of_memory_is_a_failure_not_a_usage_error(capsys, monkeypatch):
    from p2p_teach import cli

    def fail(args):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(cli, "_cmd_tokens", fail)
    assert main(["tokens", "a cat"]) == 1
    assert capsys.readouterr().err == (
        "p2p-teach tokens: failed: CUDA out of memory. Tried to allocate 2.00 GiB\n"
    )
