"""``report.json`` and ``summary.txt`` of a board build, from a raw place-and-route report:
the interval of a network with line buffers is reported as a lower bound."""

import numpy as np

from boards.build_report import build_report, format_summary
from boards.targets import get_board
from hwgen.fold import Fold, plan
from hwgen.random_models import conv, dense, random_model

RAW = {"utilization": {"ICESTORM_LC": {"used": 1000, "available": 5280},
                       "ICESTORM_RAM": {"used": 4, "available": 30}},
       "requested_mhz": 48.0, "achieved_mhz": 50.0, "timing_met": True,
       "bitstream": "/x/top.bin", "baud": 3_000_000}


def _report(model, folds):
    net = plan(model, folds)
    report = build_report(model, net, get_board("icebreaker"), RAW, 900, 4, net.fold_text)
    return net, report, format_summary(report)


def test_dense_interval_is_exact():
    model = random_model(np.random.default_rng(1), (1, 4, 4), [dense(6)], classes=3)
    net, report, summary = _report(model, None)
    assert report["cycles_per_image_is_bound"] is False
    assert report["inferences_per_s_compute"] == 48e6 / net.cycles_per_image
    assert f"throughput   {net.cycles_per_image} cycles/image, latency {net.latency_cycles} " \
           f"cycles; {48e6 / net.cycles_per_image:.0f} inferences/s" in summary


def test_conv_interval_is_a_lower_bound():
    model = random_model(np.random.default_rng(2), (2, 5, 5), [conv(3, 5, 1, 0, pad_value=7)],
                         classes=3, binarize_at=None)
    net, report, summary = _report(model, [Fold(3, 1), Fold(3, 1)])
    assert report["cycles_per_image_is_bound"] is True and report["latency_is_bound"] is True
    assert f"throughput   at least {net.cycles_per_image} cycles/image, latency at most " \
           f"{net.latency_cycles} cycles; at most {48e6 / net.cycles_per_image:.0f} " \
           f"inferences/s" in summary
