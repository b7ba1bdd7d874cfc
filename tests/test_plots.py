"""Figures: what they draw must be readable (labels clear of the whiskers)."""

from __future__ import annotations

import sys
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.container import ErrorbarContainer

from bnres.analysis import load_runs, plot_placement

sys.path.insert(0, str(Path(__file__).parent / "data"))
from result_factory import make_record, trained, write_sweep  # noqa: E402


def test_placement_value_labels_do_not_touch_the_whiskers(tmp_path):
    records = [trained(model_name="resnet_cifar", depth=20, lr=0.05, bn_placement=p, seed=s, acc=a + 0.03 * s)
               for p, a in (("before_activation", 0.90), ("after_activation", 0.93), ("pre_activation", 0.91)) for s in (0, 1, 2)]
    records += [make_record(model_name="resnet_cifar", depth=20, lr=0.05, bn=False, seed=s, train_acc=0.1 + 0.05 * s, val_acc=0.1 + 0.04 * s)
                for s in (0, 1, 2)]
    fig = plot_placement(load_runs(write_sweep(tmp_path / "s", records)))
    renderer = FigureCanvasAgg(fig).get_renderer()
    fig.draw(renderer)
    checked = 0
    for ax in fig.axes:
        whiskers = [ax.transData.transform(segment) for c in ax.containers if isinstance(c, ErrorbarContainer)
                    for collection in c.lines[2] for segment in collection.get_segments()]
        labels = [t for t in ax.texts if t.get_text().replace(".", "").isdigit()]
        assert len(labels) == len(whiskers) == 4  # one bar per placement and one for no BN, each with its label
        for text in labels:
            box = text.get_window_extent(renderer)
            for (x0, y0), (x1, y1) in whiskers:
                crosses_x = box.x0 <= x0 <= box.x1
                crosses_y = min(y0, y1) < box.y1 and max(y0, y1) > box.y0
                assert not (crosses_x and crosses_y), f"label {text.get_text()} overlaps a whisker"
            checked += 1
        top = max(box.y1 for box in (t.get_window_extent(renderer) for t in labels))
        assert top <= ax.get_window_extent(renderer).y1  # and stays inside the axes
    assert checked == 8
