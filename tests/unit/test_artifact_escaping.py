"""Names from a model are shown literally in report.md (checked with a real CommonMark/GFM parser), report.html,
sensitivity.csv and plots: no tag, no broken code span or table row, no spreadsheet formula, no mathtext crash."""
import csv
import html
import io

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from quant.core.text import csv_field, printable
from quant.eval.sensitivity import LayerScore, SensitivityReport
from quant.report.escape import md_code, md_text
from quant.report.markdown import to_html

markdown_it = pytest.importorskip("markdown_it", reason="markdown-it-py (dev extra) checks the Markdown as GitHub reads it")

NASTY = ["<script>alert(1)</script>", "`x`", "``a`", "a`", "`", "a|b", "a\\|b", "a\\", "**bold**", "_em_", "[l](http://x)",
         "<img src=x onerror=alert(1)>", "&amp;", "line\nbreak", "cr\rlf", "nul\x00", "\x1b[31mred", " pad ", "   ",
         "$x^2$", "#heading", "- item", "1. list", "![i](x)", "http://example.com", "\u2028sep", "|", "\\`", ""]
names = st.one_of(st.sampled_from(NASTY), st.text(alphabet=st.characters(codec=None, exclude_categories=()), max_size=16),
                  st.text(alphabet="`|\\*_<>[]()!& \n$#-", max_size=12))


def _parser():
    return markdown_it.MarkdownIt("commonmark", {"html": True}).enable("table")  # raw HTML on, as on GitHub


def _inline_tokens(markdown: str):
    tokens = _parser().parse(markdown)
    return [child for token in tokens if token.type == "inline" for child in token.children]


@settings(max_examples=300, deadline=None)
@given(name=names)
def test_a_code_span_shows_exactly_the_name(name):
    if not name:
        assert md_code(name) == "(empty)"
        return
    children = _inline_tokens(f"before {md_code(name)} after")
    codes = [t for t in children if t.type == "code_inline"]
    assert len(codes) == 1 and codes[0].content == printable(name)
    assert not any(t.type == "html_inline" for t in children)


@settings(max_examples=300, deadline=None)
@given(name=names, other=names)
def test_a_table_cell_holds_exactly_the_name_and_the_row_keeps_its_columns(name, other):
    table = f"| tensor | value |\n|---|---|\n| {md_code(name, table=True)} | {md_text(other)} |\n"
    tokens = _parser().parse(table)
    cells = [t for t in tokens if t.type == "inline"]
    assert len(cells) == 4  # two header cells, two body cells: no column added, no row forged
    code = [c for c in cells[2].children if c.type == "code_inline"]
    assert (len(code) == 1 and code[0].content == printable(name)) or (not name and not code)
    assert all(c.type == "text" for c in cells[3].children)
    assert "".join(c.content for c in cells[3].children) == printable(other).strip()
    # quant's own HTML renderer reads the same table the same way
    rendered = to_html(table)
    assert f"<code>{html.escape(printable(name))}</code>" in rendered or not name
    assert rendered.count("<td>") == 2 and "<script" not in rendered and "<img" not in rendered


@settings(max_examples=300, deadline=None)
@given(name=names)
def test_plain_text_opens_no_tag_link_emphasis_or_code(name):
    children = _inline_tokens(f"x {md_text(name)} y")
    assert all(t.type in ("text", "softbreak") for t in children), [t.type for t in children]
    assert "".join(t.content for t in children) == f"x {printable(name)} y".strip()


def _report(nodes):
    layers = [LayerScore(node, "Conv", 0.9, 0.95, 30.0, 0.01, -0.02) for node in nodes]
    return SensitivityReport("top1", True, 0.99, 0.95, layers, 0.5)


def test_sensitivity_csv_quotes_names_and_neutralises_formulas():
    nodes = ['=HYPERLINK("http://x","y")', "+1", "-2+3", "@SUM(A1)", "\tTAB", "a,b", 'q"uote', "new\nline", "plain"]
    text = _report(nodes).to_csv()
    rows = list(csv.reader(io.StringIO(text)))
    assert len(text.splitlines()) == len(nodes) + 1  # one record per line
    assert [len(r) for r in rows] == [8] * (len(nodes) + 1)  # no column added by a comma or a quote
    got = [r[1] for r in rows[1:]]
    assert got == ["'" + nodes[0], "'+1", "'-2+3", "'@SUM(A1)", "\\tTAB", "a,b", 'q"uote', "new\\nline", "plain"]
    assert not any(cell.startswith(("=", "+", "-", "@", "\t", "\r")) for cell in got)
    assert rows[1][6] == "-0.02"  # numbers stay numbers


@given(name=names)
@settings(max_examples=200, deadline=None)
def test_csv_field_never_starts_a_formula_and_stays_on_one_line(name):
    field = csv_field(name)
    assert not field.startswith(("=", "+", "-", "@", "\t", "\r")) and "\n" not in field and "\r" not in field


@pytest.mark.parametrize("name", ["$x^$", "$\\undefinedcommand$", "\\alpha $", "$$", "a\nb\x00", "$x^2$"])
def test_names_that_look_like_mathtext_do_not_crash_plots(name):
    pytest.importorskip("matplotlib")
    from quant.report import plots

    counts = np.array([5, 3, 1, 0, 0, 0, 0, 0])
    for png in (plots.histogram_plot(name, np.arange(9.0), counts, {"minmax": 3.0, "entropy": 2.0}),
                plots.sensitivity_plot([{"node": name, "recovery": 1.0, "harm": 0.5, "local_sqnr_db": 30.0}], name),
                plots.fallback_plot([{"step": 0, "value": 0.9}, {"step": 1, "value": 0.95}], name, 0.99)):
        assert png.startswith(b"\x89PNG")
