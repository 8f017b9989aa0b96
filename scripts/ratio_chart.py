#!/usr/bin/env python3
"""Draws every figure of `cargo bench --bench compare` as one SVG chart.

Reads the bench's output (a file, or standard input) and writes one
horizontal bar per figure line

    <figure>: sidetask=<t> baseline[<what>]=<t> ratio=<sidetask/baseline>

on a logarithmic axis, each bar running from the line at 1.0: to the left
when sidetask took less time (or memory) than its baseline, to the right
when it took more. Lines without a ratio (`remote_idle_latency`, a skipped
baseline) are listed under the chart instead. Only Python's standard
library is used.

    cargo bench --bench compare --all-features | tee bench.txt
    python3 scripts/ratio_chart.py bench.txt -o docs/ratios.svg
"""

import argparse
import datetime
import math
import re
import sys
from html import escape

FIGURE = re.compile(
    r"^(?P<figure>[A-Za-z0-9_]+): sidetask=(?P<ours>\S+) "
    r"baseline\[(?P<what>.*)\]=(?P<theirs>\S+) ratio=(?P<ratio>[0-9.eE+-]+)\s*$"
)
# A figure measured without a ratio (`remote_idle_latency`), or a baseline
# the bench skipped; the bench's other notes on standard error are left out.
OTHER = re.compile(r"^(?P<figure>[a-z][a-z0-9_]*): (?P<text>(median=|skipped\b).*\S)\s*$")

FASTER = "#2b8a6e"
SLOWER = "#d0603a"
INK = "#222222"
GREY = "#6b6b6b"
RULE = "#d9d9d9"
FONT = "font-family:DejaVu Sans,Helvetica,Arial,sans-serif"

WIDTH = 1000
LEFT = 210  # the figure names' column
RIGHT = 30
TOP = 96
ROW = 40
BAR = 15


def parse(lines):
    """Returns the figures with a ratio, and the other figure lines."""
    bars, others = [], []
    for line in lines:
        line = line.rstrip("\n")
        m = FIGURE.match(line)
        if m and float(m["ratio"]) <= 0:
            others.append((m["figure"], f"ratio={m['ratio']} (cannot be drawn on a log scale)"))
            continue
        if m:
            bars.append(
                {
                    "figure": m["figure"],
                    "what": m["what"],
                    "ours": m["ours"],
                    "theirs": m["theirs"],
                    "ratio": float(m["ratio"]),
                }
            )
            continue
        m = OTHER.match(line)
        if m:
            others.append((m["figure"], m["text"]))
    return bars, others


def text_width(s, size, bold=False):
    """A rough width of `s` in a sans-serif font of `size` pixels."""
    return len(s) * size * (0.62 if bold else 0.56)


def clip(s, size, width):
    """`s`, shortened with an ellipsis to fit `width` pixels."""
    if text_width(s, size) <= width:
        return s
    keep = max(1, int(width / (size * 0.56)) - 1)
    return s[:keep].rstrip() + "…"


def ticks(lo, hi):
    """The 1-2-5 ticks between `lo` and `hi`."""
    out = []
    for e in range(math.floor(math.log10(lo)) - 1, math.ceil(math.log10(hi)) + 1):
        for m in (1, 2, 5):
            v = m * 10.0**e
            if lo <= v <= hi:
                out.append(v)
    return out


def tick_label(v):
    return f"{v:g}"


def shade(i):
    """The background of row `i`."""
    return "#f4f4f4" if i % 2 else "#ffffff"


def verdict(ratio):
    """`ratio` in words, as a factor of at least 1."""
    factor = max(ratio, 1 / ratio)
    if round(factor, 2) == 1:
        return "even"
    shown = f"{factor:.2f}" if factor < 1.1 else f"{factor:.1f}"
    return f"{shown}× {'faster' if ratio < 1 else 'slower'}"


def label(ratio):
    """The text at the end of a bar."""
    return f"{ratio:.3g}  ({verdict(ratio)})"


