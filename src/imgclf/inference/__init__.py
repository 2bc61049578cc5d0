"""inference: a trained network over pictures, by one forward loop.

loop.py (THE forward loop: probabilities, embeddings, outlier scores) -> predictor.py
(Predictor) -> prediction.py (Prediction and its one serialization); runtimes.py (onnxruntime
graphs, cached and checked), int8.py (quantize), onnx_export.py (an .onnx file checked through
the loop), imagenet.py (a backbone's own ImageNet head) and ray_batch.py (millions of pictures
on Ray).
"""
