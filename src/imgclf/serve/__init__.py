"""Serving: a JSON HTTP API and a Gradio page over one Predictor (pip install 'imgclf[serve]')."""

SERVE_HINT = "Serving needs the serve extra: pip install 'imgclf[serve]'"
