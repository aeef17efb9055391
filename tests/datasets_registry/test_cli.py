"""The `assay data` commands end to end, as a user types them."""

import json
import os
import subprocess
import sys
from pathlib import Path

ASSAY = Path(sys.executable).parent / "assay"


def assay(*args: str, registry: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "ASSAY_REGISTRY": str(registry), "COLUMNS": "200"}
    return subprocess.run([str(ASSAY), "data", *args], capture_output=True, text=True, env=env, timeout=120)


def ok(*args: str, registry: Path) -> str:
    result = assay(*args, registry=registry)
    assert result.returncode == 0, f"assay {' '.join(args)}:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def write_rows(path: Path, answers: list[str]) -> None:
    rows = [
        {
            "id": f"r{i}",
            "language": "fr" if i % 2 else "en",
            "messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": answer}],
            "scores": {"ifeval_best": i / 10},
        }
        for i, answer in enumerate(answers)
    ]
    path.write_text("\n".join(json.dumps(row) for row in rows))


def test_data_commands(tmp_path: Path) -> None:
    reg = tmp_path / "registry"
    first, second = tmp_path / "v1.jsonl", tmp_path / "v2.jsonl"
    write_rows(first, ["a", "b", "c", "d"])
    write_rows(second, ["a", "B", "c", "d", "e"])
    assert "registered sft@1 (4 rows, kind sft, from trl:language_modeling/conversational)" in ok(
        "import", str(first), "--name", "sft", "--kind", "sft", registry=reg
    )
    ok("import", str(second), "--name", "sft", "--kind", "sft", registry=reg)
    assert "sft@gold -> sft@1" in ok("tag", "sft@1", "gold", registry=reg)
    assert "gold@1" in ok("list", registry=reg)

    shown = ok("show", "sft@gold", registry=reg)
    assert "sft@1" in shown and "kind=sft" in shown and "gold" in shown and "en: 2, fr: 2" in shown
    stats = ok("stats", "sft@2", registry=reg)
    assert "scores.ifeval_best" in stats and "messages" in stats
    diff = ok("diff", "sft@1", "sft@2", registry=reg)
    assert "r4" in diff and "r1" in diff  # r4 added, r1 changed
    lineage = ok("lineage", "sft@2", registry=reg)
    assert "lineage of sft@2" in lineage and lineage.count(f"file file:{second.resolve()}#sha256=") == 1
    sampled = ok("sample", "sft@2", "--where", "language = 'fr'", "-n", "5", registry=reg)
    assert sampled.count('"language": "fr"') == 2 and '"language": "en"' not in sampled

    out = tmp_path / "out.parquet"
    ok("export", "sft@2", str(out), "--format", "parquet", registry=reg)
    assert out.is_file()
    ok("import", str(out), "--name", "sft", "--kind", "sft", registry=reg)  # sft@3
    assert "would remove sft@2" in ok("gc", "--dry-run", registry=reg)  # @1 tagged, @3 latest
    assert "removed 1 version(s)" in ok("gc", registry=reg)
    missing = assay("show", "sft@2", registry=reg)
    assert missing.returncode == 2 and "no version 2; versions: 1, 3" in missing.stderr
    unknown_tag = assay("show", "sft@silver", registry=reg)
    assert unknown_tag.returncode == 2 and "no tag 'silver'; tags: gold" in unknown_tag.stderr
    for command in ("sample", "head"):
        no_rows = assay(command, "sft@3", "-n", "0", registry=reg)
        assert no_rows.returncode == 2 and "Invalid value for '-n'" in no_rows.stderr
    nested = tmp_path / "new" / "folder" / "out.jsonl"
    ok("export", "sft@3", str(nested), registry=reg)
    assert len(nested.read_text().splitlines()) == 5
    bad_kind = assay("import", str(first), "--name", "x", "--kind", "preference", registry=reg)
    expected = "rows are TRL language_modeling/conversational (kind 'sft'), not kind 'preference'"
    assert bad_kind.returncode == 2 and expected in bad_kind.stderr
