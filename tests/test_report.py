"""Report plots keep their titles inside the figure (wrapped lines, constrained layout)."""
import matplotlib

matplotlib.use("Agg")

from hwtune.report import _new_figure, _set_title  # noqa: E402


def test_a_long_title_stays_inside_the_figure():
    fig, ax = _new_figure()
    ax.plot([0, 1], [0, 1])
    _set_title(ax, "noise-vgg-mismatch: weight mismatch (noise-aware trained at weight mismatch 0.4; budget window "
                   "search, then 1 epochs, lr 0.0001)\nmean ± std over 3 seeds, each the mean of 8 held-out devices", 8)
    fig.canvas.draw()
    title, figure = ax.title.get_window_extent(), fig.bbox
    assert figure.x0 <= title.x0 and title.x1 <= figure.x1 and title.y1 <= figure.y1, (title, figure)
    assert ax.title.get_text().count("\n") >= 2          # the long first line was wrapped


def test_the_jitter_plot_shows_every_bit_width(monkeypatch):
    """The committed CI sweep has 4- and 8-bit points under jitter: each bit width, fine-tuned or
    not, is a series of accuracy_vs_jitter.png (it showed the 8-bit points only)."""
    from pathlib import Path

    from matplotlib.axes import Axes

    from hwtune.report import PLOTS, make_plots
    from hwtune.sweep import read_points

    drawn, errorbar = [], Axes.errorbar

    def spy(self, *args, **kwargs):            # the real errorbar, recording which plot drew which series
        drawn.append((self, kwargs.get("label"), list(args[0])))
        return errorbar(self, *args, **kwargs)
    monkeypatch.setattr(Axes, "errorbar", spy)
    records = read_points(Path(__file__).resolve().parent.parent / "docs/results/robustness-ci")
    made, _ = make_plots(records)
    assert PLOTS[2] in made
    jitter = {label: xs for ax, label, xs in drawn if ax.get_xlabel().startswith("jitter")}
    assert set(jitter) == {f"{bits}-bit weights, {tuned} (torch)" for bits in (4, 8)
                           for tuned in ("fine-tuned", "not fine-tuned")}, set(jitter)
    assert all(len(xs) == 2 for xs in jitter.values())          # jitter 0 and 0.1 of each
