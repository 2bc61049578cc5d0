"""evaluation: what a model gets right and wrong, as data, then as figures and a report.

metrics.py (evaluate() -> Evaluation: metrics, confusion, most-confused pairs, top losses;
data only) -> report.py (one self-contained HTML file). A multi-label model's evaluation is
multilabel.py's MultiLabelEvaluation (per-label precision, recall, F1, average precision; its
own report). The figures are in imgclf.plots.
"""
