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