def chart(bars, others, command, date):
    """The SVG text: `bars` as bars, `others` as notes under them."""
    plot_w = WIDTH - LEFT - RIGHT
    lo = min([b["ratio"] for b in bars] + [1.0])
    hi = max([b["ratio"] for b in bars] + [1.0])

    # The widest label on each side fits beyond its bar's end, however
    # long the bar; a decade at least is shown.
    def widest(side):
        widths = [text_width(label(b["ratio"]), 12.5, bold=True) for b in bars]
        return max([w for b, w in zip(bars, widths) if side(b["ratio"])] + [0])

    need_l = widest(lambda r: r <= 1) + 16
    need_r = widest(lambda r: r > 1) + 16
    span = math.log10(hi) - math.log10(lo)
    per_decade = (plot_w - need_l - need_r) / max(span, 1.0)
    lo_e = math.log10(lo) - need_l / per_decade - (max(span, 1.0) - span) / 2
    hi_e = lo_e + plot_w / per_decade

    def x(v):
        return LEFT + (math.log10(v) - lo_e) / (hi_e - lo_e) * plot_w

    plot_h = ROW * len(bars)
    notes = [f"{f}: {t}" for f, t in others]
    height = TOP + plot_h + 44 + 18 * len(notes) + 40
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
        f'viewBox="0 0 {WIDTH} {height}" style="{FONT}">',
        f'<rect width="{WIDTH}" height="{height}" fill="#ffffff"/>',
        f'<text x="{LEFT}" y="30" font-size="19" font-weight="bold" fill="{INK}">'
        "sidetask against its baselines, figure by figure</text>",
        f'<text x="{LEFT}" y="52" font-size="12.5" fill="{GREY}">'
        "ratio = sidetask / baseline (time, or memory for idle_memory), log scale; "
        "below 1 sidetask is faster</text>",
    ]
    # The legend.
    lx = LEFT
    for colour, name in ((FASTER, "sidetask faster"), (SLOWER, "sidetask slower")):
        out.append(f'<rect x="{lx}" y="64" width="12" height="12" fill="{colour}"/>')
        out.append(
            f'<text x="{lx + 17}" y="74.5" font-size="12.5" fill="{INK}">{name}</text>'
        )
        lx += 17 + text_width(name, 12.5) + 22

    # The rows' shading, under everything else.
    for i in range(len(bars)):
        out.append(
            f'<rect x="0" y="{TOP + i * ROW}" width="{WIDTH}" height="{ROW}" '
            f'fill="{shade(i)}"/>'
        )

    # The grid, its labels, and the line at 1.0, under the bars.
    axis_y = TOP + plot_h
    for v in ticks(10**lo_e, 10**hi_e):
        tx = x(v)
        out.append(
            f'<line x1="{tx:.1f}" y1="{TOP - 6}" x2="{tx:.1f}" y2="{axis_y}" '
            f'stroke="{RULE}" stroke-width="1"/>'
        )
        out.append(
            f'<text x="{tx:.1f}" y="{axis_y + 16}" font-size="11.5" fill="{GREY}" '
            f'text-anchor="middle">{tick_label(v)}</text>'
        )
    one = x(1.0)

    out.append(
        f'<line x1="{one:.1f}" y1="{TOP - 10}" x2="{one:.1f}" y2="{axis_y}" '
        f'stroke="{INK}" stroke-width="1.5"/>'
    )
    out.append(
        f'<text x="{one:.1f}" y="{TOP - 14}" font-size="11.5" fill="{INK}" '
        'text-anchor="middle">1.0 = even</text>'
    )

    # The bars, their ratios, the figures' names and their baselines.
    for i, b in enumerate(bars):
        top = TOP + i * ROW
        mid = top + 4 + BAR / 2
        halo = (
            f'stroke="{shade(i)}" stroke-width="3" stroke-linejoin="round" '
            'paint-order="stroke"'
        )
        r = b["ratio"]
        colour = FASTER if r <= 1 else SLOWER
        end = x(r)
        left, right = min(one, end), max(one, end)
        out.append(
            f'<rect x="{left:.1f}" y="{top + 4}" width="{max(right - left, 1.5):.1f}" '
            f'height="{BAR}" fill="{colour}"/>'
        )
        text = label(r)
        if r <= 1:
            lx, anchor = left - 6, "end"
        else:
            lx, anchor = right + 6, "start"
        out.append(
            f'<text x="{lx:.1f}" y="{mid + 4.5:.1f}" font-size="12.5" font-weight="bold" '
            f'fill="{INK}" text-anchor="{anchor}" {halo}>{escape(text)}</text>'
        )
        out.append(
            f'<text x="{LEFT - 10}" y="{mid + 4.5:.1f}" font-size="13" fill="{INK}" '
            f'text-anchor="end">{escape(b["figure"])}</text>'
        )
        what = f"vs {b['what']}: sidetask {b['ours']}, baseline {b['theirs']}"
        out.append(
            f'<text x="{LEFT}" y="{top + BAR + 18}" font-size="10.5" fill="{GREY}" {halo}>'
            f"{escape(clip(what, 10.5, plot_w))}</text>"
        )

    y = axis_y + 44
    for note in notes:
        out.append(
            f'<text x="{LEFT}" y="{y}" font-size="11.5" fill="{GREY}">'
            f"{escape(clip('Not charted: ' + note, 11.5, WIDTH - LEFT - RIGHT))}</text>"
        )
        y += 18
    out.append(
        f'<text x="{LEFT}" y="{y + 10}" font-size="11.5" fill="{GREY}">'
        f"{escape(f'From `{command}`, {date}. Ratios within one run hold; absolute times vary with the machine.')}"
        "</text>"
    )
    out.append("</svg>")
    return "\n".join(out) + "\n"


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("input", nargs="?", help="the bench's output (default: standard input)")
    p.add_argument("-o", "--output", help="the SVG to write (default: standard output)")
    p.add_argument(
        "--command",
        default="cargo bench --bench compare --all-features",
        help="the command the output came from, for the note",
    )
    p.add_argument(
        "--date",
        help="the run's date for the note (default: a YYYY-MM-DD in the input's "
        "name, else today)",
    )
    args = p.parse_args()

    if args.input:
        with open(args.input, encoding="utf-8") as f:
            lines = f.readlines()
    else:
        lines = sys.stdin.readlines()
    bars, others = parse(lines)
    if not bars:
        sys.exit("ratio_chart: no figure line with a ratio in the input")

    date = args.date
    if not date and args.input:
        m = re.search(r"\d{4}-\d{2}-\d{2}", args.input)
        date = m and m.group(0)
    date = date or datetime.date.today().isoformat()

    svg = chart(bars, others, args.command, date)
    if args.output:
        with open(args.output, "w", encoding="utf-8") as f:
            f.write(svg)
    else:
        sys.stdout.write(svg)


if __name__ == "__main__":
    main()
