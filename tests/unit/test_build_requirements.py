"""The operator's package index over the app's `-i` lines, and naming the requirements line at fault."""

from __future__ import annotations

from branchyard.build import requirements


def test_operator_index_precedence(tmp_path):
    conf = tmp_path / "pip.conf"
    conf.write_text("[global]\nindex-url = https://conf.example/simple\n")
    env = {"PIP_CONFIG_FILE": str(conf)}
    assert requirements.operator_index("https://setting.example/simple", env | {"PIP_INDEX_URL": "x"}) == "https://setting.example/simple"
    assert requirements.operator_index(None, env | {"PIP_INDEX_URL": "https://env.example/simple"}) == "https://env.example/simple"
    assert requirements.operator_index(None, env) == "https://conf.example/simple"
    assert requirements.operator_index(None, {"PIP_CONFIG_FILE": str(tmp_path / "none.conf")}) is None


def test_index_lines_are_commented_out_and_named(tmp_path):
    req = tmp_path / "requirements.txt"
    req.write_text("-i https://user:tok@private.example/simple\nuvicorn\n--index-url=http://127.0.0.1:9/simple\n")
    log: list[str] = []
    requirements.override_index_lines(tmp_path, [req.resolve()], "https://ops.example/simple", log.append)
    assert req.read_text().splitlines() == [
        "# branchyard: operator index used instead of: -i https://user:tok@private.example/simple",
        "uvicorn",
        "# branchyard: operator index used instead of: --index-url=http://127.0.0.1:9/simple",
    ]
    assert log == [
        "ignored `-i https://***@private.example/simple` (requirements.txt line 1): the operator's package index "
        "https://ops.example/simple is used",
        "ignored `--index-url http://127.0.0.1:9/simple` (requirements.txt line 3): the operator's package index "
        "https://ops.example/simple is used",
    ]
    assert "tok" not in " ".join(log)


def test_blame_names_the_line(tmp_path):
    req = tmp_path / "requirements.txt"
    req.write_text("# web\nuvicorn>=0.29\nno_such-pkg==9.9  # pinned\n")
    pip = ["Collecting uvicorn", "ERROR: Could not find a version that satisfies the requirement no-such_pkg==9.9 (from versions: none)",
           "ERROR: No matching distribution found for no-such_pkg==9.9"]
    assert requirements.blame(pip, tmp_path, [req.resolve()]) == (
        "requirements.txt line 3: `no_such-pkg==9.9` not found on the package index")
    assert requirements.blame(["ERROR: something else"], tmp_path, [req.resolve()]) is None
    assert requirements.blame(pip[-1:], tmp_path, []) == "`no-such_pkg==9.9` not found on the package index"
