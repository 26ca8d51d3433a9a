"""`python -m tinydin gradcheck`: every row passes, and the JSON export has the fields."""
import json

from tinydin import selfcheck


def test_gradcheck_cli_all_rows_pass(tmp_path, capsys):
    path = tmp_path / "rows.json"
    status = selfcheck.main(["--json", str(path)])
    output = capsys.readouterr().out
    rows = json.loads(path.read_text())

    failed = [f"{row['check']} {row['param']}: {row['rel_error']:.2e}" for row in rows if not row["passed"]]
    assert failed == []
    assert status == 0
    assert "0 failed" in output
    for key in ("check", "param", "rel_error", "passed", "shape", "max_abs_diff"):
        assert key in rows[0]


def test_gradcheck_covers_every_layer_family(tmp_path):
    checks = {row.check for row in selfcheck.run_all()}
    for family in ("dense", "dice train padded", "dice infer", "prelu", "sigmoid",
                   "embedding repeated ids and padding", "item embedding two fields",
                   "weighted sum pooling none", "weighted sum pooling softmax", "MeanPooling",
                   "activation unit outer dice", "activation unit concat sigmoid",
                   "binary cross-entropy"):
        assert any(check.startswith(family) for check in checks), family
    assert any(check.startswith("din ") for check in checks)
    assert any(check.startswith("base") for check in checks)
