"""evaluation: what a model gets right and wrong, as data, then as figures and a report.

metrics.py (evaluate() -> Evaluation: metrics, confusion, most-confused pairs, top losses;
data only) -> report.py (one self-contained HTML file). The figures are in imgclf.plots.
"""
