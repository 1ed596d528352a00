"""Shell-word expansion: BuildKit's envVarTest and wordsTest, plus the pattern forms."""

from __future__ import annotations

from pathlib import Path

import pytest

from pallet.build.errors import ExpansionError
from pallet.build.shell import ShellLexer, expand, expand_words

FIXTURES = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "dockerfile-shell"
ENV_VAR_ENV = {"PWD": "/home", "SHELL": "bash", "KOREAN": "한국어", "NULL": ""}


def _env_var_cases() -> list[tuple[str, str]]:
    path = FIXTURES / "envVarTest"
    if not path.exists():
        return []
    cases = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        platform, word, expected = (field.strip() for field in line.split("|", 2))
        if platform in ("A", "U"):
            cases.append((word, expected))
    return cases


def _words_cases() -> list[tuple[dict[str, str], str, str]]:
    path = FIXTURES / "wordsTest"
    if not path.exists():
        return []
    env: dict[str, str] = {}
    cases = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line or line.startswith("#"):
            continue
        if line.startswith("ENV "):
            key, value = line[4:].split("=", 1)
            env[key] = value
            continue
        word, expected = line.split("|", 1)
        cases.append((dict(env), word.lstrip(), expected.lstrip()))
    return cases


ENV_VAR_CASES = _env_var_cases()
WORDS_CASES = _words_cases()


@pytest.mark.skipif(not ENV_VAR_CASES, reason="envVarTest fixture not present")
@pytest.mark.parametrize(("word", "expected"), ENV_VAR_CASES)
def test_env_var_fixture(word: str, expected: str) -> None:
    if expected == "error":
        with pytest.raises(ExpansionError):
            expand(word, ENV_VAR_ENV)
    else:
        assert expand(word, ENV_VAR_ENV) == expected


@pytest.mark.skipif(not WORDS_CASES, reason="wordsTest fixture not present")
@pytest.mark.parametrize(("env", "word", "expected"), WORDS_CASES)
def test_words_fixture(env: dict[str, str], word: str, expected: str) -> None:
    if expected == "error":
        with pytest.raises(ExpansionError):
            expand_words(word, env)
    else:
        assert expand_words(word, env) == expected.split(",")


def test_fixture_counts() -> None:
    if not FIXTURES.exists():
        pytest.skip("fixtures not present")
    assert len(ENV_VAR_CASES) > 200 and len(WORDS_CASES) > 20


@pytest.mark.parametrize(("word", "expected"), [
    ("${V#*/}", "b/c.tar.gz"),
    ("${V##*/}", "c.tar.gz"),
    ("${V%.*}", "a/b/c.tar"),
    ("${V%%.*}", "a/b/c"),
    ("${V/b/X}", "a/X/c.tar.gz"),
    ("${V//[.]/-}", "a/b/c.tar.gz"),  # no bracket expressions: [ and ] are literal
    ("${V//./-}", "a/b/c-tar-gz"),
    ("${V/#a/-}", "a/b/c.tar.gz"),  # `#` is a literal here, unlike bash
    ("${U#*/}", ""),
    ("${V#\\*}", "a/b/c.tar.gz"),
])
def test_pattern_forms(word: str, expected: str) -> None:
    assert expand(word, {"V": "a/b/c.tar.gz"}) == expected


@pytest.mark.parametrize("word", ["${V:#x}", "${V:%x}", "${V*x}", "${V/x", "${V#x"])
def test_pattern_form_errors(word: str) -> None:
    with pytest.raises(ExpansionError):
        expand(word, {"V": "x"})


def test_error_message_names_word() -> None:
    with pytest.raises(ExpansionError, match=r'failed to process "\$\{X:\?must be set\}": X: must be set'):
        expand("${X:?must be set}", {})


def test_backtick_escape() -> None:
    assert expand("a`$b", {"b": "x"}, escape="`") == "a$b"
    assert expand("C:\\path\\$b", {"b": "x"}, escape="`") == "C:\\path\\x"
    assert expand('"`""', {}, escape="`") == '"'


def test_matched_and_unmatched_names() -> None:
    result = ShellLexer().expand("$A ${B:-x} $C", {"A": "1", "C": ""})
    assert result.result == "1 x "
    assert result.matched == {"A", "C"} and result.unmatched == {"B"}


def test_skip_unset_keeps_references() -> None:
    lexer = ShellLexer(skip_unset=True)
    assert lexer.process_word("$A ${B} ${C:-d} $D", {"D": "x"}) == "$A ${B} ${C:-d} x"


def test_raw_quotes_and_escapes() -> None:
    lexer = ShellLexer(raw_quotes=True, raw_escapes=True)
    assert lexer.process_words("a 'b c' \"d\\\"\" e\\ f", {}) == ["a", "'b c'", '"d\\""', "e\\ f"]


def test_skip_quotes_for_heredoc_bodies() -> None:
    assert ShellLexer(skip_quotes=True).process_word("echo '$X' \"$X\"\n", {"X": "1"}) == "echo '1' \"1\"\n"


def test_empty_quotes_do_not_make_a_word() -> None:
    assert expand_words('a "" b', {}) == ["a", "b"]
    assert expand_words('a"" b', {}) == ["a", "b"]


def test_heredoc_marker_glues_to_word() -> None:
    assert expand_words("cat <<  EOF > x", {}) == ["cat", "<<  EOF", ">", "x"]
