"""Go text/template semantics and Docker's --format/table output."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import pytest

from pallet.cli.format import (
    Template,
    TemplateError,
    format_rows,
    parse_template,
    render,
    tabwrite,
    tabwrite_text,
)

INSPECT: dict[str, Any] = {
    "Id": "abc123",
    "Name": "/web",
    "Config": {
        "Env": ["PATH=/usr/bin", "A=1"],
        "Labels": {"com.example.b": "2", "com.example.a": "x<y>&z"},
        "Cmd": None,
        "ExposedPorts": {},
    },
    "State": {"Running": True, "Pid": 4242, "ExitCode": 0, "Status": "running"},
    "Mounts": [{"Source": "/a", "Destination": "/b"}, {"Source": "/c", "Destination": "/d"}],
    "Size": 1.5,
    "Ports": [],
}


def r(template: str, obj: Any = None) -> str:
    return render(template, INSPECT if obj is None else obj)


# --- fields and printing ---------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{{.Id}}", "abc123"),
        ("{{.Name}} is {{.State.Status}}", "/web is running"),
        ("{{.State.Pid}}", "4242"),
        ("{{.State.Running}}", "true"),
        ("{{.Config.Env}}", "[PATH=/usr/bin A=1]"),
        ("{{.Config.Labels}}", "map[com.example.a:x<y>&z com.example.b:2]"),
        ("{{.Mounts}}", "[map[Destination:/b Source:/a] map[Destination:/d Source:/c]]"),
        ("{{.Config.Cmd}}", "<nil>"),
        ("{{.Missing}}", "<no value>"),
        ("{{.Missing.Deeper}}", "<no value>"),
        ("{{.Config.ExposedPorts}}", "map[]"),
        ("{{.Ports}}", "[]"),
        (
            "{{.}}",
            "map[Config:map[Cmd:<nil> Env:[PATH=/usr/bin A=1] ExposedPorts:map[] "
            "Labels:map[com.example.a:x<y>&z com.example.b:2]] Id:abc123 "
            "Mounts:[map[Destination:/b Source:/a] map[Destination:/d Source:/c]] Name:/web Ports:[] "
            "Size:1.5 State:map[ExitCode:0 Pid:4242 Running:true Status:running]]",
        ),
        ("text only", "text only"),
        ("", ""),
    ],
)
def test_fields_and_default_printing(template: str, expected: str) -> None:
    assert r(template) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1.5, "1.5"),
        (1.0, "1"),
        (100000.0, "100000"),
        (1e6, "1e+06"),
        (123456789.0, "1.23456789e+08"),
        (0.0001, "0.0001"),
        (0.00001, "1e-05"),
        (-2.5e-7, "-2.5e-07"),
        (0.0, "0"),
        (-0.0, "-0"),
        (float("inf"), "+Inf"),
        (float("-inf"), "-Inf"),
        (float("nan"), "NaN"),
        (10**20, "100000000000000000000"),
        (-3, "-3"),
        (False, "false"),
        ((1, "a", None), "[1 a <nil>]"),
        ({2: "b", 1: "a"}, "map[1:a 2:b]"),
        ([[1, 2], [3]], "[[1 2] [3]]"),
    ],
)
def test_value_printing_matches_go(value: Any, expected: str) -> None:
    assert render("{{.}}", value) == expected


@dataclass
class Port:
    private: int
    public: int


class Container:
    def __init__(self) -> None:
        self.ID = "c0ffee"
        self.Names = ["web", "db"]
        self.Port = Port(80, 8080)
        self.Nothing = None
        self._secret = "hidden"

    def Short(self) -> str:
        return self.ID[:3]

    def Greet(self, who: str, punct: str = "!") -> str:
        return f"hi {who}{punct}"

    @property
    def Broken(self) -> str:
        raise RuntimeError("boom")


def test_object_attributes_and_methods() -> None:
    c = Container()
    assert render("{{.ID}} {{.Short}} {{.Names}}", c) == "c0ffee c0f [web db]"
    assert render('{{.Greet "bob"}}', c) == "hi bob!"
    assert render('{{"ann" | .Greet}}', c) == "hi ann!"
    assert render('{{.Greet "x" "?"}}', c) == "hi x?"
    assert render("{{.Port}}", c) == "{80 8080}"
    assert render("{{json .Port}}", c) == '{"private":80,"public":8080}'
    assert render("{{.Nothing}}", c) == "<nil>"


@pytest.mark.parametrize(
    ("template", "message"),
    [
        (
            "{{.Missing}}",
            'template: :1:2: executing "" at <.Missing>: can\'t evaluate field Missing in type Container',
        ),
        (
            "{{._secret}}",
            'template: :1:2: executing "" at <._secret>: can\'t evaluate field _secret in type Container',
        ),
        ("{{.ID.X}}", 'template: :1:2: executing "" at <.ID.X>: can\'t evaluate field X in type string'),
        (
            "{{.ID 1}}",
            'template: :1:2: executing "" at <.ID>: ID has arguments but cannot be invoked as function',
        ),
        (
            "{{.Nothing.X}}",
            'template: :1:2: executing "" at <.Nothing.X>: nil pointer evaluating interface {}.X',
        ),
        ("{{.Broken}}", 'template: :1:2: executing "" at <.Broken>: error calling Broken: boom'),
    ],
)
def test_object_errors(template: str, message: str) -> None:
    with pytest.raises(TemplateError) as excinfo:
        render(template, Container())
    assert str(excinfo.value) == message


def test_map_key_with_arguments_is_an_error() -> None:
    with pytest.raises(TemplateError, match="Id is not a method but has arguments"):
        r("{{.Id 1}}")


# --- json ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({"b": 1, "a": [1, 2.5, None, True]}, '{"b":1,"a":[1,2.5,null,true]}'),
        ("x<y>&z", '"x<y>&z"'),  # Docker turns HTML escaping off
        (
            'quote" back\\ nl\n tab\t bs\b ff\f nul\x00 del\x7f',
            '"quote\\" back\\\\ nl\\n tab\\t bs\\b ff\\f nul\\u0000 del\x7f"',
        ),
        ("é ☃ 日本", '"é ☃ 日本"'),
        ("line\u2028sep\u2029", '"line\\u2028sep\\u2029"'),
        (1e21, "1e+21"),
        (1e20, "100000000000000000000"),
        (1e-7, "1e-7"),
        (0.000001, "0.000001"),
        (3.0, "3"),
        (-0.5, "-0.5"),
        ((1, "a"), '[1,"a"]'),
        ({1: "int key"}, '{"1":"int key"}'),
        ([], "[]"),
        ({}, "{}"),
        (None, "null"),
        (float("nan"), ""),  # Docker ignores the encoder's error and prints nothing
        ({"x": object()}, ""),
    ],
)
def test_json(value: Any, expected: str) -> None:
    assert render("{{json .}}", value) == expected


def test_json_of_fields_and_pipeline() -> None:
    assert r("{{json .Config.Labels}}") == '{"com.example.b":"2","com.example.a":"x<y>&z"}'
    assert r("{{.State | json}}") == '{"Running":true,"Pid":4242,"ExitCode":0,"Status":"running"}'
    assert r("{{json .Missing}}") == "null"
    assert r("{{json .Config.Cmd}}") == "null"


# --- functions -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ('{{index .Config.Labels "com.example.a"}}', "x<y>&z"),
        ('[{{index .Config.Labels "nope"}}]', "[]"),  # zero value of map[string]string
        ("{{index .Config.Env 1}}", "A=1"),
        ('{{index .Mounts 1 "Source"}}', "/c"),
        ('{{index "abc" 1}}', "98"),  # Go indexes the bytes of a string
        ("{{(index .Mounts 0).Destination}}", "/b"),
        ('{{join .Config.Env ","}}', "PATH=/usr/bin,A=1"),
        ('{{join .Config.Cmd " "}}', ""),
        ('{{split "a,b,,c" ","}}', "[a b  c]"),
        ('{{split "abc" ""}}', "[a b c]"),
        ('{{len (split "a:b" ":")}}', "2"),
        ('{{upper .State.Status}} {{lower "MiXeD"}}', "RUNNING mixed"),
        ('{{title "hello wOrld-foo_bar x.y"}}', "Hello WOrld-Foo_bar X.Y"),
        (
            '{{len .Config.Env}} {{len .Config.Labels}} {{len .Name}} {{len "é"}} {{len .Config.Cmd}}',
            "2 2 4 2 0",
        ),
        ('{{pad "ab" 1 2}}|{{pad "" 1 2}}|', " ab  ||"),
        ('{{truncate "abcdef" 3}} {{truncate "ab" 3}}', "abc ab"),
        ("{{slice .Name 1}} {{slice .Name 1 3}} {{slice .Config.Env 1}}", "web we [A=1]"),
        ('{{println "a" 1 2}}', "a 1 2\n"),
        ('{{print "a" 1 2 "b" "c" 3}}', "a1 2bc3"),  # spaces only between two non-strings
        ('{{html "<a href=\'x\'>&\\""}}', "&lt;a href=&#39;x&#39;&gt;&amp;&#34;"),
        ('{{js "it\'s <b> & \\"q\\""}}', 'it\\\'s \\u003Cb\\u003E \\u0026 \\"q\\"'),
        ('{{urlquery "a b&c/d"}}', "a+b%26c%2Fd"),
        ("{{not .State.Running}} {{not .Missing}} {{not 0}}", "false true true"),
        ('{{and 1 2 3}} {{and 1 0 3}} {{or 0 "" 3}} {{or 0 ""}}', "3 0 3 "),
        ("{{and .Missing .Boom}}", "<no value>"),  # short-circuits: .Boom is never evaluated
        (
            '{{eq .State.Status "running"}} {{eq 1 2 3 1}} {{ne 1 2}} {{eq .Config.Cmd nil}}',
            "true true true true",
        ),
        ('{{lt 1 2}} {{le 2 2}} {{gt 2.5 1.5}} {{ge "a" "b"}}', "true true true false"),
        ('{{.Id | printf "%s-%s" "x"}}', "x-abc123"),
        ('{{.Name | upper | printf "[%s]"}}', "[/WEB]"),
    ],
)
def test_functions(template: str, expected: str) -> None:
    assert r(template) == expected


def test_call() -> None:
    assert render("{{call .F 2 3}}", {"F": lambda a, b: a * b}) == "6"


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("{{index .Config.Env 5}}", "at <index .Config.Env 5>: error calling index: index out of range: 5"),
        ('{{index .Config.Env "x"}}', "error calling index: cannot index slice/array with type string"),
        ("{{index .State.Pid 0}}", "error calling index: can't index item of type int"),
        ("{{len .State.Pid}}", "error calling len: len of type int"),
        ("{{upper .State.Pid}}", "at <upper .State.Pid>: wrong type for value; expected string; got int"),
        ("{{upper .Missing}}", "invalid value; expected string"),
        ('{{join "a" ","}}', "wrong type for value; expected []string; got string"),
        ("{{upper}}", "at <upper>: wrong number of args for upper: want 1 got 0"),
        ('{{join "a"}}', "wrong number of args for join: want 2 got 1"),
        ("{{printf}}", "wrong number of args for printf: want at least 1 got 0"),
        ('{{eq 1 "1"}}', "error calling eq: incompatible types for comparison"),
        ("{{eq 1}}", "error calling eq: missing argument for comparison"),
        ("{{lt 1 1.5}}", "error calling lt: incompatible types for comparison"),
        ("{{lt true false}}", "error calling lt: invalid type for comparison"),
        ("{{lt .Config.Env .Config.Env}}", "error calling lt: invalid type for comparison"),
        ("{{eq .Config.Env .Config.Env}}", "error calling eq: non-comparable type"),
        ("{{slice .Name 3 9}}", "error calling slice: index out of range: 9"),
        ("{{call .Id}}", "error calling call: non-function of type string"),
    ],
)
def test_function_errors(template: str, message: str) -> None:
    with pytest.raises(TemplateError) as excinfo:
        r(template)
    assert message in str(excinfo.value)


# --- printf -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "args", "expected"),
    [
        ('"%s|%v|%d"', '"a" 1.5 42', "a|1.5|42"),
        ('"%q %q"', '"hi\\n\\x01é" 97', "\"hi\\n\\x01é\" 'a'"),
        ('"%5s|%-5s|%.2s"', '"ab" "ab" "abc"', "   ab|ab   |ab"),
        ('"%05d|%+d|% d|%-4d|%.3d"', "42 42 42 42 7", "00042|+42| 42|42  |007"),
        (
            '"%x|%X|%#x|%o|%#o|%O|%b|%c|%U"',
            "255 255 255 8 8 8 5 9731 9731",
            "ff|FF|0xff|10|010|0o10|101|☃|U+2603",
        ),
        ('"%x|%X"', '"hi" "hi"', "6869|6869"),
        (
            '"%.2f|%f|%e|%E|%g|%G|%8.3f|%-8.1f|"',
            "3.14159 1.5 1234.5 1234.5 0.0001 1e21 2.5 2.5",
            "3.14|1.500000|1.234500e+03|1.234500E+03|0.0001|1E+21|   2.500|2.5     |",
        ),
        ('"%v %.1f %f"', "1e6 1e6 0.5", "1e+06 1000000.0 0.500000"),
        ('"%t %v"', "true false", "true false"),
        ('"%d %s %f %t"', '"x" 1 2 "y"', "%!d(string=x) %!s(int=1) %!f(int=2) %!t(string=y)"),
        ('"%d %s"', "nil nil", "%!d(<nil>) %!s(<nil>)"),
        ('"%v"', "nil", "<nil>"),
        ('"%s %s"', '"a"', "a %!s(MISSING)"),
        ('"%s"', '"a" 1 "b"', "a%!(EXTRA int=1, string=b)"),
        ('"100%% %"', "", "100% %!(NOVERB)"),
        ('"%z"', "1", "%!z(int=1)"),
        ('"%*d|%.*f"', "5 42 1 3.14159", "   42|3.1"),
        (
            '"%s %d"',
            ".Config.Env .Config.Env",
            "[PATH=/usr/bin A=1] [%!d(string=PATH=/usr/bin) %!d(string=A=1)]",
        ),
        ('"%v"', ".Config.Labels", "map[com.example.a:x<y>&z com.example.b:2]"),
        ('"%f"', '"+Inf"', "%!f(string=+Inf)"),
    ],
)
def test_printf(fmt: str, args: str, expected: str) -> None:
    assert r(f"{{{{printf {fmt} {args}}}}}") == expected


def test_printf_float_specials() -> None:
    assert render('{{printf "%f|%v|%5.1f" . . .}}', float("inf")) == "+Inf|+Inf| +Inf"
    assert render('{{printf "%v %d" . .}}', True) == "true %!d(bool=true)"


# --- control structures ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{{if .State.Running}}up{{else}}down{{end}}", "up"),
        ("{{if .Missing}}yes{{else}}no{{end}}", "no"),
        ("{{if .Config.Cmd}}yes{{else}}no{{end}}", "no"),
        ("{{if .Ports}}yes{{else}}no{{end}}", "no"),
        ("{{if .Config.ExposedPorts}}yes{{else}}no{{end}}", "no"),
        ("{{if .State.ExitCode}}yes{{else}}no{{end}}", "no"),
        ("{{if 0.0}}yes{{else}}no{{end}}", "no"),
        ('{{if ""}}a{{else if .Missing}}b{{else if .Id}}c{{else}}d{{end}}', "c"),
        ("{{if .Id}}only{{end}}", "only"),
        ("{{with .State}}{{.Pid}}{{end}}", "4242"),
        ("{{with .Missing}}x{{else}}none{{end}}", "none"),
        ("{{with .Missing}}x{{else with .State}}{{.Status}}{{end}}", "running"),
        ("{{with $x := .State}}{{$x.Pid}}{{end}}", "4242"),
        ("{{range .Config.Env}}[{{.}}]{{end}}", "[PATH=/usr/bin][A=1]"),
        ("{{range $i, $e := .Config.Env}}{{$i}}:{{$e}} {{end}}", "0:PATH=/usr/bin 1:A=1 "),
        ("{{range $e := .Config.Env}}{{$e}};{{end}}", "PATH=/usr/bin;A=1;"),
        ("{{range $k, $v := .Config.Labels}}{{$k}}={{$v}};{{end}}", "com.example.a=x<y>&z;com.example.b=2;"),
        ("{{range .Config.Labels}}{{.}};{{end}}", "x<y>&z;2;"),
        ("{{range .Mounts}}{{.Source}}:{{.Destination}} {{end}}", "/a:/b /c:/d "),
        ("{{range .Ports}}x{{else}}empty{{end}}", "empty"),
        ("{{range .Config.Cmd}}x{{else}}nil{{end}}", "nil"),
        ("{{range .Missing}}x{{else}}missing{{end}}", "missing"),
        ("{{range 3}}{{.}}{{end}}", "012"),
        ('{{range .Config.Env}}{{if eq . "PATH=/usr/bin"}}{{continue}}{{end}}{{.}}{{end}}', "A=1"),
        ("{{range .Config.Env}}{{.}}{{break}}{{end}}", "PATH=/usr/bin"),
        ("{{range .Mounts}}{{range $.Config.Env}}{{break}}{{end}}{{.Source}}{{end}}", "/a/c"),
        ("{{range $i, $m := .Mounts}}{{if $i}},{{end}}{{$m.Source}}{{end}}", "/a,/c"),
        ("{{$x := 1}}{{range .Mounts}}{{$x = .Source}}{{end}}{{$x}}", "/c"),
        ("{{$n := .Name}}{{with .State}}{{$n}}-{{.Pid}}-{{$.Id}}{{end}}", "/web-4242-abc123"),
        ('{{$x := "a"}}{{$x}}{{$x = "b"}}{{$x}}', "ab"),
    ],
)
def test_control_structures(template: str, expected: str) -> None:
    assert r(template) == expected


def test_range_over_tuple_and_iterables() -> None:
    assert render("{{range .}}{{.}}{{end}}", ("a", "b")) == "ab"
    assert render("{{range .}}{{.}}{{end}}", iter(["x", "y"])) == "xy"


def test_range_over_string_is_an_error() -> None:
    with pytest.raises(TemplateError, match="range can't iterate over /web"):
        r("{{range .Name}}{{end}}")


# --- lexical details ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("a  {{- .Id -}}  b", "aabc123b"),
        ("a \n\t{{- .Id}} b", "aabc123 b"),
        ("{{.Id -}}\n\n  x", "abc123x"),
        ("{{-3}}", "-3"),
        ("{{- 3 -}}", "3"),
        ("x {{/* a comment */}} y", "x  y"),
        ("x {{- /* trimmed */ -}} y", "xy"),
        ("{{/* multi\nline */}}ok", "ok"),
        ('{{"a\\tb\\n\\"q\\" \\u00e9 \\x41 \\101 \\U0001F600"}}', 'a\tb\n"q" é A A 😀'),
        ("{{`raw \\n {{ }} `}}", "raw \\n {{ }} "),
        ("{{'a'}} {{'\\n'}} {{'☃'}}", "97 10 9731"),
        (
            "{{1.5}} {{1e3}} {{0x1F}} {{0o17}} {{017}} {{0b101}} {{1_000}} {{.5}} {{-2.5}} {{0x1p-2}}",
            "1.5 1000 31 15 15 5 1000 0.5 -2.5 0.25",
        ),
        ("{{true}} {{false}}", "true false"),
        ("{{ .Id }}", "abc123"),
        ("{{\n.Id\n}}", "abc123"),
        ("{{(.Id)}} {{(print 1 2)}}", "abc123 1 2"),
        ("{{.Id}}}}", "abc123}}"),
        ("}} {{ {{.Id}}", "<error>"),
    ],
)
def test_lexing(template: str, expected: str) -> None:
    if expected == "<error>":
        with pytest.raises(TemplateError):
            r(template)
    else:
        assert r(template) == expected


PARSE_ERRORS = [
    ("{{.Id", "template: :1: unclosed action"),
    ("{{if .Id}}", "template: :1: unexpected EOF"),
    ("{{if .Id}}{{else}}{{else}}{{end}}", "template: :1: expected end; found {{else}}"),
    ("{{end}}", "template: :1: unexpected {{end}}"),
    ("{{else}}", "template: :1: unexpected {{else}}"),
    ("{{nosuchfunc .}}", 'template: :1: function "nosuchfunc" not defined'),
    ("{{$x}}", 'template: :1: undefined variable "$x"'),
    ("{{range .Mounts}}{{$m := .}}{{end}}{{$m}}", 'template: :1: undefined variable "$m"'),
    ("{{}}", "template: :1: missing value for command"),
    ("{{if}}{{end}}", "template: :1: missing value for if"),
    ('{{.Id | "x"}}', "template: :1: non executable command in pipeline stage 2"),
    ("{{.Id)}}", "template: :1: unexpected right paren"),
    ("{{(.Id}}", "template: :1: unclosed left paren"),
    ('{{"abc}}', "template: :1: unterminated quoted string"),
    ("{{`abc}}", "template: :1: unterminated raw quoted string"),
    ("{{'ab'}}", "template: :1: malformed character constant: 'ab'"),
    ('{{"\\q"}}', "template: :1: invalid syntax"),
    ("{{.Id!}}", "template: :1: bad character U+0021 '!'"),
    ("{{3x}}", 'template: :1: bad number syntax: "3x"'),
    ("{{break}}", "template: :1: {{break}} outside {{range}}"),
    ("{{continue}}", "template: :1: {{continue}} outside {{range}}"),
    ("{{/* open", "template: :1: unclosed comment"),
    ("{{/* c */ .Id}}", "template: :1: comment ends before closing delimiter"),
    ('{{define "x"}}{{end}}', "template: :1: {{define}} is not supported"),
    ('{{template "x"}}', "template: :1: {{template}} is not supported"),
    ("{{range $a, $b, $c := .}}{{end}}", "template: :1: too many declarations in range"),
    ("{{with $a, $b := .}}{{end}}", "template: :1: too many declarations in with"),
    ('{{"a".Foo}}', 'template: :1: unexpected . after term "\\"a\\""'),
    ("{{.Id ~}}", 'template: :1: unexpected "~" in operand'),
    ("{{.Id :}}", "template: :1: expected :="),
    ("line1\nline2 {{.Id", "template: :2: unclosed action"),
]


@pytest.mark.parametrize(("template", "message"), PARSE_ERRORS)
def test_parse_errors(template: str, message: str) -> None:
    with pytest.raises(TemplateError) as excinfo:
        parse_template(template)
    assert str(excinfo.value) == message


EXEC_ERRORS = [
    ("{{nil}}", 'template: :1:2: executing "" at <nil>: nil is not a command'),
    ("{{1 2}}", 'template: :1:2: executing "" at <1>: can\'t give argument to non-function 1'),
    ('{{"a" | printf "%s" | 1}}', "template: :1: non executable command in pipeline stage 3"),
    (
        "{{.Config.Cmd.X}}",
        'template: :1:2: executing "" at <.Config.Cmd.X>: nil pointer evaluating interface {}.X',
    ),
    ("a\n  {{.Id.X}}", 'template: :2:4: executing "" at <.Id.X>: can\'t evaluate field X in type string'),
]


@pytest.mark.parametrize(("template", "message"), EXEC_ERRORS)
def test_execution_errors(template: str, message: str) -> None:
    with pytest.raises(TemplateError) as excinfo:
        r(template)
    assert str(excinfo.value) == message


@pytest.mark.parametrize(
    ("template", "term"), [("{{true.X}}", "true"), ("{{nil.X}}", "nil"), ("{{..X}}", ".")]
)
def test_field_on_constant_is_a_parse_error(template: str, term: str) -> None:
    with pytest.raises(TemplateError, match=f'unexpected . after term "{re.escape(term)}"'):
        parse_template(template)


def test_template_error_is_value_error() -> None:
    with pytest.raises(ValueError):
        render("{{", {})


def test_parse_template_is_cached_and_reusable() -> None:
    tmpl = parse_template("{{.A}}-{{.B}}")
    assert parse_template("{{.A}}-{{.B}}") is tmpl
    assert isinstance(tmpl, Template)
    assert tmpl.execute({"A": 1, "B": 2}) == "1-2"
    assert tmpl.execute({"A": "x"}) == "x-<no value>"


def test_inspect_does_not_interpret_backslash_escapes() -> None:
    # docker inspect passes the format through as is; only list formatters replace \t.
    assert r("{{.Id}}\\t{{.Name}}") == "abc123\\t/web"


# --- tabwriter ---------------------------------------------------------------------------------


def test_tabwrite_basic_alignment() -> None:
    assert tabwrite([["ID", "NAME"], ["abc", "x"]]) == "ID        NAME\nabc       x\n"


def test_tabwrite_padding_beyond_minwidth() -> None:
    assert tabwrite([["CONTAINER ID", "IMAGE"], ["1", "busybox"]]) == (
        "CONTAINER ID   IMAGE\n1              busybox\n"
    )


def test_tabwrite_columns_are_contiguous_blocks() -> None:
    # The example from Go's tabwriter docs: b and c are in different column blocks.
    text = "aaaa\tbbb\td\naa\tb\tdd\na\t\naa\tcccc\teee\n"
    assert tabwrite_text(text) == (
        "aaaa      bbb       d\naa        b         dd\na         \naa        cccc      eee\n"
    )


def test_tabwrite_last_cell_is_not_padded_and_wide_runes_count_double() -> None:
    out = tabwrite([["日本語", "y"], ["abcdefghijklm", "z"]])
    assert out == "日本語" + " " * 10 + "y\nabcdefghijklm   z\n"


def test_tabwrite_single_cell_lines_break_blocks() -> None:
    text = "a\tb\nsingle line that is long\nccccccccccccccc\td\n"
    assert tabwrite_text(text) == "a         b\nsingle line that is long\nccccccccccccccc   d\n"


def test_tabwrite_formfeed_flushes_and_vtab_terminates_cells() -> None:
    assert tabwrite_text("a\tb\fcccccccccccccc\td\n") == "a         b\ncccccccccccccc   d\n"
    assert tabwrite_text("a\vb\n") == "a         b\n"


def test_tabwrite_without_trailing_newline_and_empty() -> None:
    assert tabwrite_text("a\tb") == "a         b"
    assert tabwrite_text("") == ""
    assert tabwrite([]) == ""
    assert tabwrite([["", "x"]]) == "          x\n"


# --- format_rows -------------------------------------------------------------------------------

DEFAULT_TABLE = [
    ("CONTAINER ID", "{{.ID}}"),
    ("IMAGE", "{{.Image}}"),
    ("STATUS", "{{.Status}}"),
    ("NAMES", "{{.Names}}"),
]
ROWS = [
    {"ID": "4d3d1c1a2b3c", "Image": "busybox", "Status": "Up 2 minutes", "Names": "web", "Labels": "a=1"},
    {
        "ID": "9f8e7d6c5b4a",
        "Image": "nginx:alpine",
        "Status": "Exited (0) 1 hour ago",
        "Names": "db",
        "Labels": "",
    },
]
DEFAULT_OUTPUT = (
    "CONTAINER ID   IMAGE          STATUS                  NAMES\n"
    "4d3d1c1a2b3c   busybox        Up 2 minutes            web\n"
    "9f8e7d6c5b4a   nginx:alpine   Exited (0) 1 hour ago   db\n"
)


@pytest.mark.parametrize("fmt", [None, "", "table"])
def test_default_table(fmt: str | None) -> None:
    assert format_rows(fmt, ROWS, DEFAULT_TABLE) == DEFAULT_OUTPUT


def test_default_table_without_rows_still_has_header() -> None:
    assert format_rows(None, [], DEFAULT_TABLE) == "CONTAINER ID   IMAGE     STATUS    NAMES\n"


def test_custom_table_headers_from_default_table_and_fallback() -> None:
    out = format_rows("table {{.ID}}\\t{{.Names}}\\t{{.Labels}}", ROWS, DEFAULT_TABLE)
    assert out == (
        "CONTAINER ID   NAMES     LABELS\n4d3d1c1a2b3c   web       a=1\n9f8e7d6c5b4a   db        \n"
    )


def test_custom_table_explicit_headers_win() -> None:
    out = format_rows("table {{.ID}}\t{{.Size}}", [{"ID": "x", "Size": "1B"}], DEFAULT_TABLE, {"ID": "ID!"})
    assert out == "ID!       SIZE\nx         1B\n"


def test_custom_table_header_functions_are_identity() -> None:
    out = format_rows(
        "table {{upper .Names}}\\t{{json .Image}}\\t{{truncate .ID 4}}", ROWS[:1], DEFAULT_TABLE
    )
    assert out == 'NAMES     IMAGE       CONTAINER ID\nWEB       "busybox"   4d3d\n'


def test_custom_table_header_errors_leave_partial_header() -> None:
    rows = [{"Names": ["a", "b"], "ID": "1"}]
    out = format_rows("table {{.ID}}\\t{{range .Names}}{{.}}{{end}}", rows, DEFAULT_TABLE)
    assert out == "CONTAINER ID   \n1              ab\n"


def test_table_prefix_without_space_and_trimming() -> None:
    assert format_rows("table{{.Names}}  ", ROWS, DEFAULT_TABLE) == "NAMES\nweb\ndb\n"
    assert format_rows("  {{.Names}}  ", ROWS, DEFAULT_TABLE) == "web\ndb\n"


def test_plain_format_lines() -> None:
    assert format_rows("{{.ID}}: {{.Names}}", ROWS, DEFAULT_TABLE) == "4d3d1c1a2b3c: web\n9f8e7d6c5b4a: db\n"
    assert format_rows("{{.ID}}\\t{{.Names}}", ROWS[:1], DEFAULT_TABLE) == "4d3d1c1a2b3c\tweb\n"
    assert format_rows("{{.Names}}\\n--", ROWS[:1], DEFAULT_TABLE) == "web\n--\n"
    assert format_rows("{{.ID}}", [], DEFAULT_TABLE) == ""


def test_json_format() -> None:
    out = format_rows("json", ROWS, DEFAULT_TABLE)
    lines = out.splitlines()
    assert lines[0] == (
        '{"ID":"4d3d1c1a2b3c","Image":"busybox","Status":"Up 2 minutes","Names":"web","Labels":"a=1"}'
    )
    assert len(lines) == 2 and out.endswith("\n")
    assert format_rows("json", [], DEFAULT_TABLE) == ""
    assert format_rows("{{json .}}", [{"a": "<b>"}], DEFAULT_TABLE) == '{"a":"<b>"}\n'


def test_format_rows_errors() -> None:
    with pytest.raises(TemplateError, match='function "nope" not defined'):
        format_rows("{{nope}}", ROWS, DEFAULT_TABLE)
    with pytest.raises(TemplateError, match="can't evaluate field"):
        format_rows("table {{.ID.Nope}}", ROWS, DEFAULT_TABLE)
