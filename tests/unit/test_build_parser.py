"""Dockerfile syntax: BuildKit's parser fixtures, directives, continuations, heredocs, errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from pallet.build.errors import DockerfileError
from pallet.build.parser import Heredoc, parse, parse_heredoc

FIXTURES = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "dockerfile-parser"
POSITIVE = sorted(p.name for p in (FIXTURES / "testfiles").iterdir()) if FIXTURES.exists() else []
NEGATIVE = sorted(p.name for p in (FIXTURES / "testfiles-negative").iterdir()) if FIXTURES.exists() else []


def dump(text: str) -> str:
    return "".join(f"({node.dump()})\n" for node in parse(text).nodes)


@pytest.mark.skipif(not POSITIVE, reason="../shared/fixtures/dockerfile-parser is not present")
@pytest.mark.parametrize("name", POSITIVE)
def test_parser_fixture(name: str) -> None:
    case = FIXTURES / "testfiles" / name
    text = (case / "Dockerfile").read_text(encoding="utf-8")
    assert dump(text) == (case / "result").read_text(encoding="utf-8")


@pytest.mark.skipif(not NEGATIVE, reason="../shared/fixtures/dockerfile-parser is not present")
@pytest.mark.parametrize("name", NEGATIVE)
def test_parser_rejects_negative_fixture(name: str) -> None:
    from pallet.build import parse_dockerfile

    text = (FIXTURES / "testfiles-negative" / name / "Dockerfile").read_text(encoding="utf-8")
    with pytest.raises(DockerfileError):
        parse_dockerfile(text)


def test_fixture_counts() -> None:
    if not FIXTURES.exists():
        pytest.skip("fixtures not present")
    assert len(POSITIVE) >= 30 and len(NEGATIVE) >= 4


# --- lines and continuations ---------------------------------------------------------------

def test_line_numbers_span_continuations_and_heredocs() -> None:
    nodes = parse("FROM a\n\nRUN one \\\n  two\nRUN <<EOF\nx\nEOF\nCMD z\n").nodes
    assert [(n.name, n.start_line, n.end_line) for n in nodes] == [
        ("from", 1, 1), ("run", 3, 4), ("run", 5, 7), ("cmd", 8, 8)]


def test_comments_and_empty_lines_inside_continuation() -> None:
    result = parse("FROM a\nRUN a \\\n# comment\n\n  b\n")
    assert result.nodes[1].args == ["a   b"]
    assert result.warnings and "Empty continuation line" in result.warnings[0]


def test_escaped_escape_at_end_does_not_continue() -> None:
    nodes = parse("FROM a\nENV C x\\\\\nENV D y\n").nodes
    assert [n.args for n in nodes[1:]] == [["C", "x\\\\", ""], ["D", "y", ""]]


def test_crlf_and_bom() -> None:
    nodes = parse("\ufeffFROM a\r\nRUN b \\\r\n c\r\n").nodes
    assert nodes[0].args == ["a"] and nodes[1].args == ["b  c"]


def test_keyword_case_is_kept_but_dumped_lower() -> None:
    node = parse("from A as B\n").nodes[0]
    assert node.keyword == "from" and node.dump() == 'from "A" "as" "B"'


def test_flags_are_unquoted() -> None:
    node = parse('FROM a\nCOPY --chown="1:2" --from=\'b c\' x y\n').nodes[1]
    assert node.flags == ["--chown=1:2", "--from=b c"] and node.args == ["x", "y"]


# --- JSON vs shell form ----------------------------------------------------------------------

@pytest.mark.parametrize(("line", "args", "json"), [
    ('CMD ["a", "b"]', ["a", "b"], True),
    ("CMD [ ]", [], True),
    ("CMD ['a']", ["['a']"], False),  # not JSON: shell form
    ('CMD ["a"', ['["a"'], False),
    ("CMD [NaN]", ["[NaN]"], False),  # Go's JSON has no NaN
    ('COPY ["a b", "c"]', ["a b", "c"], True),
    ('COPY [a b] c', ["[a", "b]", "c"], False),  # list form falls back to whitespace splitting
])
def test_json_or_shell_form(line: str, args: list[str], json: bool) -> None:
    node = parse(line + "\n").nodes[0]
    assert (node.args, node.json) == (args, json)


def test_json_array_of_non_strings_is_an_error() -> None:
    with pytest.raises(DockerfileError, match=r"^Dockerfile:2: when using JSON array syntax"):
        parse('FROM a\nRUN ["a", 1]\n')


# --- directives ------------------------------------------------------------------------------

def test_directives_at_the_top() -> None:
    result = parse("# syntax=docker/dockerfile:1\n# check=skip=all\n#escape=`\nFROM a\nRUN x `\n y\n")
    assert result.directives == {"syntax": "docker/dockerfile:1", "check": "skip=all", "escape": "`"}
    assert result.escape == "`" and result.nodes[1].args == ["x  y"]


def test_directive_after_a_comment_is_a_comment() -> None:
    result = parse("# hello\n# escape=`\nFROM a\n")
    assert result.directives == {} and result.escape == "\\"


def test_directive_after_blank_line_is_a_comment() -> None:
    assert parse("\n# escape=`\nFROM a\n").directives == {}


def test_unknown_directive_ends_directives() -> None:
    assert parse("# foo=bar\n# escape=`\nFROM a\n").directives == {}


def test_repeated_directive_is_an_error() -> None:
    with pytest.raises(DockerfileError, match="only one escape parser directive can be used"):
        parse("# escape=`\n# escape=\\\nFROM a\n")


def test_invalid_escape_token() -> None:
    with pytest.raises(DockerfileError, match="invalid escape token 'x'"):
        parse("# escape=x\nFROM a\n")


# --- heredocs --------------------------------------------------------------------------------

HEREDOC_FILE = """\
FROM alpine
RUN <<EMPTY
EMPTY
RUN 3<<FD
FD
RUN "<<NOHEREDOC"
RUN <<INDENT
\tfoo
INDENT
RUN <<-UNINDENT
\tbaz
\tUNINDENT
RUN <<-'NOEXPAND'
\tdon't expand $NAME
NOEXPAND
COPY <<FILE1 <<FILE2 /dest
content 1
FILE1
content 2
FILE2
COPY <<X <<Y /dest
Y
X
X
Y
RUN <<COMPLEX python3
print('hello')
COMPLEX
RUN <<eo'f'
echo foo
eof
RUN <<eo\\'f
echo foo
eo'f
RUN <<'one two'
echo bar
one two
RUN <<$EOF
$EOF
RUN <<  EOF  > foo
EOF
RUN ["<<EOF"]
ONBUILD RUN <<EOF
echo on
EOF
"""


def test_heredocs_extracted() -> None:
    nodes = parse(HEREDOC_FILE).nodes
    docs = [n.heredocs for n in nodes[1:]]
    assert docs == [
        [Heredoc("EMPTY", "", True)],
        [Heredoc("FD", "", True, fd=3)],
        [],
        [Heredoc("INDENT", "\tfoo\n", True)],
        [Heredoc("UNINDENT", "\tbaz\n", True, chomp=True)],
        [Heredoc("NOEXPAND", "\tdon't expand $NAME\n", False, chomp=True)],
        [Heredoc("FILE1", "content 1\n", True), Heredoc("FILE2", "content 2\n", True)],
        [Heredoc("X", "Y\n", True), Heredoc("Y", "X\n", True)],
        [Heredoc("COMPLEX", "print('hello')\n", True)],
        [Heredoc("eof", "echo foo\n", False)],
        [Heredoc("eo'f", "echo foo\n", True)],
        [Heredoc("one two", "echo bar\n", False)],
        [Heredoc("$EOF", "", True)],
        [Heredoc("EOF", "", True)],
        [],
        [Heredoc("EOF", "echo on\n", True)],
    ]
    assert docs[4][0].text == "baz\n"
    assert nodes[-1].dump() == 'onbuild (run "<<EOF")'


def test_heredoc_keeps_empty_lines_and_dockerfile_syntax() -> None:
    node = parse("FROM a\nRUN <<EOF\n# not a comment\n\nRUN not an instruction \\\nEOF\nCMD x\n").nodes[1]
    assert node.heredocs[0].content == "# not a comment\n\nRUN not an instruction \\\n"


def test_unterminated_heredoc() -> None:
    with pytest.raises(DockerfileError, match=r"^Dockerfile:2: unterminated heredoc"):
        parse("FROM a\nRUN <<EOF\nno end\n")


@pytest.mark.parametrize("word", ["<<EOF", "<<'EOF'", '<<"EOF"', "<<-EOF", "<<-'EOF'", '<<EO"F"', "<< EOF",
                                  "<<- EOF"])
def test_parse_heredoc_valid(word: str) -> None:
    doc = parse_heredoc(word)
    assert doc is not None and doc.name == "EOF"


@pytest.mark.parametrize("word", ["", "EOF", "<<", "<<-", "<EOF", "<<<EOF", "<<EOF sh"])
def test_parse_heredoc_not_a_heredoc(word: str) -> None:
    assert parse_heredoc(word) is None


@pytest.mark.parametrize("word", ["<<'EOF", '<<"EOF', "<<EOF'", '<<EOF"'])
def test_parse_heredoc_invalid(word: str) -> None:
    with pytest.raises(DockerfileError):
        parse_heredoc(word)


# --- errors ----------------------------------------------------------------------------------

def test_errors_name_path_and_line() -> None:
    with pytest.raises(DockerfileError) as info:
        parse("FROM a\nLABEL\nENV x\n", path="sub/Dockerfile.dev")
    assert str(info.value) == "sub/Dockerfile.dev:3: ENV must have two arguments"
    assert info.value.line == 3


def test_env_pair_without_equals_is_an_error() -> None:
    with pytest.raises(DockerfileError, match=r"can't find = in \"b\""):
        parse("FROM a\nENV a=1 b\n")


def test_file_with_no_instructions() -> None:
    with pytest.raises(DockerfileError, match="file with no instructions"):
        parse("# just a comment\n\n")
