"""The "unknown" answer: which out-of-domain score tells strangers from the model's classes.

A hymenoptera model (auto mode, as the main job trains it; or MODEL) against the shared
ImageNet sample minus its ant and bee photos. For every score compared: AUROC, the share of
strangers flagged when the threshold accepts 95% of the validation ants and bees, and the
accuracy on the validation pictures accepted. Then the model's own detector, through
Predictor, and the prediction latency with and without it. Prints one JSON line.

Run: python bench/unknown.py [MODEL.imgclf] [--data DIR] [--strangers DIR]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SHARED = HERE.parents[1] / "shared" / "datasets"
# ImageNet's ant and bee classes: pictures of the model's own classes, not strangers
IN_DOMAIN_WNIDS = ("n02219486", "n02206856")


def auroc(inside: np.ndarray, outside: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    labels = np.r_[np.zeros(len(inside)), np.ones(len(outside))]
    return float(roc_auc_score(labels, np.r_[inside, outside]))


def judge(name: str, valid: np.ndarray, strangers: np.ndarray, correct: np.ndarray) -> dict:
    threshold = np.quantile(valid, 0.95)
    accepted = valid <= threshold
    return {"score": name, "auroc": round(auroc(valid, strangers), 4),
            "flagged_at_95": round(float((strangers > threshold).mean()), 4),
            "accepted_accuracy": round(float(correct[accepted].mean()), 4)}


def candidate_scores(train_z, train_y, valid_z, valid_logits, other_z, other_logits) -> dict:
    """name -> (score of valid pictures, score of strangers); higher means stranger."""
    from scipy.special import logsumexp
    from sklearn.covariance import LedoitWolf

    def softmax(logits):
        e = np.exp(logits - logits.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    scores = {
        "max_probability": (-softmax(valid_logits).max(1), -softmax(other_logits).max(1)),
        "max_logit": (-valid_logits.max(1), -other_logits.max(1)),
        "energy": (-logsumexp(valid_logits, axis=1), -logsumexp(other_logits, axis=1)),
    }
    classes = np.unique(train_y)
    means = np.stack([train_z[train_y == c].mean(0) for c in classes])
    centred = train_z - means[np.searchsorted(classes, train_y)]
    precision = LedoitWolf().fit(centred).precision_
    background = LedoitWolf().fit(train_z)

    def mahalanobis(z):
        return np.stack([np.einsum("nd,de,ne->n", z - m, precision, z - m) for m in means]).T

    def relative(z):
        global_distance = np.einsum("nd,de,ne->n", z - background.location_,
                                    background.precision_, z - background.location_)
        return (mahalanobis(z) - global_distance[:, None]).min(1)

    scores["mahalanobis"] = (mahalanobis(valid_z).min(1), mahalanobis(other_z).min(1))
    scores["relative_mahalanobis"] = (relative(valid_z), relative(other_z))
    bank = train_z / np.linalg.norm(train_z, axis=1, keepdims=True)
    for k in (1, 5, 10, 20):
        def knn(z, k=k):
            z = z / np.linalg.norm(z, axis=1, keepdims=True)
            return 1 - np.sort(z @ bank.T, axis=1)[:, -k]
        scores[f"knn_{k}"] = (knn(valid_z), knn(other_z))

    def class_knn(z, logits, k=5):  # of the class the picture would be given
        z = z / np.linalg.norm(z, axis=1, keepdims=True)
        same = train_y[None, :] == logits.argmax(1)[:, None]
        return 1 - np.sort(np.where(same, z @ bank.T, -1.0), axis=1)[:, -k]

    scores["class_knn_5"] = (class_knn(valid_z, valid_logits), class_knn(other_z, other_logits))
    for weight in (0.2, 0.5):  # + weight x (1 - top probability): what imgclf computes at 0.2
        scores[f"class_knn_5+{weight}softmax"] = tuple(
            class_knn(z, logits) + weight * unsure for z, logits, unsure in (
                (valid_z, valid_logits, 1 + scores["max_probability"][0]),
                (other_z, other_logits, 1 + scores["max_probability"][1])))
    return scores


def main() -> None:
    from imgclf import ImageData, Predictor, train
    from imgclf.data.sources import find_images

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("model", nargs="?")
    parser.add_argument("--data", default=str(SHARED / "hymenoptera"))
    parser.add_argument("--strangers", default=str(SHARED / "imagenet-sample-100"))
    args = parser.parse_args()
    data = ImageData.from_folder(args.data, verbose=False)
    model = Path(args.model) if args.model else None
    if model is None:
        folder = Path(tempfile.mkdtemp())
        train(data, output=folder, verbose=False)  # auto mode, like the main job
        model = folder / "model.imgclf"
    predictor = Predictor.load(model)
    strangers = [p for p in find_images(args.strangers)
                 if not p.name.startswith(IN_DOMAIN_WNIDS)]
    linear = predictor.network.head.linear
    weight, bias = linear.weight.detach().numpy(), linear.bias.detach().numpy()

    def embed(paths):
        outputs = predictor.outputs(paths, embeddings=True)
        z = outputs.embeddings[outputs.ok]
        return z, z @ weight.T + bias

    train_z, _ = embed([item.path for item in data.train])
    train_y = np.array([data.class_index[item.label] for item in data.train])
    valid_z, valid_logits = embed([item.path for item in data.valid])
    valid_y = np.array([data.class_index[item.label] for item in data.valid])
    other_z, other_logits = embed(strangers)
    correct = valid_logits.argmax(1) == valid_y
    rows = [judge(name, *pair, correct) for name, pair in candidate_scores(
        train_z, train_y, valid_z, valid_logits, other_z, other_logits).items()]
    result = {"benchmark": "unknown", "model": str(model), "train": len(train_z),
              "valid": len(valid_z), "strangers": len(other_z),
              "plain_accuracy": round(float(correct.mean()), 4), "scores": rows}
    if predictor.has_detector:
        result["model_detector"] = model_detector(predictor, data, strangers)
        result["model_file_mb"] = round(model.stat().st_size / 1e6, 2)
    print(json.dumps(result))


def model_detector(predictor, data, strangers) -> dict:
    """The detector the model file holds, through Predictor, as users meet it."""
    from imgclf import evaluate

    evaluation = evaluate(predictor, data, unknown=strangers, show_progress=False)
    summary = evaluation.summary()
    pictures = [item.path.read_bytes() for item in data.valid[:20]]
    with_detector, without = latencies(predictor, pictures)
    return {"config": predictor.info.unknown.to_dict(),
            "flagged_at_acceptance": round(summary["strangers_flagged"], 4),
            "auroc": round(summary["unknown_auroc"], 4),
            "valid_accepted": round(summary["acceptance"], 4),
            "accepted_accuracy": round(summary["accepted_accuracy"], 4),
            "accuracy": round(summary["accuracy"], 4),
            "latency_p50_ms": with_detector, "latency_p50_ms_without_detector": without,
            "latency_ratio": round(with_detector / without, 3)}


def latencies(predictor, pictures: list[bytes], repeats: int = 60) -> tuple[float, float]:
    """Median milliseconds of one prediction with and without the detector, interleaved so
    that the machine's noise falls on both alike."""
    detector = predictor.network.detector
    predictor.predict(pictures[0])
    times: dict[bool, list[float]] = {True: [], False: []}
    for index in range(2 * repeats):
        use = index % 2 == 0
        predictor.network.detector = detector if use else None
        start = time.perf_counter()
        predictor.predict(pictures[(index // 2) % len(pictures)])
        times[use].append(time.perf_counter() - start)
    predictor.network.detector = detector
    return tuple(round(float(np.median(times[use])) * 1000, 2) for use in (True, False))


if __name__ == "__main__":
    main()
